"""Hostile pickles the tests build by hand, one per technique: each payload would create a marker file if the
pickle were loaded by Python or torch; ours must refuse it, name the global, and the marker must never appear."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from core.errors import CheckpointError, MalformedFileError, UnsafeFileError
from core.formats import open_checkpoint
from core.formats.pickle_vm import ByteSource, run_pickle
from core.formats.pytorch_globals import Placeholder

REPO = Path(__file__).resolve().parents[1]


def s1(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    """technique -> (pickle bytes, the global the refusal must name)."""
    cmd = f"touch {marker}".encode()
    py = f"open({str(marker)!r}, 'w')".encode()
    return {
        "GLOBAL": (b"cos\nsystem\n(V" + cmd + b"\ntR.", "os.system"),
        "GLOBAL py2 name": (b"c__builtin__\nexec\n(V" + py + b"\ntR.", "builtins.exec"),
        "STACK_GLOBAL memoised": (
            b"\x80\x04" + s1("posix") + b"\x94" + s1("system") + b"\x94" + b"0" * 2 + b"h\x00h\x01\x93"
            + s1(cmd.decode()) + b"\x85R.", "posix.system"),
        "STACK_GLOBAL via GET": (b"\x80\x02Vsubprocess\np0\n0Vcall\np1\n0g0\ng1\n\x93((Vtouch\nV"
                                 + str(marker).encode() + b"\nltR.", "subprocess.call"),
        "INST": (b"(V" + cmd + b"\nios\nsystem\n.", "os.system"),
        "OBJ": (b"(cos\nsystem\nV" + cmd + b"\no.", "os.system"),
        "NEWOBJ": (b"\x80\x02csubprocess\nPopen\n(](Vtouch\nV" + str(marker).encode() + b"\net\x81.",
                   "subprocess.Popen"),
        "NEWOBJ_EX": (b"\x80\x04" + s1("subprocess") + s1("Popen") + b"\x93(](" + s1("touch") + s1(str(marker))
                      + b"et}\x92.", "subprocess.Popen"),
        "BUILD setstate": (
            b"\x80\x02cargparse\nNamespace\n)\x81}V__setstate__\ncbuiltins\nexec\nsb(V" + py + b"\ntR.",
            "builtins.exec"),
        "REDUCE via getattr chain": (
            b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V" + cmd + b"\ntR.", "builtins.getattr"),
        "attribute walk off an allowed global": (
            b"\x80\x04" + s1("torch._utils") + s1("_rebuild_tensor_v2.__globals__") + b"\x93.",
            "torch._utils._rebuild_tensor_v2.__globals__"),
        "functools.partial": (b"cfunctools\npartial\n(cos\nsystem\nV" + cmd + b"\ntR)R.", "functools.partial"),
        "operator.methodcaller": (b"coperator\nmethodcaller\n(Vsystem\nV" + cmd + b"\ntR.", "operator.methodcaller"),
        "pkgutil.resolve_name": (b"cpkgutil\nresolve_name\n(Vos:system\ntR(V" + cmd + b"\ntR.", "pkgutil.resolve_name"),
        "runpy": (b"crunpy\n_run_code\n(V" + py + b"\n}tR.", "runpy._run_code"),
        "importlib": (b"cimportlib\nimport_module\n(Vos\ntR.", "importlib.import_module"),
        "torch.load": (b"ctorch\nload\n(V/dev/null\ntR.", "torch.load"),
        "code object": (b"\x80\x04" + s1("types") + s1("CodeType") + b"\x93).", "types.CodeType"),
        "webbrowser": (b"cwebbrowser\nopen\n(Vfile:///\ntR.", "webbrowser.open"),
        "shutil": (b"cshutil\nrmtree\n(V/nonexistent\ntR.", "shutil.rmtree"),
        "unknown class": (b"cmypackage.evil\nGadget\n)R.", "mypackage.evil.Gadget"),
    }


def _check_refused(path: Path, global_name: str, marker: Path) -> None:
    with pytest.raises(UnsafeFileError) as info:
        open_checkpoint(str(path))
    assert global_name in str(info.value)
    assert "run code if loaded with torch" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("technique", list(payloads(Path("/m"))))
def test_each_technique_is_refused_naming_the_global(tmp_path: Path, technique: str) -> None:
    marker = tmp_path / "MARKER"
    data, global_name = payloads(marker)[technique]
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    _check_refused(path, global_name, marker)


@pytest.mark.parametrize("technique", ["GLOBAL", "STACK_GLOBAL memoised", "NEWOBJ_EX", "BUILD setstate"])
def test_each_technique_is_refused_inside_a_torch_zip(tmp_path: Path, technique: str) -> None:
    marker = tmp_path / "MARKER"
    data, global_name = payloads(marker)[technique]
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data)
        zf.writestr("archive/version", "3\n")
    _check_refused(path, global_name, marker)


class _System:
    """Pickles as a call of os.system, exactly as an attacker's class would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        import os

        return os.system, (self.command,)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_real_state_dict_with_one_malicious_entry(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "MARKER"
    state = OrderedDict(weight=torch.ones(3, 3), bias=torch.zeros(3))
    state["zzz_evil"] = _System(f"touch {marker}")
    path = tmp_path / "model.bin"
    torch.save(state, str(path), _use_new_zipfile_serialization=not legacy)
    _check_refused(path, ".system", marker)


def test_legacy_magic_number_computed_by_eval(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, str(good), _use_new_zipfile_serialization=False)
    data = good.read_bytes()
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    assert data.startswith(magic)
    expr = f"(open({str(marker)!r}, 'w'), 0x1950A86A20F9469CFC6C)[1]".encode()
    evil = b"\x80\x02c__builtin__\neval\nX" + len(expr).to_bytes(4, "little") + expr + b"\x85R."
    path = tmp_path / "bypass.pt"
    path.write_bytes(evil + data[len(magic):])
    _check_refused(path, "builtins.eval", marker)


def test_legacy_magic_number_built_by_an_allowed_call_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, str(good), _use_new_zipfile_serialization=False)
    data = good.read_bytes()
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    # the magic number built by an allowed (inert) call instead of a literal LONG1
    literal = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
    assert literal in magic
    computed = b"\x80\x02ctorch\nSize\n(" + literal + b"\x85tR."
    (tmp_path / "computed.pt").write_bytes(computed + data[len(magic):])
    with pytest.raises(CheckpointError, match="plain Python pickle"):
        open_checkpoint(str(tmp_path / "computed.pt"))


