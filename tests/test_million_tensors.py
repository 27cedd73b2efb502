"""A header of a great many tensors opens, summarises and lists them in near-linear time and bounded output.

The shortcuts that make this possible (memoised classification, streamed `info --json`, empty tensors summarised
without a backend) must give exactly what the direct computation gives: these tests compare them against it.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.commands.info import info_json, write_info_json
from core.formats import open_checkpoint
from core.numbers import strict_json
from core.taxonomy import classify, classify_uncached
from tests.corpus import CORPUS

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "samples"


def model_files() -> list[Path]:
    """Every good corpus file and the bundled sample: real names from many naming schemes."""
    found = sorted(p for p in (CORPUS / "good").rglob("*") if p.is_file() and not p.name.endswith(".json"))
    found += sorted(p for p in SAMPLES.rglob("*") if p.suffix in (".safetensors", ".gguf", ".bin", ".pt"))
    return found


def write_empty_tensors(path: Path, names: list[str], dtype: str = "F32") -> None:
    entries = [f"{json.dumps(n)}:{{\"dtype\":\"{dtype}\",\"shape\":[0],\"data_offsets\":[0,0]}}" for n in names]
    header = ("{" + ",".join(entries) + "}").encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def run_cli(*args: str, cache: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, WEIGHTSCOPE_CACHE_DIR=str(cache), QT_QPA_PLATFORM="offscreen")
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(REPO / "main.py"), *args], capture_output=True, text=True,
                            timeout=600, env=env)
    return result, time.monotonic() - started


# --- exactness of the shortcuts --------------------------------------------------------------------------------------
VARIED_NAMES = [
    "model.layers.7.mlp.fc1.weight", "model.layers.7.mlp.fc2.weight", "h.3.mlp.c_fc.weight", "blk.12.ffn_up.weight",
    "layers.1234567890.attn.q.weight", "layers.123456789.attn.q.weight", "layers.0000000000001.attn.q.weight",
    "optimizer.state.12.exp_avg", "optim.state.123456789012.step", "state.1234567890123.step", "state.7.step",
    "encoder.layer.3.attention.output.dense.bias", "rnn.weight_ih_l0", "lstm2.weight_hh_l1_reverse", "bn1.running_mean",
    "features.0.weight", "features.10.weight", "ln_1.weight", "ln.2.weight", "transformer.h.11.ln_f.weight",
    "gpt_neox.layers.2.mlp.dense_h_to_4h.weight", "w1", "3", "12.34", "0.0.0", ".5.", "", "wte", "model.ema.3.weight",
    "layers.５.weight", "layers.٣.mlp.weight", "LAYERS.4.Q_PROJ.WEIGHT", "output.weight", "lm_head.weight",
]


def test_memoised_classification_equals_the_direct_one() -> None:
    cases = [(n, shape, dtype) for n in VARIED_NAMES for shape in [(), (4,), (4, 4), (2, 3, 4), (1, 2, 3, 4)]
             for dtype in ("F32", "I64", "U8", "BOOL", "Q4_0")]
    for path in model_files():
        with open_checkpoint(str(path)) as checkpoint:
            cases += [(t.name, t.shape, t.dtype) for t in checkpoint.tensors]
            # the same names with other block numbers hit the memo entries the originals made
            cases += [(t.name.replace("0", "7").replace("1", "12"), t.shape, t.dtype) for t in checkpoint.tensors]
    assert len(cases) > 1_000
    for _ in range(2):  # the second round answers from the memo
        for name, shape, dtype in cases:
            assert classify(name, shape, dtype) == classify_uncached(name, shape, dtype), name


def test_streamed_info_json_equals_the_whole_object() -> None:
    checked = 0
    for path in model_files():
        with open_checkpoint(str(path)) as checkpoint:
            out = io.StringIO()
            write_info_json(checkpoint, out)
            expected = json.dumps(strict_json(info_json(checkpoint)), indent=1, default=str, allow_nan=False)
            assert json.loads(out.getvalue()) == json.loads(expected), path
            assert out.getvalue().endswith("}\n")
            checked += 1
    assert checked >= 3


def test_streamed_info_json_of_odd_names_and_no_tensors(tmp_path: Path) -> None:
    names = ["a\u202eb", "\x1b[31m", "é.ß", "\ud800x", '"quoted"\\', "x" * 300]
    path = tmp_path / "odd.safetensors"
    write_empty_tensors(path, names)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(struct.pack("<Q", 2) + b"{}")
    for model in (path, empty):
        with open_checkpoint(str(model)) as checkpoint:
            out = io.StringIO()
            write_info_json(checkpoint, out)
            assert json.loads(out.getvalue()) == json.loads(json.dumps(strict_json(info_json(checkpoint)),
                                                                       default=str))
            assert out.getvalue().isascii()  # as json.dump's ensure_ascii wrote it
            assert [t["name"] for t in json.loads(out.getvalue())["tensors"]] == (names if model == path else [])


# --- scaling ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["blocks", "flat"])
def test_info_of_100000_empty_tensors_scales_linearly_and_prints_a_bounded_tree(tmp_path: Path, style: str) -> None:
    def names(count: int) -> list[str]:
        if style == "blocks":
            return [f"model.layers.{i // 10}.mlp.e{i % 10}.weight" for i in range(count)]
        return [f"{i * 7919:x}" for i in range(count)]  # distinct names the memo cannot share

    small, large = tmp_path / "small.safetensors", tmp_path / "large.safetensors"
    write_empty_tensors(small, names(1_000))
    write_empty_tensors(large, names(100_000))
    timings = {}
    for label, model in (("small", small), ("large", large)):
        for command in (["info", str(model)], ["info", "--json", str(model)]):
            result, seconds = run_cli(*command, cache=tmp_path / "cache")
            assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
            timings[(label, len(command))] = seconds
            if "--json" in command:
                data = json.loads(result.stdout)
                assert data["tensor_count"] == len(data["tensors"]) == (100_000 if label == "large" else 1_000)
                assert data["tensors"][-1]["name"] == names(100_000 if label == "large" else 1_000)[-1]
            else:
                assert len(result.stdout.splitlines()) < 2_000
                assert f"Tensors     {100_000 if label == 'large' else 1_000:,}" in result.stdout
    for length in (2, 3):
        # 100 times the tensors in under 40 times the time (start-up, ~0.3 s, is in both): measured 11x (--json)
        # and 26x (text, whose tree of 220,000 nodes is built); the pure-Python JSON encoder this replaced took ~50x
        assert timings[("large", length)] < 40 * timings[("small", length)], timings
    assert sorted(set(os.listdir(tmp_path)) - {"cache"}) == ["large.safetensors", "small.safetensors"]


def test_the_role_pre_check_never_rules_out_a_name_a_rule_matches() -> None:
    import itertools
    import random
    import re

    from core.taxonomy import _ROLE_RULES, may_match_a_role_rule

    words = sorted({w for pattern, _ in _ROLE_RULES for w in re.findall(r"[a-z0-9_]+", pattern.pattern)})
    words += ["", "x", "7", "12", "f", "e", "ab"]
    paths = ["".join(p) for n in (1, 2, 3) for p in itertools.product("abcdefglnoqrsuvw._0129", repeat=n)]
    rng = random.Random(7)
    for _ in range(40_000):
        parts = rng.choices(words, k=rng.randint(1, 4))
        paths.append("".join(part + rng.choice([".", "_", "", "."]) for part in parts).strip("."))
    paths += words
    matched = 0
    for path in paths:
        if any(pattern.search(path) for pattern, _ in _ROLE_RULES):
            matched += 1
            assert may_match_a_role_rule(path), path
    assert matched > 10_000  # the check saw many matching names, not only misses
    assert not may_match_a_role_rule("3fa7c") and not may_match_a_role_rule("deadbeef.12")


def _stats_dict(ts) -> dict:
    from core.stats import stats_to_json

    return stats_to_json(ts)


def test_empty_tensors_share_one_summary_and_give_what_fresh_ones_give(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    from core.stats import run
    from core.stats_summary import FloatSummary, PatternSummary, derive, merge_all

    tensors = {f"e{i}": np.zeros((0, 3), dtype) for i, dtype in enumerate([np.float32, np.float16, np.uint8] * 3)}
    tensors["w"] = np.array([1.5, -2.0, 3.25], np.float32)
    tensors["b"] = np.array([1, 2, 2, 200], np.uint8)
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path))
    result = run(str(path), use_cache=False)
    assert result.device != "cache" and result.bytes_read == 16
    with open_checkpoint(str(path)) as checkpoint:
        fresh = {}
        for t in checkpoint.tensors:
            if t.elements == 0:
                s = PatternSummary.empty(t.dtype, (t.dtype,)) if t.dtype == "U8" else FloatSummary.empty((t.dtype,))
                s.compact()
                fresh[t.name] = s
            else:
                fresh[t.name] = result.summaries[t.name]
        for name in tensors:
            assert _stats_dict(result.stats(name)) == _stats_dict(derive(fresh[name], name)), name
        a, b = result.stats("e0"), result.stats("e3")
        assert a.name == "e0" and b.name == "e3" and a.hist_edges is not b.hist_edges
        for names in (list(tensors), [n for n in tensors if n.startswith("e")], ["e2", "b", "e5", "e8"]):
            merged = derive(merge_all([fresh[n] for n in names]), "g")
            group = result.group(names, "g")
            assert group.tensors == len(names)
            assert _stats_dict(group) == _stats_dict(merged) | {"tensors": len(names)}, names


def test_stats_of_only_empty_tensors_reads_nothing_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    write_empty_tensors(path, [f"t{i}" for i in range(2_000)])
    result, _ = run_cli("stats", "--json", str(path), cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["device"] == "none" and data["bytes_read"] == 0
    assert [t["name"] for t in data["tensors"]] == [f"t{i}" for i in range(2_000)]
    assert all(t["count"] == 0 and t["histogram"]["counts"] == data["tensors"][0]["histogram"]["counts"]
               for t in data["tensors"])


def test_info_text_names_a_tree_too_large_to_build_and_keeps_the_counts(tmp_path: Path, monkeypatch) -> None:
    from core.commands import info

    path = tmp_path / "many.safetensors"
    write_empty_tensors(path, [f"block.{i}.w" for i in range(500)])
    with open_checkpoint(str(path)) as checkpoint:
        full = info.info_text(checkpoint)
        monkeypatch.setattr(info, "TREE_TENSOR_LIMIT", 499)
        bounded = info.info_text(checkpoint)
    assert "Layer tree (repeated blocks folded)" in full and "block.0-499 (x500)" in full
    assert "block.0-499" not in bounded
    assert "Layer tree  not built for 500 tensors (over 499" in bounded
    assert bounded.split("Layer tree")[0] == full.split("Layer tree")[0]  # every count above the tree is kept
