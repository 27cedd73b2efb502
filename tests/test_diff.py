"""The comparison engine and `main.py diff`: every figure against a dense numpy float64 computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch

import main
from core.diff import compare, metrics, run
from core.errors import CancelledError, CheckpointError
from core.name_map import gguf_name, gguf_rows_of_hf, hf_rows_of_gguf

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples"
HEADS, KV_HEADS, HIDDEN, FFN = 4, 2, 32, 64


def truth(a: np.ndarray, b: np.ndarray) -> dict:
    """The figures, computed densely in float64 over whole arrays (independent of the engine)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d = b64 - a64
    return {
        "rel_change": np.linalg.norm(d) / np.linalg.norm(a64),
        "cosine": float(a64.ravel() @ b64.ravel()) / (np.linalg.norm(a64) * np.linalg.norm(b64)),
        "max_abs_diff": float(np.abs(d).max()),
        "max_abs_diff_at": list(np.unravel_index(int(np.abs(d).argmax()), a.shape)),
        "identical_fraction": float(np.mean(a64.view(np.uint64) == b64.view(np.uint64))),
        "mean_a": a64.mean(), "mean_b": b64.mean(), "std_a": a64.std(), "std_b": b64.std(),
        "mean_diff": d.mean(), "std_diff": d.std(),
    }


