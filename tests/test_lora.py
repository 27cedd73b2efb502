"""LoRA adapters: detection, PEFT's config rules, and every figure of scale * B @ A against dense numpy float64."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import main
from core.formats import open_checkpoint
from core.lora import measure, update_singular_values
from core.lora_config import MAX_ADAPTER_CONFIG_BYTES

REPO = Path(__file__).resolve().parents[1]
SAMPLE_LORA = REPO / "resources" / "samples" / "tiny-llama-lora"
SAMPLE_BASE = REPO / "resources" / "samples" / "tiny-llama"
SAMPLE_GGUF = REPO / "resources" / "samples" / "tiny-llama.Q8_0.gguf"
PREFIX = "base_model.model."


def factors(rng: np.random.Generator, m: int, n: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """A (r x n) and B (m x r) with distinct singular values, float32 as PEFT stores them."""
    return rng.normal(size=(r, n)).astype(np.float32), (rng.normal(size=(m, r)) * 0.1).astype(np.float32)


def write_adapter(folder: Path, modules: dict[str, tuple[np.ndarray, np.ndarray]], config: dict | None = None,
                  prefix: str = PREFIX) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, (a, b) in modules.items():
        tensors[f"{prefix}{name}.lora_A.weight"] = a
        tensors[f"{prefix}{name}.lora_B.weight"] = b
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    if config is not None:
        (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def dense_figures(a: np.ndarray, b: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
    """||scale * B @ A||_F and its singular values, formed densely in float64."""
    delta = scale * (b.astype(np.float64) @ a.astype(np.float64))
    return float(np.linalg.norm(delta)), np.linalg.svd(delta, compute_uv=False)


def lora_of(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    assert main.main(["info", str(path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)["lora"]


def assert_matches_dense(entry: dict, a: np.ndarray, b: np.ndarray, scale: float) -> None:
    fro, values = dense_figures(a, b, scale)
    got = np.array(entry["delta_singular_values"])
    assert entry["delta_fro"] == pytest.approx(fro, rel=1e-10)
    assert got == pytest.approx(values[: len(got)], rel=1e-9, abs=1e-12 * values[0])
    assert np.all(values[len(got):] <= 1e-10 * values[0])  # the rest of the dense spectrum is zero
    assert list(got) == sorted(got, reverse=True)
    assert entry["energy_share"] == pytest.approx(got**2 / np.sum(values**2), rel=1e-9)


@pytest.mark.parametrize(("m", "n", "r", "alpha", "rslora"), [
    (24, 16, 4, 8, False), (16, 40, 8, 16, True), (5, 30, 8, 3.5, False), (30, 3, 6, 12, True), (7, 9, 1, 1, False)])
def test_update_figures_match_dense(tmp_path: Path, capsys, m: int, n: int, r: int, alpha: float,
                                    rslora: bool) -> None:
    rng = np.random.default_rng(m * 100 + n)
    a, b = factors(rng, m, n, r)
    name = "model.layers.0.self_attn.q_proj"
    config = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": rslora, "target_modules": ["q_proj"],
              "base_model_name_or_path": "org/base"}
    lora = lora_of(write_adapter(tmp_path / "ad", {name: (a, b)}, config), capsys)
    scale = alpha / math.sqrt(r) if rslora else alpha / r
    assert lora["r"] == r and lora["alpha"] == alpha and lora["use_rslora"] is rslora
    assert lora["base_model"] == "org/base" and lora["target_modules"] == ["q_proj"]
    assert lora["adapter_parameters"] == a.size + b.size
    (entry,) = lora["modules"]
    assert entry["name"] == name and entry["r"] == r and entry["alpha"] == alpha
    assert entry["scale"] == pytest.approx(scale, rel=1e-15)
    assert_matches_dense(entry, a, b, scale)
    assert len(entry["delta_singular_values"]) == min(m, n, r)


def test_thin_qr_route_is_stable_for_tiny_and_nearly_dependent_factors() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 50))
    a[3] = a[2] + 1e-9 * rng.normal(size=50)  # nearly rank 3
    b = rng.normal(size=(60, 4)) * 1e-6
    _, dense = dense_figures(a, b, 2.0)
    got = update_singular_values(a, b, 2.0)
    assert got[:3] == pytest.approx(dense[:3], rel=1e-9)
    assert got[3] == pytest.approx(dense[3], rel=1e-3)


def test_rank_and_alpha_patterns_follow_peft(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(1)
    shapes = {"model.layers.0.self_attn.q_proj": 8, "model.layers.1.self_attn.q_proj": 4,
              "model.layers.0.self_attn.v_proj": 8, "model.layers.0.mlp.up_proj": 2}
    modules = {name: factors(rng, 12, 10, r) for name, r in shapes.items()}
    config = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj", "up_proj"],
              # full name, suffix at a dot boundary, regex; "proj" alone must not match "up_proj" (no dot before)
              "rank_pattern": {"model.layers.1.self_attn.q_proj": 4, "mlp\\.up_.*": 2},
              "alpha_pattern": {"proj": 99, "v_proj": 32, "layers.1.self_attn.q_proj": 6}}
    lora = lora_of(write_adapter(tmp_path / "ad", modules, config), capsys)
    by_name = {e["name"]: e for e in lora["modules"]}
    expected = {"model.layers.0.self_attn.q_proj": (8, 16), "model.layers.1.self_attn.q_proj": (4, 6),
                "model.layers.0.self_attn.v_proj": (8, 32), "model.layers.0.mlp.up_proj": (2, 16)}
    for name, (r, alpha) in expected.items():
        entry = by_name[name]
        assert (entry["r"], entry["alpha"], entry["scale"]) == (r, alpha, alpha / r), name
        assert_matches_dense(entry, *modules[name], alpha / r)


def test_without_config_rank_comes_from_shapes_and_scale_is_one(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(2)
    modules = {"model.layers.0.self_attn.q_proj": factors(rng, 6, 6, 3), "model.layers.1.self_attn.q_proj":
               factors(rng, 6, 6, 3), "model.layers.1.self_attn.k_proj": factors(rng, 6, 6, 2)}
    folder = write_adapter(tmp_path / "ad", modules)
    lora = lora_of(folder / "adapter_model.safetensors", capsys)
    assert lora["r"] == 3 and lora["alpha"] is None and lora["base_model"] is None
    assert lora["target_modules"] == ["k_proj", "q_proj"]
    assert any("scale 1" in note and "lora_alpha unknown" in note for note in lora["notes"])
    for entry in lora["modules"]:
        assert entry["scale"] == 1.0 and entry["alpha"] is None
        assert_matches_dense(entry, *modules[entry["name"]], 1.0)
    assert main.main(["info", str(folder / "adapter_model.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "lora_alpha unknown, so scale 1 is used" in text


@pytest.mark.parametrize("prefix", ["", PREFIX])
@pytest.mark.parametrize("suffix", [".weight", ".default.weight"])
def test_name_variants(tmp_path: Path, capsys, prefix: str, suffix: str) -> None:
    rng = np.random.default_rng(4)
    a, b = factors(rng, 8, 8, 2)
    folder = tmp_path / "ad"
    folder.mkdir()
    save_file({f"{prefix}model.layers.3.mlp.down_proj.lora_A{suffix}": a,
               f"{prefix}model.layers.3.mlp.down_proj.lora_B{suffix}": b,
               "model.other.weight": np.ones(3, np.float32)}, str(folder / "adapter_model.safetensors"))
    (entry,) = lora_of(folder / "adapter_model.safetensors", capsys)["modules"]
    assert entry["name"] == "model.layers.3.mlp.down_proj"
    assert_matches_dense(entry, a, b, 1.0)


def test_embedding_factors(tmp_path: Path, capsys) -> None:
    """PEFT's embedding LoRA: lora_embedding_A (r x vocab), lora_embedding_B (dim x r), stored without .weight."""
    rng = np.random.default_rng(5)
    a, b = factors(rng, 6, 20, 3)
    folder = tmp_path / "ad"
    folder.mkdir()
    save_file({f"{PREFIX}model.embed_tokens.lora_embedding_A": a, f"{PREFIX}model.embed_tokens.lora_embedding_B": b},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": 3, "lora_alpha": 6}))
    (entry,) = lora_of(folder, capsys)["modules"]
    assert entry["name"] == "model.embed_tokens" and entry["scale"] == 2.0
    assert_matches_dense(entry, a, b, 2.0)


def test_every_way_of_naming_an_adapter_opens_it(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(6)
    modules = {"model.layers.0.self_attn.v_proj": factors(rng, 8, 8, 4)}
    folder = write_adapter(tmp_path / "ad", modules, {"r": 4, "lora_alpha": 8})
    for path in (folder, folder / "adapter_config.json", folder / "adapter_model.safetensors"):
        lora = lora_of(path, capsys)
        assert lora["alpha"] == 8 and lora["modules"][0]["scale"] == 2.0, path
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(folder / "adapter_model.safetensors", lone / "weights.safetensors")
    assert lora_of(lone / "weights.safetensors", capsys)["alpha"] is None  # no config beside it
    with open_checkpoint(str(folder)) as checkpoint:
        assert checkpoint.lora is not None and checkpoint.parameter_count == 64
        assert [t.name for t in checkpoint.tensors] == sorted(f"{PREFIX}model.layers.0.self_attn.v_proj.lora_{s}"
                                                              ".weight" for s in "AB")


def test_config_without_weights_is_one_clear_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4}))
    assert main.main(["info", str(tmp_path / "adapter_config.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no adapter_model.safetensors" in err


def test_ordinary_models_have_no_lora_key(tmp_path: Path, capsys) -> None:
    save_file({"model.layers.0.self_attn.q_proj.weight": np.ones((4, 4), np.float32)}, str(tmp_path / "m.safetensors"))
    assert main.main(["info", str(tmp_path / "m.safetensors"), "--json"]) == 0
    assert "lora" not in json.loads(capsys.readouterr().out)
    assert main.main(["info", str(tmp_path / "m.safetensors")]) == 0
    assert "LoRA" not in capsys.readouterr().out
    assert main.main(["info", str(tmp_path / "m.safetensors"), "--base", str(tmp_path / "m.safetensors")]) == 2
    assert "--base is for LoRA adapters" in capsys.readouterr().err


@pytest.mark.parametrize(("config", "words"), [
    ({"r": -1}, "r is -1"),
    ({"r": 0}, "r is 0"),
    ({"r": "8"}, "r is '8'"),
    ({"r": True}, "r is True"),
    ({"r": 8.0}, "r is 8.0"),
    ({"lora_alpha": "16"}, "lora_alpha is '16'"),
    ({"lora_alpha": -2}, "lora_alpha is -2"),
    ({"use_rslora": "yes"}, "use_rslora is 'yes'"),
    ({"target_modules": 5}, "target_modules is 5"),
    ({"target_modules": ["q_proj", 3]}, "target_modules is"),
    ({"rank_pattern": ["q_proj"]}, "rank_pattern is"),
    ({"rank_pattern": {"q_proj": -4}}, "rank_pattern['q_proj'] is -4"),
    ({"alpha_pattern": {"q_proj": None}}, "alpha_pattern['q_proj'] is None"),
    ({"rank_pattern": {"(q_proj": 4}}, "not a valid regular expression"),
    ({"base_model_name_or_path": {"x": 1}}, "base_model_name_or_path is"),
    ([1, 2], "not a JSON object"),
])
def test_hostile_config_values_are_one_clear_error(tmp_path: Path, capsys, config: object, words: str) -> None:
    rng = np.random.default_rng(7)
    folder = write_adapter(tmp_path / "ad", {"model.layers.0.self_attn.q_proj": factors(rng, 4, 4, 2)})
    (folder / "adapter_config.json").write_text(json.dumps(config))
    assert main.main(["info", str(folder), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert words in captured.err and "adapter_config.json" in captured.err and "Traceback" not in captured.err


def test_nan_alpha_and_huge_config_are_refused(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(8)
    folder = write_adapter(tmp_path / "ad", {"model.layers.0.self_attn.q_proj": factors(rng, 4, 4, 2)})
    (folder / "adapter_config.json").write_text('{"r": 2, "lora_alpha": NaN}')
    assert main.main(["info", str(folder)]) == 2
    assert "lora_alpha is nan" in capsys.readouterr().err
    with open(folder / "adapter_config.json", "w") as f:
        f.write('{"r": 2, "target_modules": "' + "x" * MAX_ADAPTER_CONFIG_BYTES + '"}')
    assert main.main(["info", str(folder)]) == 2
    assert "too large" in capsys.readouterr().err


def test_runaway_regex_pattern_is_named_not_run(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(9)
    name = "model.layers.0.self_attn." + "a" * 40 + "!"
    folder = write_adapter(tmp_path / "ad", {name: factors(rng, 4, 4, 2)},
                           {"r": 2, "lora_alpha": 4, "rank_pattern": {"(a+)+b": 2}})
    assert main.main(["info", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any("'(a+)+b' not applied" in w for w in out["warnings"])
    assert out["lora"]["modules"][0]["scale"] == 2.0


def test_tensors_contradicting_the_config_are_warnings(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(10)
    a, b = factors(rng, 6, 5, 4)
    folder = tmp_path / "ad"
    folder.mkdir()
    save_file({f"{PREFIX}model.layers.0.self_attn.q_proj.lora_A.weight": a,
               f"{PREFIX}model.layers.0.self_attn.q_proj.lora_B.weight": b,
               f"{PREFIX}model.layers.0.self_attn.k_proj.lora_A.weight": a,  # no partner
               f"{PREFIX}model.layers.0.self_attn.o_proj.lora_A.weight": a,
               f"{PREFIX}model.layers.0.self_attn.o_proj.lora_B.weight": b[:, :3].copy()},  # rank 4 x rank 3
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32}))
    assert main.main(["info", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    warnings = "\n".join(out["warnings"])
    assert "gives rank 16 but its tensors have rank 4" in warnings
    assert "'model.layers.0.self_attn.k_proj' has no lora_B tensor" in warnings
    assert "lora_A has rank 4 but lora_B has shape [6, 3]" in warnings
    (entry,) = out["lora"]["modules"]
    assert entry["scale"] == 32 / 4
    assert_matches_dense(entry, a, b, 8.0)


def test_oversized_or_broken_factors_are_named_not_read(tmp_path: Path, reads) -> None:
    rng = np.random.default_rng(11)
    a, b = factors(rng, 6, 5, 2)
    bad_a = a.copy()
    bad_a[0, 0] = np.nan
    folder = write_adapter(tmp_path / "ad", {"model.layers.0.self_attn.q_proj": (a, b),
                                             "model.layers.1.self_attn.q_proj": (bad_a, b)}, {"r": 2, "lora_alpha": 2})
    with open_checkpoint(str(folder)) as checkpoint:
        small = measure(checkpoint, checkpoint.lora, max_side_elements=11)
        assert reads == []  # over the limit: nothing read
        assert all(u.delta_fro is None and "over the 11 read" in u.why_not for u in small)
        first, second = measure(checkpoint, checkpoint.lora)
    assert first.delta_fro == pytest.approx(dense_figures(a, b, 1.0)[0], rel=1e-10)
    assert second.delta_fro is None and "NaN or infinite" in second.why_not


def test_terminal_text_escapes_file_strings(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(12)
    folder = write_adapter(tmp_path / "ad", {"model.layers.0.evil\x1b[2J.q_proj": factors(rng, 4, 4, 2)},
                           {"r": 2, "lora_alpha": 2, "base_model_name_or_path": "org/\x1b]0;owned\x07base",
                            "target_modules": ["q\x1b[31m"]})
    assert main.main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "org/\\x1b]0;owned\\x07base" in out and "evil\\x1b[2J.q_proj" in out and "q\\x1b[31m" in out


# --- against the base model --------------------------------------------------------------------------------


def test_relative_update_against_a_safetensors_base(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(13)
    names = [f"model.layers.{i}.self_attn.{p}" for i in range(3) for p in ("q_proj", "v_proj")]
    base = {f"{n}.weight": rng.normal(size=(10, 12)).astype(np.float32) for n in names}
    base["model.embed_tokens.weight"] = rng.normal(size=(30, 12)).astype(np.float32)
    base_bf16_folder = tmp_path / "base"
    base_bf16_folder.mkdir()
    save_file(base, str(base_bf16_folder / "model.safetensors"))
    modules = {n: factors(rng, 10, 12, 4) for n in names}
    folder = write_adapter(tmp_path / "ad", modules, {"r": 4, "lora_alpha": 4, "use_rslora": True})
    lora = lora_of(folder, capsys, "--base", str(base_bf16_folder))
    scale = 4 / 2.0
    assert lora["base_parameters"] == sum(w.size for w in base.values())
    assert lora["adapter_share_of_base"] == pytest.approx(lora["adapter_parameters"] / lora["base_parameters"])
    profile = {(row["layer"], row["module"]): row for row in lora["depth_profile"]}
    assert sorted(profile) == [(i, f"self_attn.{p}") for i in range(3) for p in ("q_proj", "v_proj")]
    for entry in lora["modules"]:
        w = base[entry["name"] + ".weight"].astype(np.float64)
        fro, _ = dense_figures(*modules[entry["name"]], scale)
        assert entry["base_tensor"] == entry["name"] + ".weight"
        assert entry["base_fro"] == pytest.approx(np.linalg.norm(w), rel=1e-12)
        assert entry["relative_update"] == pytest.approx(fro / np.linalg.norm(w), rel=1e-10)
        block = profile[(int(entry["name"].split(".")[2]), entry["name"].split(".", 3)[3])]
        assert block["relative_update"] == entry["relative_update"]
        assert block["role"] in ("attention.q", "attention.v")
    assert main.main(["info", str(folder), "--base", str(base_bf16_folder)]) == 0
    text = capsys.readouterr().out
    assert "Depth profile of ||dW||_F / ||W||_F" in text and "rel" in text
    assert f"{lora['modules'][0]['relative_update']:.4g}" in text


def test_unmatched_or_misshapen_base_weights_are_said(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(14)
    save_file({"model.layers.0.self_attn.q_proj.weight": np.ones((3, 3), np.float32)}, str(tmp_path / "b.safetensors"))
    folder = write_adapter(tmp_path / "ad", {"model.layers.0.self_attn.q_proj": factors(rng, 4, 5, 2),
                                             "model.layers.0.self_attn.v_proj": factors(rng, 4, 5, 2)}, {"r": 2})
    lora = lora_of(folder, capsys, "--base", str(tmp_path / "b.safetensors"))
    q, v = lora["modules"]
    assert q["relative_update"] is None and "shape [3, 3], the update 4 x 5" in q["not_compared"]
    assert v["base_tensor"] is None and "no 'model.layers.0.self_attn.v_proj.weight'" in v["not_compared"]
    assert lora["depth_profile"] == []
    assert main.main(["info", str(folder), "--base", str(tmp_path / "missing")]) == 2
    assert "base model:" in capsys.readouterr().err


# --- the bundled sample adapter ------------------------------------------------------------------------------


def test_sample_adapter_matches_a_dense_computation(capsys) -> None:
    config = json.loads((SAMPLE_LORA / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"]) == (8, 16, ["q_proj", "v_proj"])
    assert sum(p.stat().st_size for p in SAMPLE_LORA.iterdir()) < 1 << 20
    truth = load_file(str(SAMPLE_LORA / "adapter_model.safetensors"))
    base = load_file(str(SAMPLE_BASE / "model.safetensors"))
    lora = lora_of(SAMPLE_LORA, capsys, "--base", str(SAMPLE_BASE))
    assert [e["name"] for e in lora["modules"]] == sorted(f"model.layers.{i}.self_attn.{p}" for i in range(4)
                                                           for p in ("q_proj", "v_proj"))
    assert lora["adapter_parameters"] == sum(v.size for v in truth.values()) == 4 * (8 * 128 * 2 + 128 * 8 + 64 * 8)
    assert lora["base_parameters"] == 803_968
    for entry in lora["modules"]:
        a, b = truth[f"{PREFIX}{entry['name']}.lora_A.weight"], truth[f"{PREFIX}{entry['name']}.lora_B.weight"]
        assert entry["r"] == 8 and entry["scale"] == 2.0
        assert_matches_dense(entry, a, b, 2.0)
        assert entry["delta_fro"] > 0  # trained: B moved away from its zero start
        w = base[entry["name"] + ".weight"].astype(np.float64)
        assert entry["relative_update"] == pytest.approx(entry["delta_fro"] / np.linalg.norm(w), rel=1e-10)
    assert len(lora["depth_profile"]) == 8


def test_sample_adapter_against_the_quantised_gguf_base(capsys) -> None:
    """GGUF base: names through llama.cpp's map, ||W|| of the dequantised Q8_0 values (read by the gguf package)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(SAMPLE_GGUF))
    norms = {t.name: np.linalg.norm(dequantize(t.data, t.tensor_type).astype(np.float64)) for t in reader.tensors}
    lora = lora_of(SAMPLE_LORA, capsys, "--base", str(SAMPLE_GGUF))
    for entry in lora["modules"]:
        layer, proj = entry["name"].split(".")[2], entry["name"].rsplit(".", 1)[1]
        gguf_name = f"blk.{layer}.attn_{proj[0]}.weight"
        assert entry["base_tensor"] == gguf_name
        assert entry["base_fro"] == pytest.approx(norms[gguf_name], rel=1e-12)
        assert entry["relative_update"] == pytest.approx(entry["delta_fro"] / norms[gguf_name], rel=1e-10)


def test_sample_adapter_text_table(capsys) -> None:
    assert main.main(["info", str(SAMPLE_LORA / "adapter_config.json")]) == 0
    text = capsys.readouterr().out
    assert "LoRA adapter" in text and "lora_alpha 16" in text and "scale = alpha / r" in text
    assert "targets        q_proj, v_proj" in text and "base model     tiny-llama" in text
    rows = [line for line in text.splitlines() if line.startswith("  model.layers.")]
    assert len(rows) == 8 and all(line.split()[1:4] == ["8", "16", "2"] for line in rows)


def test_pytorch_adapter_bin_is_read_without_unpickling(tmp_path: Path, capsys) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(15)
    a, b = factors(rng, 9, 7, 3)
    folder = tmp_path / "ad"
    folder.mkdir()
    name = "model.layers.2.self_attn.o_proj"
    torch.save({f"{PREFIX}{name}.lora_A.weight": torch.from_numpy(a),
                f"{PREFIX}{name}.lora_B.weight": torch.from_numpy(b)}, folder / "adapter_model.bin")
    (folder / "adapter_config.json").write_text(json.dumps({"r": 3, "lora_alpha": 9}))
    for path in (folder, folder / "adapter_config.json"):
        lora = lora_of(path, capsys)
        (entry,) = lora["modules"]
        assert entry["name"] == name and entry["scale"] == 3.0
        assert_matches_dense(entry, a, b, 3.0)


def test_unmeasured_factors_are_warnings_of_info(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(16)
    a, b = factors(rng, 4, 4, 2)
    b[1, 1] = np.inf
    folder = write_adapter(tmp_path / "ad", {"model.layers.0.self_attn.q_proj": (a, b)}, {"r": 2, "lora_alpha": 2})
    assert main.main(["info", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["warnings"] == ["LoRA module 'model.layers.0.self_attn.q_proj' not measured: its factors hold NaN or "
                               "infinite values"]
    entry = out["lora"]["modules"][0]
    assert entry["delta_fro"] is None and entry["delta_singular_values"] == [] and "NaN" in entry["not_measured"]
    assert main.main(["info", str(folder)]) == 0
    assert "Warning     LoRA module 'model.layers.0.self_attn.q_proj' not measured" in capsys.readouterr().out
