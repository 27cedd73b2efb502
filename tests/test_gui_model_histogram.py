"""A group's histogram: weight matrices by default (norm scales near 1.0 left out), all values, or one per role.

The model is written here: matrices drawn from N(0, 0.02), norm weights near 1.0. The truth each test
checks against is numpy over the arrays written, picked by name, not the app's own classification.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QImage
from safetensors.numpy import save_file

from core.checkpoint import TensorInfo

LAYERS, HIDDEN, INTER, VOCAB = 2, 48, 96, 200
MATRIX_ROLES = {"self_attn.q_proj": "attention.q", "self_attn.k_proj": "attention.k",
                "self_attn.v_proj": "attention.v", "self_attn.o_proj": "attention.o", "mlp.gate_proj": "mlp.gate",
                "mlp.up_proj": "mlp.up", "mlp.down_proj": "mlp.down"}


def model_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)

    out = {"model.embed_tokens.weight": matrix(VOCAB, HIDDEN), "lm_head.weight": matrix(VOCAB, HIDDEN),
           "model.norm.weight": (1 + 0.01 * rng.standard_normal(HIDDEN)).astype(np.float32)}
    shapes = {"mlp.gate_proj": (INTER, HIDDEN), "mlp.up_proj": (INTER, HIDDEN), "mlp.down_proj": (HIDDEN, INTER)}
    for i in range(LAYERS):
        for module in MATRIX_ROLES:
            out[f"model.layers.{i}.{module}.weight"] = matrix(*shapes.get(module, (HIDDEN, HIDDEN)))
        for norm in ("input_layernorm", "post_attention_layernorm"):
            out[f"model.layers.{i}.{norm}.weight"] = (1 + 0.01 * rng.standard_normal(HIDDEN)).astype(np.float32)
    return out


def is_matrix_name(name: str) -> bool:
    return name.endswith("_proj.weight") or name == "lm_head.weight"


def role_of(name: str) -> str:
    if "norm" in name:
        return "norm"
    if name.startswith("model.embed_tokens"):
        return "embedding"
    if name.startswith("lm_head"):
        return "head"
    return next(role for module, role in MATRIX_ROLES.items() if f".{module}." in name)


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = model_arrays()
    path = tmp_path / "norms-and-matrices" / "model.safetensors"
    path.parent.mkdir()
    save_file(arrays, str(path))
    return path, arrays




def wait_shown(qtbot, view) -> None:
    qtbot.waitUntil(lambda: not view.selection_job.busy and view.distribution.stats is not None
                    and view.distribution.fraction == 1, timeout=20000)


def choose(qtbot, view, label: str) -> None:
    panel = view.distribution
    panel.scope.setCurrentIndex(panel.scope.findText(label))
    qtbot.waitUntil(lambda: not view.selection_job.busy, timeout=20000)
    wait_shown(qtbot, view)


def test_root_histogram_is_of_weight_matrices_then_all_values(make_window, open_model, qtbot, model, reads):
    path, arrays = model
    window = make_window()
    view = open_model(window, path)
    assert view.select_path("")
    wait_shown(qtbot, view)
    panel = view.distribution
    assert panel.scope.isEnabled() and panel.scope.currentText() == "Weight matrices"
    ts = panel.stats
    matrices = np.concatenate([a.ravel() for n, a in arrays.items() if is_matrix_name(n)]).astype(np.float64)
    assert ts.count == matrices.size and int(ts.hist_counts.sum()) == matrices.size
    assert ts.tensors == sum(map(is_matrix_name, arrays)) == 7 * LAYERS + 1
    assert ts.mean == pytest.approx(matrices.mean(), rel=1e-9, abs=1e-15)
    assert ts.std == pytest.approx(matrices.std(), rel=1e-9)
    assert ts.max == matrices.max() < 1.0 and ts.hist_edges[-1] < 1.0  # no norm scale in view
    assert panel.table_text("Values") == f"{matrices.size:,}"
    subtitle = panel.subtitle.text()
    assert subtitle.startswith("weight matrices") and f"{7 * LAYERS + 1} of {len(arrays)} tensors" in subtitle

    before = len(reads)
    choose(qtbot, view, "All values")
    everything = np.concatenate([a.ravel() for a in arrays.values()]).astype(np.float64)
    ts = panel.stats
    assert ts.count == everything.size and int(ts.hist_counts.sum()) == everything.size
    assert ts.tensors == len(arrays)
    assert ts.max == everything.max() > 1.0 and ts.hist_edges[0] < 0 < 1.0 < ts.hist_edges[-1]
    assert panel.subtitle.text().startswith(f"all values · {len(arrays)} tensors")
    assert len(reads) == before  # re-merged from the summaries: nothing read again

    assert view.select_path("model.layers.0.self_attn.q_proj.weight")  # the scope stays; a tensor has one
    wait_shown(qtbot, view)
    assert not panel.scope.isEnabled() and panel.stats.count == arrays["model.layers.0.self_attn.q_proj.weight"].size
    assert view.select_path("")
    wait_shown(qtbot, view)
    assert panel.scope.currentText() == "All values" and panel.stats.count == everything.size


def test_by_role_shows_one_histogram_per_role(make_window, open_model, qtbot, model, reads):
    path, arrays = model
    window = make_window()
    view = open_model(window, path)
    assert view.select_path("")
    wait_shown(qtbot, view)
    before = len(reads)
    choose(qtbot, view, "By role")
    panel = view.distribution
    expected: dict[str, list[str]] = {}
    for name in arrays:
        expected.setdefault(role_of(name), []).append(name)
    assert panel.pages.currentWidget() is panel.role_grid
    assert sorted(r.role for r in panel.roles) == sorted(expected) and len(expected) == 10
    assert len(panel.role_plots) == len(expected)
    for role, item in zip(panel.roles, panel.role_plots, strict=True):
        names = expected[role.role]
        values = np.concatenate([arrays[n].ravel() for n in names])
        assert role.tensors == len(names) and role.stats.count == values.size
        assert role.stats.max == values.max() and role.stats.min == values.min()
        title = item.titleLabel.text
        assert role.role in title and f"{len(names)} tensor" in title
        _, y = item.listDataItems()[0].getData()
        assert y.sum() == values.size
    norm = next(r for r in panel.roles if r.role == "norm")
    assert norm.stats.min > 0.9 and norm.tensors == 2 * LAYERS + 1
    assert panel.subtitle.text().startswith("by role · 10 roles")
    assert len(reads) == before
    png = path.parent.parent / "roles.png"
    panel.export(str(png))
    assert not QImage(str(png)).isNull()

    choose(qtbot, view, "Weight matrices")
    assert panel.pages.currentIndex() == 0 and panel.role_plots == []


def test_a_group_without_matrices_shows_its_values_and_says_so(make_window, open_model, qtbot, model):
    path, arrays = model
    window = make_window()
    view = open_model(window, path)
    group = next(n for n in view.tree_model.root.walk() if n.repeat > 1 and n.path.endswith("input_layernorm.weight"))
    view._select_source_index(view.tree_model.index_of(group))
    wait_shown(qtbot, view)
    norms = [a for n, a in arrays.items() if n.endswith("input_layernorm.weight")]
    assert view.distribution.stats.count == sum(a.size for a in norms)
    assert "no weight matrices here" in view.distribution.subtitle.text()


def test_a_scope_switch_reuses_what_the_selection_read(make_window, open_model, qtbot, model, reads):
    """Without the whole-model analysis the selection reads its own tensors; switching scope reads only those
    it has not read yet, and switching back reads nothing."""
    path, arrays = model
    window = make_window(auto_analyse=False)
    view = open_model(window, path)
    assert view.select_path("")
    wait_shown(qtbot, view)
    assert set(reads) == {n for n in arrays if is_matrix_name(n)}
    reads.clear()
    choose(qtbot, view, "All values")
    assert set(reads) == {n for n in arrays if not is_matrix_name(n)}
    assert view.distribution.stats.count == sum(a.size for a in arrays.values())
    reads.clear()
    choose(qtbot, view, "Weight matrices")
    choose(qtbot, view, "By role")
    assert reads == [] and len(view.distribution.role_plots) == 10


def test_marker_labels_at_the_plot_edge_slide_inside(qtbot, tmp_path):
    """An outlier far right puts every marker at the left edge: the shared label is slid in, never cut."""
    from core.formats import open_checkpoint
    from core.stats import run
    from gui.panels.distribution import DistributionPanel

    values = (np.random.default_rng(2).standard_normal(20_000) * 0.01).astype(np.float32)
    values[0] = 5.0
    save_file({"w": values}, str(tmp_path / "edge.safetensors"))
    with open_checkpoint(str(tmp_path / "edge.safetensors")) as checkpoint:
        ts = run(checkpoint, use_cache=False).stats("w")
    panel = DistributionPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 420)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_stats(ts, "w", "test")
    qtbot.wait(50)
    box = panel.plot.getViewBox().sceneBoundingRect()
    shown = [m.label for m in panel.markers if m.label.isVisible()]
    assert shown and " · ".join(label.format for label in shown).count("mean") == 1
    for label in shown:
        rect = label.sceneBoundingRect()
        assert box.left() - 1 <= rect.left() and rect.right() <= box.right() + 1, (label.format, rect, box)


@pytest.mark.parametrize(("name", "shape", "dtype", "matrix"), [
    ("model.layers.0.mlp.up_proj.weight", (96, 48), "BF16", True),
    ("lm_head.weight", (200, 48), "F16", True),
    ("blk.0.ffn_down.weight", (96, 48), "Q4_K", True),  # quantised: its dequantised values
    ("model.layers.0.input_layernorm.weight", (1, 48), "F32", False),  # a norm scale stored as a row
    ("model.embed_tokens.weight", (200, 48), "F32", False),  # looked up, not multiplied: "By role" has it
    ("model.layers.0.mlp.up_proj.bias", (96,), "F32", False),
    ("model.layers.0.mlp.up_proj.qweight", (12, 48), "I32", False),  # packed integers, not values
])
def test_which_tensors_are_weight_matrices(name, shape, dtype, matrix) -> None:
    from core.histogram_scope import is_weight_matrix
    from core.taxonomy import classify

    kind, role = classify(name, shape, dtype)
    t = TensorInfo(name, shape, dtype, int(np.prod(shape)), 0, "f", 0, kind, role)
    assert is_weight_matrix(t) is matrix


@pytest.mark.slow
def test_screenshot_flags_select_the_root_and_the_scope(model, tmp_path):
    """``--select ""`` is the whole model; ``--scope`` picks its histogram: the two renders differ."""
    from tests.test_gui_screenshot import run_main

    path, _ = model
    shots = {}
    for scope in ("all", "roles"):
        out = tmp_path / f"{scope}.png"
        proc = run_main("--screenshot", str(out), "--select", "", "--scope", scope, "--tab", "distribution",
                        "--size", "900x600", str(path), tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stderr
        shots[scope] = QImage(str(out))
        assert shots[scope].width() == 900
    assert shots["all"] != shots["roles"]
    proc = run_main("--screenshot", str(tmp_path / "x.png"), "--scope", "everything", str(path), tmp_path=tmp_path)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr and not (tmp_path / "x.png").exists()
