"""config.json is a claim: where it contradicts the tensors, the summary says so and the figures follow the tensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import main
from core.formats import open_checkpoint
from core.memory import memory_summary
from tests.conftest import HIDDEN, VOCAB, write_llama

# The truth of write_llama(layers=2): 2 layers, width 64, k_proj 32 x 64, embedding 300 x 64.
HEADS, HEAD_DIM, KV_HEADS = 4, HIDDEN // 4, 2
TRUE_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2,
               "hidden_size": HIDDEN, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
               "vocab_size": VOCAB, "max_position_embeddings": 128, "intermediate_size": 176}
TRUE_KV_PER_TOKEN = 2 * 2 * KV_HEADS * HEAD_DIM * 2  # layers x (k, v) x kv_heads x head_dim x fp16 bytes


def _model(tmp_path: Path, **claims: object) -> Path:
    path, _ = write_llama(tmp_path / "model", layers=2)
    (path.parent / "config.json").write_text(json.dumps({**TRUE_CONFIG, **claims}))
    return path


def test_a_true_config_has_no_contradictions(tmp_path: Path) -> None:
    with open_checkpoint(str(_model(tmp_path))) as ck:
        arch = ck.architecture
        assert "contradictions" not in arch
        assert (arch["layers"], arch["hidden_size"], arch["kv_heads"], arch["head_dim"]) == (2, HIDDEN, 2, HEAD_DIM)
        memory = memory_summary(ck)
    assert memory["kv_cache_per_token_fp16"] == TRUE_KV_PER_TOKEN
    assert memory["kv_cache_full_context_fp16"] == TRUE_KV_PER_TOKEN * 128


def test_32_layers_claimed_next_to_2_layers_of_tensors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _model(tmp_path, num_hidden_layers=32)
    with open_checkpoint(str(path)) as ck:
        assert ck.architecture["contradictions"] == ["config.json says 32 layers; the tensors have 2"]
        assert ck.architecture["layers"] == 2
        assert memory_summary(ck)["kv_cache_per_token_fp16"] == TRUE_KV_PER_TOKEN  # not 16x more
    assert main.main(["info", str(path)]) == 0
    assert "contradiction      config.json says 32 layers; the tensors have 2" in capsys.readouterr().out
    assert main.main(["info", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["architecture"]["contradictions"] == ["config.json says 32 layers; the tensors have 2"]
    assert doc["memory"]["kv_cache_per_token_fp16"] == TRUE_KV_PER_TOKEN


def test_key_value_heads_against_the_key_projection(tmp_path: Path) -> None:
    with open_checkpoint(str(_model(tmp_path, num_key_value_heads=4))) as ck:
        assert ck.architecture["contradictions"] == [
            "config.json says 4 key/value heads of size 16 (64 key projection rows); the tensors have 32 rows"]
        assert ck.architecture["kv_heads"] == KV_HEADS
        assert memory_summary(ck)["kv_cache_per_token_fp16"] == TRUE_KV_PER_TOKEN


def test_missing_kv_heads_means_all_heads_which_the_tensors_contradict(tmp_path: Path) -> None:
    config = dict(TRUE_CONFIG)
    del config["num_key_value_heads"]
    path, _ = write_llama(tmp_path / "model", layers=2)
    (path.parent / "config.json").write_text(json.dumps(config))
    with open_checkpoint(str(path)) as ck:
        assert ck.architecture["contradictions"] == [
            "config.json says 4 attention heads of size 16 (64 key projection rows); the tensors have 32 rows"]
        assert memory_summary(ck)["kv_cache_per_token_fp16"] == TRUE_KV_PER_TOKEN


def test_hidden_size_and_vocabulary(tmp_path: Path) -> None:
    with open_checkpoint(str(_model(tmp_path, hidden_size=4096, vocab_size=32000))) as ck:
        arch = ck.architecture
        assert arch["contradictions"] == ["config.json says hidden size 4,096; the tensors are 64 wide",
                                          "config.json says a vocabulary of 32,000; the embedding has 300 rows"]
        assert (arch["hidden_size"], arch["vocab_size"], arch["head_dim"]) == (HIDDEN, VOCAB, HEAD_DIM)
        assert memory_summary(ck)["kv_cache_per_token_fp16"] == TRUE_KV_PER_TOKEN


def _bert(tmp_path: Path, config: dict) -> Path:
    folder = tmp_path / "bert"
    folder.mkdir()
    tensors = {"bert.embeddings.word_embeddings.weight": np.zeros((100, 16), np.float32)}
    for i in range(2):
        for part in ("query", "key", "value"):
            tensors[f"bert.encoder.layer.{i}.attention.self.{part}.weight"] = np.zeros((16, 16), np.float32)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder / "model.safetensors"


@pytest.mark.parametrize("config", [
    {"model_type": "bert", "architectures": ["BertForMaskedLM"]},
    {"model_type": "roberta", "architectures": ["RobertaForSequenceClassification"]},
    {"model_type": "my-encoder", "architectures": ["MyEncoderForMaskedLM"], "is_decoder": False},
])
def test_no_kv_cache_for_encoder_only_models(tmp_path: Path, config: dict) -> None:
    shape = {"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2, "vocab_size": 100}
    with open_checkpoint(str(_bert(tmp_path, {**shape, **config}))) as ck:
        assert ck.architecture["encoder_only"] is True
        assert "contradictions" not in ck.architecture
        memory = memory_summary(ck)
    assert "kv_cache_per_token_fp16" not in memory and "kv_cache_full_context_fp16" not in memory


def test_a_bert_decoder_keeps_its_kv_cache(tmp_path: Path) -> None:
    config = {"model_type": "bert", "architectures": ["BertLMHeadModel"], "is_decoder": True,
              "num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2, "vocab_size": 100}
    with open_checkpoint(str(_bert(tmp_path, config))) as ck:
        assert "encoder_only" not in ck.architecture
        assert memory_summary(ck)["kv_cache_per_token_fp16"] == 2 * 2 * 2 * 8 * 2


def test_a_4_mb_model_type_is_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _model(tmp_path, model_type="\x1b[2J" + "L" * (3 << 20))
    assert main.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and max(len(line) for line in out.splitlines()) < 400
    assert "  family             \\x1b[2JLLL" in out
