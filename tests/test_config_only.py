"""Opening a model without weights: a config.json, a folder holding only one, or a reference model's name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.checkpoint import FileEntry
from core.errors import CheckpointError
from core.formats import open_checkpoint
from tests.llama_shapes import LLAMA_31_8B, llama_tensor_shapes, write_sparse_safetensors

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "resources" / "models"
TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 176,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
        "tie_word_embeddings": False, "torch_dtype": "float16"}


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_a_config_file_opens_as_its_tensor_list(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    with open_checkpoint(str(path)) as checkpoint:
        assert checkpoint.format == "config"
        assert checkpoint.files == [FileEntry(str(path), path.stat().st_size)]
        assert checkpoint.metadata["config.json"] == TINY
        assert [(t.name, t.shape) for t in checkpoint.tensors] == llama_tensor_shapes(TINY)
        assert {t.dtype for t in checkpoint.tensors} == {"F16"}
        assert checkpoint.tensor("model.embed_tokens.weight").kind == "embedding"
        assert checkpoint.tensor("model.layers.2.self_attn.k_proj.weight").role == "attention.k"
        assert checkpoint.tensor("lm_head.weight").role == "head"
        arch = checkpoint.architecture
        assert arch["config_parameters"] == checkpoint.parameter_count == 3 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 176
                                                                               + 2 * 64) + 2 * 100 * 64 + 64
        assert arch["layers"] == 3 and arch["kv_heads"] == 2 and arch["source"] == "config.json"
        assert "active_parameters" not in arch
        assert checkpoint.warnings == []
    assert sorted(os.listdir(tmp_path)) == ["config.json"]  # nothing written beside it


def test_any_json_name_works_and_moe_gets_its_active_count(tmp_path: Path) -> None:
    path = tmp_path / "mixtral.json"
    path.write_text((MODELS / "mixtral-8x7b.json").read_text())
    with open_checkpoint(str(path)) as checkpoint:
        assert checkpoint.parameter_count == 46_702_792_704
        assert checkpoint.architecture["active_parameters"] == 12_879_925_248


def test_a_folder_with_only_a_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    (tmp_path / "tokenizer.json").write_text("{}")
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert checkpoint.format == "config" and checkpoint.path == str(tmp_path)
        assert checkpoint.files[0].path == str(tmp_path / "config.json")
        assert len(checkpoint.tensors) == len(llama_tensor_shapes(TINY))


def test_weights_beside_a_config_still_win(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    save_file({n: np.zeros(s, np.float16) for n, s in llama_tensor_shapes(TINY)}, str(tmp_path / "model.safetensors"))
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert checkpoint.format == "safetensors"
        assert checkpoint.architecture["config_parameters"] == checkpoint.parameter_count
        assert checkpoint.warnings == []


def test_a_config_that_disagrees_with_the_weights_is_flagged(tmp_path: Path) -> None:
    """8B config, weights of 7 of 8 shards' worth: the config's count beside the header's, in one line."""
    shapes = [(n, s) for n, s in llama_tensor_shapes(LLAMA_31_8B) if n != "lm_head.weight"]
    write_sparse_safetensors(str(tmp_path / "model.safetensors"), shapes)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **LLAMA_31_8B}))
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert checkpoint.architecture["config_parameters"] == 8_030_261_248
        assert checkpoint.parameter_count == 8_030_261_248 - 128256 * 4096
        assert "config.json describes 8,030,261,248 parameters; the weights hold 7,504,924,672: a missing shard, " \
               "extra tensors or an edited config" in checkpoint.warnings


def test_unknown_family_beside_weights_is_no_count(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "model_type": "internlm2"}))
    save_file({n: np.zeros(s, np.float16) for n, s in llama_tensor_shapes(TINY)}, str(tmp_path / "model.safetensors"))
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert "config_parameters" not in checkpoint.architecture and checkpoint.warnings == []


def test_an_index_is_still_an_index(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "missing.safetensors"},
                                                                       "model_type": "llama"}))
    with pytest.raises(CheckpointError, match="shard"):
        open_checkpoint(str(tmp_path / "model.safetensors.index.json"))
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="weight_map"):
        open_checkpoint(str(tmp_path / "other.json"))


@pytest.mark.parametrize("content", ['{"model_type": "internlm2"}', '{"architectures": ["X"]}', "[1, 2]",
                                     '{"model_type": "llama", "hidden_size": 64}',
                                     '{"model_type": "llama", "num_hidden_layers": 1e12}'])
