"""Values at the edge of float64 (-+1.8e308, 1e300) and MXFP4 blocks with NaN scales: exact, monotonic
percentiles (or ones marked inexact), and no traceback or warning through stats, the PDF report and the
depth panel."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.constants import GGMLQuantizationType as Q
from safetensors.numpy import save_file

from core.stats import run
from core.stats_summary import PERCENTILES, percentile_key

REPO = Path(__file__).resolve().parents[1]
MAX = float(np.finfo(np.float64).max)  # "1.8e308"

pytestmark = pytest.mark.usefixtures("cache_dir")


def _truth_percentiles(values: np.ndarray) -> list[float]:
    """numpy's default 'linear' percentiles (the documented definition), on values halved so that numpy's own
    b - a cannot overflow, then doubled: exact scaling by a power of two."""
    f = values[np.isfinite(values)]
    return (np.percentile(f / 2, PERCENTILES) * 2).tolist()


def _got(ts) -> list[float]:
    return [ts.percentiles[percentile_key(p)] for p in PERCENTILES]


EXTREME_SETS = {
    "max_pair": np.array([-MAX, MAX]),
    "max_and_1e300": np.array([-MAX, MAX, -1e300, 1e300, 0.0, 1.5]),
    "few_beyond": np.concatenate([np.linspace(-1, 1, 3000), [MAX, -MAX, 1e300, -1e300] * 50]),
}


@pytest.mark.parametrize("case", list(EXTREME_SETS))
def test_percentiles_are_exact_where_the_extremes_are_stored(tmp_path: Path, case: str) -> None:
    values = EXTREME_SETS[case]
    path = tmp_path / "x.safetensors"
    save_file({"w": values}, str(path))
    ts = run(path, use_cache=False).stats("w")
    got, want = _got(ts), _truth_percentiles(values)
    stored = [i for i, p in enumerate(PERCENTILES) if case != "few_beyond" or p <= 5 or p >= 95]
    assert [got[i] for i in stored] == [want[i] for i in stored]  # ranks among the 1024 extremes kept per side
    for i in set(range(len(got))) - set(stored):  # the bulk: bf16 resolution, as documented
        assert abs(got[i] - want[i]) <= 2.0**-7 * 1.0 + 1e-300
    assert all(np.isfinite(got)) and got == sorted(got)
    assert ts.exact and ts.min == values.min() and ts.max == values.max()


def test_percentiles_among_many_values_beyond_float32_are_monotonic_or_marked(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=6000)
    values[:2500] = 1e300 * (1 + rng.random(2500))  # more beyond float32's range than the 1024 stored per side
    values[2500:5000] = -MAX
    path = tmp_path / "x.safetensors"
    save_file({"w": values}, str(path))
    ts = run(path, use_cache=False).stats("w")
    got, want = _got(ts), _truth_percentiles(values)
    assert got == sorted(got) and all(np.isfinite(got))
    assert not ts.exact  # some percentile is only a bound ...
    outer = [0, 1, 2, 7, 8]  # ... but the ones among the stored extremes are exact
    assert [got[i] for i in outer] == [want[i] for i in outer]
    plain = np.abs(rng.normal(size=6000)) + 1  # the control: no F64 overflow, exact flag stays
    save_file({"w": plain}, str(path))
    assert run(path, use_cache=False).stats("w").exact


@pytest.fixture
def extreme_model(tmp_path: Path) -> Path:
    """Llama-like names so the report and depth profile have layers; values at -+1.8e308."""
    rng = np.random.default_rng(2)
    tensors = {}
    for i in range(3):
        w = rng.normal(size=(16, 16))
        w[0, :4] = [MAX, -MAX, 1e300, -1e300]
        tensors[f"model.layers.{i}.mlp.down_proj.weight"] = w
        tensors[f"model.layers.{i}.mlp.up_proj.weight"] = rng.normal(size=(16, 16))
    path = tmp_path / "extreme.safetensors"
    save_file(tensors, str(path))
    return path


def _cli(*args: str, cache: Path, strict: bool = True) -> subprocess.CompletedProcess:
    """strict turns warnings into errors; without it a warning swallowed by an except clause still shows."""
    env = {**os.environ, "WEIGHTSCOPE_CACHE_DIR": str(cache)}
    if strict:
        env["PYTHONWARNINGS"] = "error::RuntimeWarning"
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)


def test_stats_and_report_cli_on_extreme_values(extreme_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    proc = _cli("stats", str(extreme_model), "--json", cache=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    text = json.dumps(data)
    assert "1.7976931348623157e+308" in text
    out = tmp_path / "out" / "report.pdf"
    out.parent.mkdir()
    proc = _cli("report", str(extreme_model), "-o", str(out), cache=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    assert out.read_bytes().startswith(b"%PDF") and out.stat().st_size > 10_000
    proc = _cli("report", str(extreme_model), "-o", str(out), cache=cache_dir, strict=False)  # from the cache
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_pdf_ticks_never_overflow() -> None:
    from gui.pdf import log_ticks, nice_ticks

    for lo, hi in ((-MAX, MAX), (-MAX, 0.0), (0.0, MAX), (-1e300, 1e300), (-1.0, 1.0)):
        ticks = nice_ticks(lo, hi, 5)
        assert 2 <= len(ticks) <= 12 and all(lo <= t <= hi for t in ticks) and ticks == sorted(ticks), (lo, hi)
    ticks = log_ticks(1e-300, MAX)
    assert ticks and all(1e-300 <= t <= MAX for t in ticks)


def test_depth_panel_with_extreme_values(qtbot, capfd) -> None:
    from core.depth import DepthSeries
    from gui.panels.depth import DepthPanel

    panel = DepthPanel()
    qtbot.addWidget(panel)
    panel.resize(600, 400)
    panel.show()
    lines = [DepthSeries(label, "mlp.down", "model.layers.*.x", [(i, v, f"model.layers.{i}.x")
                                                                 for i, v in enumerate(values)])
             for label, values in (("a", [1.0, MAX, -MAX]), ("b", [1e300, math.inf, 2.0]))]
    for log in (False, True):
        panel.log_y.setChecked(log)
        panel.set_profiles({key: lines for key in ("std", "abs_max", "kurtosis", "l2", "outliers")})
        panel.highlight("model.layers.1.x")
        panel.grab()  # paints: pyqtgraph computes its ranges here
        qtbot.wait(50)
        _x, y = panel.curves["a"].getData()
        finite = y[np.isfinite(y)]
        assert len(finite) == (2 if log else 3) and np.abs(finite).max() < 1e100
    assert "(×1e" not in panel.plot.getAxis("left").labelText  # log scale needs no scaling
    panel.log_y.setChecked(False)
    assert "(×1e306)" in panel.plot.getAxis("left").labelText
    panel.grab()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err


def test_mxfp4_nan_scales_give_nan_without_warnings(tmp_path: Path) -> None:
    block, size = GGML_QUANT_SIZES[Q.MXFP4]
    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 256, size=(8, size), dtype=np.uint8)
    blocks[:, 0] = [0xFF, 0x7F, 0xFE, 0x00, 0xFF, 0x90, 0xFD, 0x80]  # scales: NaN, 1, 2**127, tiny, NaN, ...
    path = tmp_path / "mx.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_tensor("blk.0.ffn_down.weight", blocks.reshape(1, -1), raw_dtype=Q.MXFP4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with np.errstate(all="raise"):  # any numpy warning of ours would raise here ...
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # ... or here
            ts = run(path, use_cache=False).stats("blk.0.ffn_down.weight")
    assert ts.count + ts.nan + ts.pos_inf + ts.neg_inf == 8 * block
    assert ts.nan == 2 * block  # exactly the two blocks whose scale is NaN
    from core.formats import open_checkpoint

    with open_checkpoint(str(path)) as ck:
        values = ck.read("blk.0.ffn_down.weight").reshape(8, block)
    assert np.isnan(values[[0, 4]]).all() and not np.isnan(values[[1, 2, 3, 5, 6, 7]]).any()
