"""Objects a pickle only reconstructs (a training config dataclass) open as inert placeholders with a warning;
anything the pickle would call is refused, naming the call and its arguments."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from core.errors import UnsafeFileError
from core.formats import open_checkpoint
from core.formats.pickle_vm import ByteSource, run_pickle

REPO = Path(__file__).resolve().parents[1]
WARNING = ("holds objects of `__main__.TrainConfig` (not created); torch.load(weights_only=True) refuses this file")

# A training script's own classes live in __main__: run it as one, saving with each pickle protocol torch uses.
SCRIPT = textwrap.dedent("""
    import collections, dataclasses, sys, torch

    @dataclasses.dataclass
    class TrainConfig:
        lr: float
        name: str
        layers: list

    Point = collections.namedtuple("Point", "x y")
    torch.manual_seed(0)
    state = {"fc.weight": torch.randn(3, 4), "fc.bias": torch.randn(3)}
    obj = {"model": state, "config": TrainConfig(0.001, "run \\x1b[31m7", [1, 2]), "point": Point(3, 4)}
    out = sys.argv[1]
    torch.save(obj, out + "/zip.pt")
    torch.save(obj, out + "/legacy_p2.pt", _use_new_zipfile_serialization=False)
    torch.save(obj, out + "/legacy_p1.pt", _use_new_zipfile_serialization=False, pickle_protocol=1)
    torch.save(obj["model"], out + "/plain.pt")