def assert_figures(got: dict, want: dict) -> None:
    for key, value in want.items():
        if isinstance(value, list) or key == "identical_fraction":
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Two safetensors files: a moved matrix, a frozen one, a partly moved one, and unpaired tensors."""
    rng = np.random.default_rng(7)
    a = {"model.layers.0.mlp.up_proj.weight": rng.normal(size=(24, 16)).astype(np.float32),
         "model.layers.0.self_attn.o_proj.weight": rng.normal(size=(16, 16)).astype(np.float32),
         "model.layers.1.mlp.up_proj.weight": rng.normal(size=(24, 16)).astype(np.float32),
         "model.norm.weight": np.ones(16, np.float32),
         "only.a": np.zeros(3, np.float32),
         "resized.weight": np.zeros((4, 4), np.float32)}
    b = {k: v.copy() for k, v in a.items() if k != "only.a"}
    b["model.layers.0.mlp.up_proj.weight"] += rng.normal(scale=0.01, size=(24, 16)).astype(np.float32)
    b["model.layers.1.mlp.up_proj.weight"][5:9] *= np.float32(1.5)
    b["model.layers.1.mlp.up_proj.weight"][7, 3] = -40.0  # the largest difference, at a known place
    b["resized.weight"] = np.zeros((4, 5), np.float32)
    b["only.b"] = np.ones(2, np.float32)
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(a, str(pa))
    save_file(b, str(pb))
    return pa, pb, a, b


@pytest.mark.parametrize("cache_block", [3, 1 << 16])
def test_figures_match_dense_numpy_in_any_chunking(pair, monkeypatch: pytest.MonkeyPatch, cache_block: int) -> None:
    pa, pb, a, b = pair
    monkeypatch.setattr("core.diff.CACHE_ELEMENTS", cache_block)  # the blocks within a read chunk merge too
    for chunk in (1, 7, 100, 1 << 21):  # chunks merge exactly: any chunking gives the dense figures
        result = run(pa, pb, chunk_elements=chunk)
        for name in ("model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight",
                     "model.layers.0.self_attn.o_proj.weight"):
            assert_figures(metrics(result.tensors[name].sums), truth(a[name], b[name]))
    got = metrics(result.tensors["model.layers.1.mlp.up_proj.weight"].sums)
    assert got["max_abs_diff_at"] == [7, 3]
    assert got["identical_fraction"] == (24 * 16 - 4 * 16) / (24 * 16)  # rows 5..8 moved, all others identical
    assert math.isnan(got["snr_db"])  # no quantised side


def test_groups_and_model_are_exact_merges(pair) -> None:
    pa, pb, a, b = pair
    result = run(pa, pb, chunk_elements=5)
    compared = [n for n in a if n in result.tensors]
    assert sorted(compared) == sorted(n for n in a if n not in ("only.a", "resized.weight"))

    def cat(side: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([side[n].ravel() for n in compared])

    want = truth(cat(a), cat(b))
    model = metrics(result.model())
    del want["max_abs_diff_at"]  # coordinates of the model's largest difference are within its tensor
    assert_figures(model, want)
    assert model["max_abs_diff_tensor"] == "model.layers.1.mlp.up_proj.weight" and model["max_abs_diff_at"] == [7, 3]
    layers = dict(result.group("layer"))
    assert list(layers) == ["layer 0", "layer 1", "outside layers"]
    layer0 = [n for n in compared if n.startswith("model.layers.0.")]
    want0 = truth(np.concatenate([a[n].ravel() for n in layer0]), np.concatenate([b[n].ravel() for n in layer0]))
    del want0["max_abs_diff_at"]
    assert_figures(metrics(layers["layer 0"]), want0)


def test_unpaired_and_mismatched_are_listed(pair) -> None:
    pa, pb, _, _ = pair
    result = run(pa, pb)
    assert result.only_in_a == ["only.a"] and result.only_in_b == ["only.b"]
    assert result.mismatched == [{"a": "resized.weight", "b": "resized.weight", "a_shape": [4, 4], "b_shape": [4, 5],
                                  "a_dtype": "F32", "b_dtype": "F32", "compared": False,
                                  "reason": "shapes differ: [4, 4] in A, [4, 5] in B"}]
    assert "resized.weight" not in result.tensors


def test_a_model_against_itself_is_unchanged(pair) -> None:
    pa, _, _, _ = pair
    result = run(pa, pa)
    every = [td.sums for td in result.tensors.values()] + [s for _, s in result.group("layer")]
    every += [s for _, s in result.group("role")] + [result.model()]
    for sums in every:
        got = metrics(sums)
        assert got["rel_change"] == 0 and got["cosine"] == 1 and got["identical_fraction"] == 1
        assert got["max_abs_diff"] == 0 and got["std_diff"] == 0 and got["mean_diff"] == 0
    assert metrics(result.model())["count"] == sum(v.size for v in pair[2].values())  # every tensor compared


def test_cli_says_when_no_value_differs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = llama_weights(np.random.default_rng(4))
    save_file(weights, str(tmp_path / "model.safetensors"))
    assert main.main(["diff", str(tmp_path / "model.safetensors"), str(tmp_path / "model.safetensors"),
                      "--group", "layer"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("layer ", "outside layers", "model "))]
    assert len(rows) == 4 and all(r[-4:] == ["0", "1", "0", "100.00%"] for r in rows)
    assert "no value differs" in out


def test_bf16_against_its_float32_upcast_is_unchanged(tmp_path: Path) -> None:
    values = torch.randn(33, 17).to(torch.bfloat16)
    save_torch({"w": values, "v": values[0].clone()}, str(tmp_path / "bf16.safetensors"))
    save_torch({"w": values.float(), "v": values[0].float()}, str(tmp_path / "f32.safetensors"))
    result = run(tmp_path / "bf16.safetensors", tmp_path / "f32.safetensors")
    model = metrics(result.model())
    assert model["rel_change"] == 0 and model["identical_fraction"] == 1 and model["count"] == 33 * 17 + 17
    assert [m["compared"] for m in result.mismatched] == [True, True]  # dtypes differ, values compared


def test_negative_zero_counts_as_a_change_of_bits_not_of_value(tmp_path: Path) -> None:
    save_file({"w": np.array([0.0, 1.0, np.nan], np.float32)}, str(tmp_path / "a.safetensors"))
    save_file({"w": np.array([-0.0, 1.0, np.nan], np.float32)}, str(tmp_path / "b.safetensors"))
    got = metrics(run(tmp_path / "a.safetensors", tmp_path / "b.safetensors").model())
    assert got["identical_fraction"] == 2 / 3 and got["rel_change"] == 0 and got["nonfinite"] == 1


# --------------------------------------------------------------------------- GGUF conversions
def llama_weights(rng: np.random.Generator, layers: int = 2) -> dict[str, np.ndarray]:
    """Hugging Face llama-layout tensors whose values F16 holds exactly (so F16 storage is no change)."""
    head_dim = HIDDEN // HEADS
    shapes = {"model.embed_tokens.weight": (64, HIDDEN), "model.norm.weight": (HIDDEN,), "lm_head.weight": (64, HIDDEN)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
                   p + "self_attn.k_proj.weight": (KV_HEADS * head_dim, HIDDEN),
                   p + "self_attn.v_proj.weight": (KV_HEADS * head_dim, HIDDEN),
                   p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN), p + "mlp.gate_proj.weight": (FFN, HIDDEN),
                   p + "mlp.up_proj.weight": (FFN, HIDDEN), p + "mlp.down_proj.weight": (HIDDEN, FFN),
                   p + "input_layernorm.weight": (HIDDEN,), p + "post_attention_layernorm.weight": (HIDDEN,)}
    return {n: rng.normal(size=s).astype(np.float16).astype(np.float32) for n, s in shapes.items()}


def llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf.py does to q_proj and k_proj (LlamaModel.permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, weights: dict[str, np.ndarray], *, permute: bool = True,
               quant: GGMLQuantizationType | None = None) -> None:
    """The GGUF llama.cpp's converter makes of ``weights``: its names, permuted q/k, 2-D tensors as F16 or
    ``quant``, 1-D ones as F32."""
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    for name, w in weights.items():
        if permute and name.endswith(("q_proj.weight", "k_proj.weight")):
            w = llama_cpp_permute(w, HEADS if "q_proj" in name else KV_HEADS)
        if w.ndim == 1:
            writer.add_tensor(gguf_name(name), w)
        elif quant is None:
            writer.add_tensor(gguf_name(name), w.astype(np.float16))
        else:
            writer.add_tensor(gguf_name(name), quantize(w, quant), raw_dtype=quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_row_orders_undo_llama_cpp_permutation() -> None:
    w = np.arange(16 * 3).reshape(16, 3)
    permuted = llama_cpp_permute(w, 2)
    by_head = permuted.reshape(2, 8, 3)
    assert np.array_equal(by_head[:, gguf_rows_of_hf(8)].reshape(16, 3), w)  # GGUF rows back in HF order
    assert np.array_equal(w.reshape(2, 8, 3)[:, hf_rows_of_gguf(8)].reshape(16, 3), permuted)


@pytest.mark.parametrize("reverse", [False, True])
def test_an_unchanged_f16_gguf_conversion_compares_as_unchanged(tmp_path: Path, reverse: bool) -> None:
    weights = llama_weights(np.random.default_rng(1))
    save_file(weights, str(tmp_path / "model.safetensors"))
    write_gguf(tmp_path / "model.gguf", weights)
    a, b = (tmp_path / "model.gguf", tmp_path / "model.safetensors") if reverse else \
        (tmp_path / "model.safetensors", tmp_path / "model.gguf")
    result = run(a, b, chunk_elements=100)  # chunks of whole heads, smaller than one tensor
    assert result.only_in_a == [] and result.only_in_b == [] and len(result.tensors) == len(weights)
    for td in result.tensors.values():
        got = metrics(td.sums)
        assert got["rel_change"] == 0 and got["identical_fraction"] == 1, td.name
        assert td.a.shape == td.b.shape
    assert all(m["compared"] for m in result.mismatched) and len(result.mismatched) == 2 * 7 + 2  # F32 vs F16


def test_without_the_permutation_q_and_k_would_differ(tmp_path: Path) -> None:
    """The control: a GGUF written without llama.cpp's permutation really differs in q and k, and only there."""
    weights = llama_weights(np.random.default_rng(2))
    save_file(weights, str(tmp_path / "model.safetensors"))
    write_gguf(tmp_path / "unpermuted.gguf", weights, permute=False)
    result = run(tmp_path / "model.safetensors", tmp_path / "unpermuted.gguf")
    moved = sorted(n for n, td in result.tensors.items() if metrics(td.sums)["rel_change"] > 0)
    assert moved == sorted(n for n in weights if n.endswith(("q_proj.weight", "k_proj.weight")))
    name = "model.layers.1.self_attn.k_proj.weight"  # B holds w unpermuted: the engine reads w[argsort(rows)]
    w = weights[name]
    rows = llama_cpp_permute(np.arange(w.shape[0])[:, None], KV_HEADS)[:, 0]
    assert_figures(metrics(result.tensors[name].sums), truth(w, w[np.argsort(rows)]))