def test_bad_configs_are_one_line_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(str(path))
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_reference_names_open_in_any_case() -> None:
    for name in ("llama-3.1-405b", "LLAMA-3.1-405B", " Llama-3.1-405B "):
        with open_checkpoint(name) as checkpoint:
            assert checkpoint.format == "config" and checkpoint.parameter_count == 405_853_388_800
            assert checkpoint.files[0].path == str(MODELS / "llama-3.1-405b.json")


def test_a_file_of_that_name_wins_over_the_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gpt2").write_bytes(b"not a model")
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint("gpt2")
    assert str(caught.value).startswith("gpt2:")
    with pytest.raises(CheckpointError, match="no such file or folder"):
        open_checkpoint("llama-3.1-406b")


def test_the_405b_config_opens_in_under_100_ms() -> None:
    open_checkpoint("llama-3.1-405b").close()  # imports and the classification memo warm once
    times = []
    for _ in range(5):
        start = time.perf_counter()
        with open_checkpoint(str(MODELS / "llama-3.1-405b.json")) as checkpoint:
            assert checkpoint.parameter_count == 405_853_388_800
        times.append(time.perf_counter() - start)
    assert min(times) < 0.1


def test_cli_info_by_path_and_by_name() -> None:
    text = run_cli("info", "resources/models/llama-3.1-405b.json")
    assert text.returncode == 0, text.stderr
    assert "405,853,388,800" in text.stdout and "config" in text.stdout
    as_json = run_cli("info", "llama-3.1-405b", "--json")
    assert as_json.returncode == 0, as_json.stderr
    out = json.loads(as_json.stdout)
    assert out["format"] == "config" and out["parameter_count"] == 405_853_388_800
    assert out["architecture"]["config_parameters"] == 405_853_388_800 and out["tensor_count"] == 1137


def test_cli_refuses_an_unknown_family_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "\\u001b[31mevil"}')
    result = run_cli("info", str(tmp_path / "config.json"))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "known families: bert" in lines[0]
    assert "\x1b" not in result.stderr


TINY_DEEPSEEK = {
    "model_type": "deepseek_v3", "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 16,
    "num_hidden_layers": 3, "first_k_dense_replace": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
    "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "q_lora_rank": 24, "kv_lora_rank": 16,
    "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "vocab_size": 100, "num_nextn_predict_layers": 1,
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [8, 8]},
}


def write_weights(folder: Path, tensors: list) -> None:
    save_file({t.name: np.zeros(t.shape, np.float32 if t.dtype == "F32" else np.float16) for t in tensors},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(TINY_DEEPSEEK))


@pytest.mark.parametrize("mtp", [True, False])
def test_deepseek_files_with_or_without_mtp_match_their_config(tmp_path: Path, mtp: bool) -> None:
    from core.architectures import parameter_counts, tensors_from_config

    counts = parameter_counts(TINY_DEEPSEEK)
    write_weights(tmp_path, tensors_from_config(TINY_DEEPSEEK, mtp=mtp, scales=True))
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert checkpoint.architecture["config_parameters"] == counts["total"]
        assert checkpoint.architecture["active_parameters"] == counts["active"] < counts["total"]
        assert checkpoint.architecture["mtp_parameters"] == counts["mtp"]
        assert not any("config.json describes" in w for w in checkpoint.warnings)


def test_a_missing_expert_is_flagged(tmp_path: Path) -> None:
    from core.architectures import tensors_from_config

    tensors = [t for t in tensors_from_config(TINY_DEEPSEEK, mtp=True, scales=True)
               if t.name != "model.layers.2.mlp.experts.7.down_proj.weight"]
    write_weights(tmp_path, tensors)
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert any(w.startswith("config.json describes ") for w in checkpoint.warnings)


def test_the_corpus_config_of_an_unknown_family() -> None:
    """The corpus's only config.json (InternLM2, beside LFS-pointer shards): the folder is still refused for its
    missing weights, and the config alone is refused by name, never counted by a guess."""
    from tests.corpus import CORPUS

    folder = CORPUS / "malformed" / "lfs-sharded"
    if not (folder / "config.json").is_file():
        pytest.skip("shared corpus not present")
    with pytest.raises(CheckpointError, match="LFS"):
        open_checkpoint(str(folder))
    with pytest.raises(CheckpointError, match="no tensor rules for model_type 'internlm2'; known families: bert"):
        open_checkpoint(str(folder / "config.json"))
