"""`main.py memory`: the readable plan, --explain, --json, several models side by side, and refusals as one
`error:` line with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import main
from tests.llama_shapes import LLAMA_31_8B, LLAMA_31_8B_PARAMETERS, write_sparse_sharded_model

REPO = Path(__file__).resolve().parents[1]
LLAMA_31_70B = {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
                "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    write_sparse_sharded_model(str(root / "llama-8b"), LLAMA_31_8B, shards=1)
    write_sparse_sharded_model(str(root / "llama-70b"), LLAMA_31_70B, shards=2)
    return {"8b": str(root / "llama-8b"), "70b": str(root / "llama-70b")}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.main(["memory", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_text_plan_for_70b_on_h100(models: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, models["70b"], "--gpu", "H100 80GB", "--context", "8192")
    assert code == 0 and err == ""
    weights = next(line for line in out.splitlines() if line.strip().startswith("weights"))
    assert weights.split()[1:4] == ["141,107,412,992", "141.11", "131.42"]  # bytes, GB, GiB
    kv = next(line for line in out.splitlines() if line.strip().startswith("KV cache"))
    assert kv.split()[2] == f"{327_680 * 8192:,}"
    assert "Fits         no" in out and "Min GPUs     2" in out
    assert "estimate" in next(line for line in out.splitlines() if "runtime overhead" in line)
    assert "Parameters   70.6 B (70,553,706,496)" in out


def test_explain_adds_formulas_and_words(models: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, models["70b"], "--gpu", "h100 80gb", "--context", "8192", "--weights", "bf16",
                        "--explain")
    assert code == 0
    assert "      = 70,553,706,496 parameters x 2 bytes (bf16)" in out
    assert "      = 80 layers x (1,024 + 1,024) values x context x batch x 2 bytes per value" in out
    assert "70.6 billion parameters take 141 GB (131 GiB) before the model has read a single word" in out
    assert "adds 320 KiB" in out


def test_json_plan(models: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, models["8b"], "--gpu-memory", "24", "--context", "4096", "--weights", "Q4_K",
                        "--kv", "q8_0", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["parameters"] == doc["active_parameters"] == LLAMA_31_8B_PARAMETERS
    assert (doc["mode"], doc["gpu_bytes"], doc["gpus"], doc["fits"]) == ("inference", 24 << 30, 1, True)
    items = {item["name"]: item for item in doc["items"]}
    assert items["KV cache"]["bytes"] == 32 * 2 * 32 * 34 * 4096  # q8_0: 34 bytes per 32 values
    assert items["weights"]["bytes"] == (LLAMA_31_8B_PARAMETERS - 65 * 4096) * 144 // 256 + 65 * 4096 * 4
    assert doc["total_bytes"] == sum(item["bytes"] for item in doc["items"])
    assert isinstance(doc["max_context"], int) and doc["min_gpus"] == 1
    code, out, _ = _run(capsys, models["8b"], "--gpu-memory", "24", "--context", "4096", "--mode", "LoRA",
                        "--optimizer", "adam8bit", "--weights", "int4", "--json")
    items = {item["name"]: item for item in json.loads(out)["items"]}
    assert items["LoRA adapters"]["bytes"] == 4 * 13_631_488 and items["LoRA adapters"]["exact"] is False
    assert items["optimizer states"]["bytes"] == 2 * 13_631_488


def test_several_models_side_by_side(models: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, models["8b"], models["70b"], "--context", "8192")
    assert code == 0
    header = out.splitlines()[0]
    assert header.split() == ["llama-8b", "llama-70b"]
    assert out.splitlines()[1].split() == ["parameters", "8,030,261,248", "70,553,706,496"]
    assert "KV per token (bf16)" in out and "128 KiB" in out and "320 KiB" in out
    code, out, _ = _run(capsys, models["8b"], models["70b"], "--context", "8192", "--explain")
    assert "8.03 billion parameters take 16.1 GB (15.0 GiB)" in out and "70.6 billion parameters take 141 GB" in out
    code, out, _ = _run(capsys, models["8b"], models["70b"], "--context", "8192", "--gpu", "RTX 4090", "--json")
    doc = json.loads(out)
    assert [d["compare"]["bytes"]["bf16"] for d in doc] == [16_060_522_496, 141_107_412_992]
    assert [d["fits"] for d in doc] == [True, False]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--context", "-5"], "--context must be at least 1"),
    (["--context", "lots"], "--context must be a whole number"),
    (["--gpu", "GTX 9999"], "unknown GPU 'GTX 9999'"),
    (["--gpu", "H100", "--gpu-memory", "80"], "either --gpu or --gpu-memory"),
    (["--gpu-memory", "nan"], "--gpu-memory must be a finite number"),
    (["--gpu-memory", "0"], "--gpu-memory must be a positive number"),
    (["--gpus", "0"], "--gpus must be at least 1"),
    (["--weights", "int3"], "unknown weight precision 'int3'"),
    (["--kv", "fp4"], "unknown KV cache type 'fp4'"),
    (["--mode", "pretrain"], "unknown workload 'pretrain'"),
    (["--mode", "full", "--weights", "Q4_K"], "full fine-tuning needs float weights"),
])
def test_bad_values_exit_2_with_one_error_line(models: dict[str, str], capsys: pytest.CaptureFixture[str],
                                               argv: list[str], needle: str) -> None:
    code, out, err = _run(capsys, models["8b"], *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def test_missing_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, str(tmp_path / "nope.safetensors"))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_a_hostile_folder_name_is_shown_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "evil\x1b[2J\u202ename"
    write_sparse_sharded_model(str(folder), LLAMA_31_8B, shards=1)
    code, out, _ = _run(capsys, str(folder), "--gpu", "4090", "--context", "100", "--explain")
    assert code == 0 and "\x1b" not in out and "\u202e" not in out
    assert "evil\\x1b[2J\\u202ename" in out


def test_subprocess_refusal_has_no_traceback(models: dict[str, str]) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, str(REPO / "main.py"), "memory", models["8b"], "--gpus", "-1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: --gpus must be at least 1, not -1\n"


# --- reference models by name (config-only: resources/models) ----------------------------------------------------
def test_reference_70b_on_h100_answers_with_exact_weight_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "llama-3.1-70b", "--gpu", "H100 80GB", "--context", "8192")
    assert code == 0 and "141,107,412,992" in out
    code, out, _ = _run(capsys, "llama-3.1-70b", "--gpu", "H100 80GB", "--context", "8192", "--json")
    doc = json.loads(out)
    assert doc["model"] == "llama-3.1-70b" and doc["parameters"] == 70_553_706_496
    assert doc["items"][0] == {**doc["items"][0], "name": "weights", "bytes": 141_107_412_992, "exact": True}
    assert (doc["fits"], doc["min_gpus"], doc["max_context"]) == (False, 2, None)


def test_the_three_llama_sizes_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "--context", "8192", "--kv", "fp16",
                        "--json")
    assert code == 0
    rows = [d["compare"] for d in json.loads(out)]
    assert [r["parameters"] for r in rows] == [8_030_261_248, 70_553_706_496, 405_853_388_800]
    assert [r["kv_bytes_per_token"] for r in rows] == [131_072, 327_680, 516_096]
    assert rows[2]["bytes"]["bf16"] == 2 * 405_853_388_800 and round(rows[2]["bytes"]["bf16"] / (1 << 30)) == 756
    assert rows[2]["fits_on"] == []  # 812 GB: no single card holds the 405B in bf16
    code, text, _ = _run(capsys, "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b")
    assert code == 0 and text.splitlines()[0].split() == ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"]
    assert "none in the catalog" in text


@pytest.mark.parametrize(("name", "per_token_bf16"), [
    ("deepseek-v3", 61 * (512 + 64) * 2),  # latent attention
    ("gemma-2-9b", 42 * 2 * 8 * 256 * 2),  # head_dim 256, not 3584 / 16
    ("bert-base-uncased", 0),  # encoder-only
])
def test_reference_kv_cache(capsys: pytest.CaptureFixture[str], name: str, per_token_bf16: int) -> None:
    code, out, _ = _run(capsys, name, "--context", "8192", "--json")
    assert code == 0
    assert json.loads(out)["kv_bytes_per_token"] == per_token_bf16


def test_reference_moe_reports_active_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "deepseek-v3", "--gpu", "H200", "--gpus", "8", "--weights", "fp8", "--context",
                        "32768", "--explain")
    assert code == 0
    assert "Active       " in out and "mixture of experts" in out
    assert "61 layers x 576 values x context x batch x 2 bytes per value" in out