def test_q8_0_conversion_snr_matches_numpy(tmp_path: Path) -> None:
    weights = llama_weights(np.random.default_rng(3))
    save_file(weights, str(tmp_path / "model.safetensors"))
    write_gguf(tmp_path / "model.Q8_0.gguf", weights, quant=GGMLQuantizationType.Q8_0)
    result = run(tmp_path / "model.safetensors", tmp_path / "model.Q8_0.gguf", chunk_elements=64)
    signal = noise = 0.0
    for name, w in weights.items():
        if w.ndim == 1:
            continue
        heads = HEADS if "q_proj" in name else KV_HEADS
        stored = llama_cpp_permute(w, heads) if name.endswith(("q_proj.weight", "k_proj.weight")) else w
        back = dequantize(quantize(stored, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0)
        if name.endswith(("q_proj.weight", "k_proj.weight")):  # undo the permutation by index, independently
            rows = llama_cpp_permute(np.arange(w.shape[0])[:, None], heads)[:, 0]
            back = back[np.argsort(rows)]
        want = truth(w, back)
        got = metrics(result.tensors[name].sums)
        assert_figures(got, want)
        d = back.astype(np.float64) - w
        assert got["snr_db"] == pytest.approx(10 * np.log10(np.sum(w.astype(np.float64) ** 2) / np.sum(d * d)))
        signal += np.sum(w.astype(np.float64) ** 2)
        noise += np.sum(d * d)
    assert metrics(result.model())["snr_db"] == pytest.approx(10 * np.log10(signal / noise), rel=1e-12)


def test_bundled_q8_0_sample_aligns_every_tensor_with_its_source() -> None:
    """The sample GGUF (a real llama.cpp conversion) against its safetensors, checked against gguf's own reader."""
    gguf_path, source = SAMPLE / "tiny-llama.Q8_0.gguf", SAMPLE / "tiny-llama"
    result = run(source, gguf_path)
    hf = load_file(str(source / "model.safetensors"))
    assert result.only_in_a == [] and result.only_in_b == [] and len(result.tensors) == len(hf)
    reader = GGUFReader(str(gguf_path))
    heads = {"attn_q": int(reader.fields["llama.attention.head_count"].parts[-1][0]),
             "attn_k": int(reader.fields["llama.attention.head_count_kv"].parts[-1][0])}
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type).reshape(hf[result_name(result, t.name)].shape)
        kind = t.name.split(".")[2] if t.name.startswith("blk.") else ""
        if kind in heads:
            rows = llama_cpp_permute(np.arange(values.shape[0])[:, None], heads[kind])[:, 0]
            values = values[np.argsort(rows)]
        name = result_name(result, t.name)
        got = metrics(result.tensors[name].sums)
        assert got["rel_change"] == pytest.approx(truth(hf[name], values)["rel_change"], rel=1e-9)
        assert got["rel_change"] < 0.01, name  # Q8_0 keeps every tensor within 1%
    assert 40 < metrics(result.model())["snr_db"] < 50