""")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("placeholders")
    subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], check=True, timeout=120)
    return folder


@pytest.mark.parametrize("name", ["zip.pt", "legacy_p2.pt", "legacy_p1.pt"])
def test_config_dataclass_opens_as_an_inert_placeholder(saved: Path, name: str) -> None:
    truth = torch.load(str(saved / "plain.pt"), weights_only=True)  # our own plain state dict: safe to load
    with open_checkpoint(str(saved / name)) as ck:
        assert sorted(t.name for t in ck.tensors) == ["fc.bias", "fc.weight"]
        for t in ck.tensors:
            assert ck.read_tensor(t.name).tolist() == truth[t.name].tolist()
        config = ck.metadata["config"]
        assert config["__class__"] == "__main__.TrainConfig"
        assert config["lr"] == 0.001 and config["name"] == "run \x1b[31m7" and config["layers"] == [1, 2]
        point = ck.metadata["point"]
        assert point["__class__"] == "__main__.Point" and point["args"] == [3, 4]
        assert ck.warnings[0].startswith("holds objects of `__main__.TrainConfig`, `__main__.Point` (not created)")
        assert "2 object types reconstructed as an inert placeholder" in ck.safety
        assert ck.safety.startswith("data only: read without running code")


def test_plain_state_dict_has_no_warning(saved: Path) -> None:
    with open_checkpoint(str(saved / "plain.pt")) as ck:
        assert ck.warnings == [] and ck.safety == "data only: read without running code"


def _zip_with_pickle(tmp_path: Path, pkl: bytes, name: str = "x.pt") -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/version", "3\n")
    return path


def test_single_placeholder_warning_wording(tmp_path: Path) -> None:
    pkl = b"\x80\x02}(Vcfg\nc__main__\nTrainConfig\n)\x81}Vlr\nG?\xb9\x99\x99\x99\x99\x99\x9asbu."
    with open_checkpoint(str(_zip_with_pickle(tmp_path, pkl))) as ck:
        assert ck.warnings == [WARNING]
        assert ck.safety == "data only: read without running code; 1 object type reconstructed as an inert placeholder"
        assert ck.metadata["cfg"] == {"__class__": "__main__.TrainConfig", "lr": 0.1}


def _refusal(tmp_path: Path, pkl: bytes) -> UnsafeFileError:
    with pytest.raises(UnsafeFileError) as info:
        open_checkpoint(str(_zip_with_pickle(tmp_path, pkl)))
    return info.value


def test_a_call_is_refused_naming_it_and_its_arguments(tmp_path: Path) -> None:
    err = _refusal(tmp_path, b"\x80\x02}(Vx\ncos\nsystem\nVecho pwned\n\x85Ru.")
    assert err.reason.endswith("pickle calls os.system('echo pwned'): the file would run code if loaded with torch")
    assert (err.call, err.arguments) == ("os.system", "'echo pwned'")


def test_hostile_arguments_are_rendered_inert_and_bounded(tmp_path: Path) -> None:
    arg = "\x1b]0;owned\x07\n" + "A" * 5000
    raw = arg.encode()
    err = _refusal(tmp_path, b"\x80\x02cos\nsystem\nX" + len(raw).to_bytes(4, "little") + raw + b"\x85R.")
    assert "\x1b" not in str(err) and "\n" not in str(err) and "\\x1b]0;owned\\x07\\n" in err.arguments
    assert len(str(err)) < 600


def test_nested_calls_are_spelled_out(tmp_path: Path) -> None:
    pkl = b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(Vid\ntR."
    err = _refusal(tmp_path, pkl)
    assert err.call == "builtins.getattr(builtins.__import__('os'), 'system')" and err.arguments == "'id'"


@pytest.mark.parametrize(("pkl", "named"), [
    (b"\x80\x02csubprocess\nPopen\n(Vid\ntb\x81.", "subprocess.Popen"),  # NEWOBJ of a dangerous class
    (b"\x80\x02cfunctools\npartial\n)\x81.", "functools.partial"),
    (b"\x80\x02czipfile\nZipFile\n)\x81.", "zipfile.ZipFile"),  # standard library: never a placeholder
    (b"\x80\x02cbuiltins\nmemoryview\n)\x81.", "builtins.memoryview"),
    (b"\x80\x02ctorch.hub\nload\n)\x81.", "torch.hub.load"),
    (b"\x80\x02cnumpy.random\nRandomState\n)\x81.", "numpy.random.RandomState"),
    (b"\x80\x02c__main__\nTrainConfig\n(K\x01tR.", "__main__.TrainConfig"),  # REDUCE calls __init__
    (b"\x80\x02(c__main__\nTrainConfig\no.", "__main__.TrainConfig"),  # OBJ
    (b"\x80\x02(i__main__\nTrainConfig\n.", "__main__.TrainConfig"),  # INST
    (b"\x80\x02c__main__\nTrainConfig\n.", "__main__.TrainConfig"),  # imported, never only reconstructed
    (b"\x80\x02c__main__\n__reduce__\n)\x81.", "__main__.__reduce__"),
    (b"\x80\x02ccopyreg\n_reconstructor\n(c__main__\nT\ncbuiltins\nbytearray\nVx\ntR.", "copyreg._reconstructor"),
])
def test_what_would_run_code_is_refused(tmp_path: Path, pkl: bytes, named: str) -> None:
    err = _refusal(tmp_path, pkl)
    assert named in str(err) and "run code if loaded with torch" in str(err)
    assert err.call


def test_refusal_survives_a_broken_stream_after_the_call(tmp_path: Path) -> None:
    err = _refusal(tmp_path, b"\x80\x02cos\nsystem\nVid\n\x85R\xff")
    assert err.call == "os.system"


def test_copyreg_newobj_by_reduce_is_a_placeholder() -> None:
    value, vm = run_pickle(ByteSource.from_bytes(b"\x80\x02ccopyreg\n__newobj__\nc__main__\nC\nK\x05\x86R."))
    assert value.cls == "__main__.C" and value.args == (5,) and vm.placeholder_classes == ["__main__.C"]


def test_cli_shows_placeholder_warning_and_refuses_calls_in_one_line(saved: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "main.py", "info", str(saved / "zip.pt")], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "__main__.TrainConfig" in proc.stdout and "\x1b" not in proc.stdout
    buf = io.BytesIO(b"\x80\x02cos\nsystem\nVecho pwned\n\x85R.")
    evil = tmp_path / "evil.bin"
    evil.write_bytes(buf.getvalue())
    proc = subprocess.run([sys.executable, "main.py", "info", str(evil)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: {evil}: pickle calls os.system('echo pwned'): the file would run code if loaded with torch"]