def test_extension_registry_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ext.pkl"
    path.write_bytes(b"\x80\x02\x82\x01)R.")
    with pytest.raises(UnsafeFileError, match="extension registry"):
        open_checkpoint(str(path))


def test_allowed_data_classes_build_inert_records_and_call_nothing() -> None:
    # argparse.Namespace with a __setstate__-looking state: BUILD only stores the state on a placeholder.
    data = b"\x80\x02cargparse\nNamespace\n)\x81}(V__setstate__\nVx\nVlr\nG?\xb9\x99\x99\x99\x99\x99\x9aub."
    value, vm = run_pickle(ByteSource.from_bytes(data))
    assert isinstance(value, Placeholder) and value.cls == "argparse.Namespace"
    assert value.state == {"__setstate__": "x", "lr": 0.1}
    assert vm.globals_seen == ["argparse.Namespace"]


@pytest.mark.parametrize(("data", "match"), [
    (b"(" * 20_000, "MARK"),
    (b"\x80\x02X\xff\xff\xff\x7fabc", "truncated"),
    (b"\x80\x02\x8b\x00\x00\x00\x10", "integer of"),
    (b"\x80\x02\x8e" + (1 << 62).to_bytes(8, "little"), "truncated"),
    (b"\x80\x02h\x05.", "memo entry 5"),
    (b"\x80\x02}Na.", "APPEND to a dict"),
    (b"\x80\x02}]]s.", "unhashable"),
    (b"\x80\x09N.", "protocol 9"),
    (b"\x80\x02N", "without a STOP"),
    (b"\x80\x05\x97.", "out-of-band"),
    (b"I" + b"9" * 70_000 + b"\n.", "no end of line"),
    (b"\x80\x02\xff.", "unknown opcode"),
    (b"\x80\x02})" + b"\x85" * 40 + b"Ns.", "large dict key"),
])
def test_interpreter_bounds(data: bytes, match: str) -> None:
    with pytest.raises(MalformedFileError, match=match):
        run_pickle(ByteSource.from_bytes(data))


def test_self_referencing_structures_do_not_hang(tmp_path: Path) -> None:
    # l = [l, l]; d = {"a": d}: cycles through the memo, then a real tensor so the file is a checkpoint.
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    zf = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    names = zf.namelist()
    pkl = zf.read(next(n for n in names if n.endswith("data.pkl")))
    assert pkl.endswith(b".")
    cyclic = pkl[:-1] + b"(Vloop\n]q\xf0h\xf0ah\xf0aVd\n}q\xf1Va\nh\xf1su."
    path = tmp_path / "cyclic.pt"
    with zipfile.ZipFile(path, "w") as out:
        for n in names:
            out.writestr(n, cyclic if n.endswith("data.pkl") else zf.read(n))
    with open_checkpoint(str(path)) as ck:
        assert [t.name for t in ck.tensors] == ["w"]
        shown = json.dumps(ck.metadata)
        assert len(shown) < 10_000 and "<a list of 2 items>" in shown and "<a dict of 1 entries>" in shown


def test_cli_refuses_a_hostile_pickle_with_one_error_line(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.bin"
    path.write_bytes(payloads(marker)["STACK_GLOBAL memoised"][0])
    proc = subprocess.run([sys.executable, "main.py", "info", str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "posix.system" in lines[0]
    assert proc.stdout == "" and not marker.exists()