def result_name(result, gguf_tensor: str) -> str:
    return next(td.a.name for td in result.tensors.values() if td.b.name == gguf_tensor)


# --------------------------------------------------------------------------- the shared corpus
def _corpus_files_with_tensors() -> list[str]:
    from tests.corpus import truth

    return [entry["file"] for entry in truth() if entry["tensors"]]


@pytest.mark.parametrize("name", _corpus_files_with_tensors())
def test_every_corpus_model_against_itself_is_unchanged(name: str) -> None:
    from tests.corpus import CORPUS

    result = run(CORPUS / name, CORPUS / name)
    assert result.only_in_a == [] and result.only_in_b == [] and result.mismatched == []
    model = result.model()
    assert model is not None
    got = metrics(model)
    if got["count"]:
        assert got["identical_fraction"] == 1  # NaN against the same NaN is bit-identical too
    if got["count"] > got["nonfinite"]:
        assert got["rel_change"] == 0 and got["max_abs_diff"] == 0 and got["cosine"] == 1


def test_corpus_bf16_rounding_against_its_float32_source() -> None:
    """fracast's BF16 copy was rounded to nearest even: a real, small change, checked against torch's own reader."""
    from safetensors.torch import load_file as load_torch

    from tests.corpus import CORPUS

    source, rounded = CORPUS / "good/safetensors/fracast-model.safetensors", \
        CORPUS / "good/safetensors/fracast-model.bf16.safetensors"
    result = run(source, rounded)
    a, b = load_torch(str(source)), load_torch(str(rounded))
    assert len(result.tensors) == len(a) == len(b)
    for name, td in result.tensors.items():
        want = truth(a[name].double().numpy(), b[name].double().numpy())
        got = metrics(td.sums)
        if not np.any(a[name].numpy()):
            continue  # an all-zero tensor has no relative change
        assert_figures(got, want)
        assert got["rel_change"] < 2 ** -8  # bf16 keeps 8 significant bits


