"""The error boundary: a bug in a command is one `error: internal error ...` line, exit 1 and a log with the
traceback; refused input stays exit 2; a Lightning checkpoint with deeply nested hyper-parameters opens."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import main
from core.logs import describe_internal_error, log_dir, prune_incidents, write_incident

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "logs"
    monkeypatch.setenv("WEIGHTSCOPE_LOG_DIR", str(folder))
    return folder


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "m.safetensors"
    path.parent.mkdir()
    save_file({"layers.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4)}, str(path))
    return path


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    return lines[0]


def _log_path(line: str) -> Path:
    assert "(details in " in line
    return Path(line.rsplit("(details in ", 1)[1].rstrip(")"))


@pytest.mark.parametrize("command", ["info", "stats"])
def test_a_bug_is_one_line_exit_1_and_a_logged_traceback(command: str, model: Path, logs: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: object, **kwargs: object) -> str:
        raise ValueError("dictionary update sequence element #0 has length 1")

    target = "core.commands.info.info_text" if command == "info" else "core.commands.stats.stats_text"
    monkeypatch.setattr(target, broken)
    assert main.main([command, str(model), "--no-cache"] if command == "stats" else [command, str(model)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_error_line(captured.err)
    what = "the statistics of " if command == "stats" else ""
    assert line.startswith(f"error: internal error while summarising {what}"
                           f"{str(model)!r}: ValueError: dictionary update sequence element #0 has length 1; "
                           "please report it (details in ")
    log = _log_path(line)
    assert log.parent == logs
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in broken" in text
    assert "ValueError: dictionary update sequence element #0 has length 1" in text
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert sorted(p.name for p in model.parent.iterdir()) == ["m.safetensors"]  # nothing beside the user's file


def test_a_bug_while_reading_names_the_reading_stage(model: Path, logs: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import core.formats

    def broken(path: str) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(core.formats, "open_checkpoint", broken)
    assert main.main(["info", str(model)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"internal error while reading the metadata of {str(model)!r}: KeyError: 'boom'" in line
    assert "KeyError: 'boom'" in _log_path(line).read_text()


def test_refused_input_still_exits_2_without_a_log(tmp_path: Path, logs: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 64)
    assert main.main(["info", str(bad)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "internal error" not in line
    assert not logs.exists()


def test_a_bug_in_a_subprocess_shows_no_traceback(model: Path, logs: Path) -> None:
    code = ("import sys, core.commands.info as info\n"
            "def broken(*a, **k): raise RuntimeError('injected')\n"
            "info.info_text = broken\n"
            "import main\n"
            f"sys.exit(main.main(['info', {str(model)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WEIGHTSCOPE_LOG_DIR": str(logs)})
    assert proc.returncode == 1
    line = _one_error_line(proc.stderr)
    assert "RuntimeError: injected" in line
    assert "RuntimeError: injected" in _log_path(line).read_text()


def test_log_folder_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_LOG_DIR", str(tmp_path / "explicit"))
    assert log_dir() == tmp_path / "explicit"
    monkeypatch.delenv("WEIGHTSCOPE_LOG_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert log_dir() == tmp_path / "state" / "weightscope" / "logs"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert log_dir() == tmp_path / "home" / ".local" / "state" / "weightscope" / "logs"


def test_incidents_are_bounded(logs: Path) -> None:
    paths = []
    for i in range(7):
        try:
            raise OSError(f"failure {i}")
        except OSError as exc:
            paths.append(write_incident(exc, f"test {i}"))
    assert all(paths) and len(set(paths)) == 7
    prune_incidents(logs, keep=3)
    assert sorted(p.name for p in logs.iterdir()) == sorted(Path(p).name for p in paths[-3:])
    assert "failure 6" in Path(paths[-1]).read_text()


def test_unwritable_log_folder_still_gives_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("WEIGHTSCOPE_LOG_DIR", str(blocker / "logs"))
    exc = ValueError("bad\x1b[2J\nvalue")
    assert write_incident(exc, "testing") is None
    line = describe_internal_error(exc, "testing", None)
    assert line == "internal error while testing: ValueError: bad\\x1b[2J\\nvalue; please report it " \
                   "(no log could be written)"


# --------------------------------------------------------------------------- a Lightning checkpoint
def _nested(depth: int) -> object:
    """Config objects (argparse.Namespace, as Lightning's save_hyperparameters keeps them) inside dicts and lists."""
    value: object = {"lr": 0.1, "name": "leaf"}
    for i in range(depth):
        value = argparse.Namespace(inner=value, level=i, seq=[value, i]) if i % 2 else {"cfg": value, "k": [i, value]}
    return value


@pytest.fixture
def lightning_ckpt(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch")
    path = tmp_path / "epoch=3-step=100.ckpt"
    torch.save({
        "state_dict": {"model.layer.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
                       "model.layer.bias": torch.zeros(3)},
        "epoch": 3,
        "global_step": 100,
        "pytorch-lightning_version": "2.1.0",
        "hyper_parameters": {"model": _nested(58), "data": _nested(10), "optim": argparse.Namespace(lr=1e-3)},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}],
        "lr_schedulers": [{"last_epoch": 3, "nested": _nested(40)}],
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": None, "deep": _nested(30)}},
    }, str(path))
    return path


def test_lightning_checkpoint_opens_in_every_command(lightning_ckpt: Path, logs: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["info", str(lightning_ckpt)]) == 0
    text = capsys.readouterr().out
    assert "hyper_parameters" in text and "global_step" in text
    assert max(len(line) for line in text.splitlines()) < 400

    assert main.main(["info", str(lightning_ckpt), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    shapes = {t["name"].removeprefix("state_dict."): t["shape"] for t in doc["tensors"]}
    assert shapes["model.layer.weight"] == [3, 4] and shapes["model.layer.bias"] == [3]
    assert doc["metadata"]["epoch"] == 3 and doc["metadata"]["global_step"] == 100
    assert len(json.dumps(doc["metadata"])) < 2_000_000

    assert main.main(["stats", str(lightning_ckpt), "--no-cache", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    weight = next(t for t in stats["tensors"] if t["name"].endswith("model.layer.weight"))
    assert weight["mean"] == pytest.approx(5.5) and weight["max"] == 11.0
    assert not logs.exists()


def test_deeper_than_the_reader_walks_is_summarised_with_a_warning(tmp_path: Path, logs: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "deep.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": _nested(80)}, str(path))
    assert main.main(["info", str(path)]) == 0  # the hyper-parameters are summarised, the tensors listed
    assert "nested deeper than 64 levels are shown as a summary" in capsys.readouterr().out
    assert main.main(["info", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in doc["tensors"]] == ["w"]  # the state_dict wrapper is unwrapped
    assert any("nested deeper" in w for w in doc["warnings"])


def test_inert_summary_is_total_for_any_nesting() -> None:
    from core.formats.pytorch_format import inert
    from core.formats.pytorch_globals import Placeholder

    for depth in range(0, 90, 7):
        value: object = {"x": 1}
        for i in range(depth):
            kind = i % 3
            if kind == 0:
                value = Placeholder("argparse.Namespace", state={"inner": value, "s": "y" * 5000})
            elif kind == 1:
                value = [value, Placeholder("omegaconf.dictconfig.DictConfig", state=("not", "a", "dict"))]
            else:
                value = {"k": value, "p": Placeholder("argparse.Namespace", state={f"k{j}": j for j in range(300)})}
        summary = inert(value)
        assert len(json.dumps(summary)) < 3_000_000