# --------------------------------------------------------------------------- progress and cancel
def test_progress_reaches_the_total_and_cancel_stops_within_a_chunk(pair) -> None:
    pa, pb, _, _ = pair
    gen = compare(pa, pb, chunk_elements=64)
    seen = []
    try:
        while True:
            seen.append(next(gen))
    except StopIteration as stop:
        result = stop.value
    assert seen[-1].fraction == 1.0 and seen[-1].result is result
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    calls = []
    gen = compare(pa, pb, chunk_elements=64, should_stop=lambda: len(calls) >= 3 or calls.append(1) is not None)
    with pytest.raises(CancelledError):
        for _ in gen:
            pass
    assert len(calls) == 3


def test_selection_by_name_and_glob(pair) -> None:
    pa, pb, _, _ = pair
    result = run(pa, pb, ["model.norm.weight"])
    assert list(result.tensors) == ["model.norm.weight"] and result.only_in_a == [] and result.only_in_b == []
    assert sorted(run(pa, pb, pattern="*up_proj*").tensors) == ["model.layers.0.mlp.up_proj.weight",
                                                                "model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(CheckpointError, match="no tensor named"):
        run(pa, pb, ["missing"])


# --------------------------------------------------------------------------- the command
def test_cli_json_has_every_key_and_the_figures(pair, capsys: pytest.CaptureFixture[str]) -> None:
    pa, pb, a, b = pair
    assert main.main(["diff", str(pa), str(pb), "--json", "--group", "role"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"a", "b", "only_in_a", "only_in_b", "mismatched", "tensors", "groups", "model"} <= set(doc)
    entry = next(t for t in doc["tensors"] if t["name"] == "model.layers.1.mlp.up_proj.weight")
    assert {"name", "a_dtype", "b_dtype", "rel_change", "cosine", "max_abs_diff", "max_abs_diff_at",
            "identical_fraction", "snr_db", "mean_a", "mean_b", "std_a", "std_b", "mean_diff", "std_diff"} <= set(entry)
    assert_figures(entry, truth(a[entry["name"]], b[entry["name"]]))
    assert entry["snr_db"] is None  # undefined: no quantised side
    assert [g["group"] for g in doc["groups"]] == sorted({"mlp.up", "attention.o", "norm"})
    assert doc["only_in_a"] == ["only.a"] and doc["mismatched"][0]["compared"] is False


def test_cli_text_table(pair, capsys: pytest.CaptureFixture[str]) -> None:
    pa, pb, _, _ = pair
    assert main.main(["diff", str(pa), str(pb)]) == 0
    out = capsys.readouterr().out
    assert "largest |B-A| in model.layers.1.mlp.up_proj.weight at [7, 3]" in out
    row = next(line for line in out.splitlines() if line.startswith("model.layers.1.mlp.up_proj.weight "))
    assert row.split()[-1] == f"{100 * (24 - 4) / 24:.2f}%"  # identical column: rows 5..8 of 24 moved
    assert "only in A: 1\n  only.a" in out and "only in B: 1\n  only.b" in out
    assert "resized.weight: shapes differ: [4, 4] in A, [4, 5] in B" in out


def test_cli_escapes_hostile_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "evil\x1b]0;pwned\x07\nfake.weight"
    save_file({name: np.ones(4, np.float32)}, str(tmp_path / "a.safetensors"))
    save_file({name: np.zeros(4, np.float32)}, str(tmp_path / "b.safetensors"))
    assert main.main(["diff", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\nfake.weight" not in out


@pytest.mark.parametrize("argv, message", [
    (["diff", "{dir}/missing.safetensors", "{dir}/a.safetensors"], "missing.safetensors"),
    (["diff", "gpt2", "{dir}/a.safetensors"], "no values to compare"),
    (["diff", "{dir}/a.safetensors", "{dir}/a.safetensors", "--tensor", "nope"], "no tensor named 'nope'"),
    (["diff", "{dir}/a.safetensors", "{dir}/a.safetensors", "--match", "zz*"], "no tensor name matches"),
])
def test_cli_refusals_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                              message: str) -> None:
    save_file({"w": np.ones(4, np.float32)}, str(tmp_path / "a.safetensors"))
    assert main.main([arg.format(dir=tmp_path) for arg in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("error: ") and message in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]  # nothing written beside the files


def test_a_lightning_checkpoint_pairs_with_its_exported_weights(tmp_path: Path) -> None:
    """Lightning keeps the model under "state_dict." beside optimizer state; the exported weights have the bare
    names. The model's tensors pair up (figures against numpy); the optimizer state is only in A."""
    lstm, head = torch.nn.LSTM(8, 16, num_layers=2), torch.nn.Linear(16, 3)
    params = [*lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params)
    (head(lstm(torch.randn(4, 2, 8))[0]) ** 2).mean().backward()
    opt.step()
    sd = {**{f"model.lstm.{k}": v for k, v in lstm.state_dict().items()},
          **{f"model.head.{k}": v for k, v in head.state_dict().items()}}
    torch.save({"epoch": 1, "state_dict": sd, "optimizer_states": [opt.state_dict()]}, tmp_path / "run.ckpt")
    tuned = {k: v + 0.5 * torch.ones_like(v) for k, v in sd.items()}
    save_torch({**{k: v.contiguous() for k, v in tuned.items()},
                "module.model.head.bias": tuned["model.head.bias"].clone()}, str(tmp_path / "tuned.safetensors"))
    result = run(tmp_path / "run.ckpt", tmp_path / "tuned.safetensors")
    assert sorted(result.tensors) == sorted(f"state_dict.{k}" for k in sd)
    assert all(name.startswith(("optimizer_states.", "epoch")) for name in result.only_in_a)
    assert result.only_in_b == ["module.model.head.bias"]  # its bare name was taken by the exact match
    a = np.concatenate([v.numpy().ravel() for v in sd.values()]).astype(np.float64)
    b = np.concatenate([v.numpy().ravel() for v in tuned.values()]).astype(np.float64)
    figures = metrics(result.model())
    assert figures["rel_change"] == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-9)
