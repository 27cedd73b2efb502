"""Detection by structure: safetensors files whose header length looks like pickle opcodes open as safetensors,
and files that are also a tar, zip or pickle (polyglots), or whose name promises another format, are flagged."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save, save_file

from core.formats import open_checkpoint
from core.formats.detect import file_warnings, sniff

TOUCH = b"\x80\x02cos\nsystem\nVtouch /tmp/pwned\n\x85R."  # what another loader would run; never run here


def padded_safetensors(path: Path, header_len: int, tensors: dict[str, np.ndarray]) -> None:
    """save_file with metadata padded until the official library writes exactly ``header_len``."""
    for pad in range(header_len):
        data = save(tensors, metadata={"pad": "x" * pad})
        if struct.unpack("<Q", data[:8])[0] == header_len:
            save_file(tensors, str(path), metadata={"pad": "x" * pad})
            return
    raise AssertionError(f"no padding gives a header of {header_len} bytes")


@pytest.mark.parametrize("header_len", [640, 896, 0x6428])
def test_safetensors_whose_length_looks_like_pickle_opcodes(tmp_path: Path, header_len: int) -> None:
    path = tmp_path / "model.safetensors"
    weights = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    padded_safetensors(path, header_len, weights)
    head = path.read_bytes()[:3]
    assert head in (b"\x80\x02\x00", b"\x80\x03\x00", b"(d\x00")  # PROTO 2, PROTO 3, MARK DICT
    assert sniff(str(path)) == "safetensors"
    with open_checkpoint(str(path)) as ck:
        np.testing.assert_array_equal(ck.read_tensor("w"), load_file(str(path))["w"])
        assert ck.warnings == []


def test_opcode_like_length_with_long_space_padding(tmp_path: Path) -> None:
    """The format allows trailing spaces in the header: 0x6428 bytes, most of them padding, is still safetensors."""
    body = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}).encode()
    header = body + b" " * (0x6428 - len(body))
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + np.arange(3, dtype=np.float32).tobytes())
    assert path.read_bytes()[:3] == b"(d\x00"
    assert load_file(str(path))["w"].tolist() == [0.0, 1.0, 2.0]
    assert sniff(str(path)) == "safetensors"
    with open_checkpoint(str(path)) as ck:
        assert ck.read_tensor("w").tolist() == [0.0, 1.0, 2.0]


def test_sharded_model_with_such_a_shard(tmp_path: Path) -> None:
    first = {"a.weight": np.ones((2, 2), dtype=np.float16)}
    second = {"b.weight": np.arange(3, dtype=np.float32)}
    padded_safetensors(tmp_path / "model-00001-of-00002.safetensors", 640, first)
    save_file(second, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"metadata": {}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                                            "b.weight": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with open_checkpoint(str(tmp_path)) as ck:
        assert sorted(t.name for t in ck.tensors) == ["a.weight", "b.weight"]
        assert ck.element_count == 7


def test_a_real_pickle_still_opens_as_pytorch(tmp_path: Path) -> None:
    path = tmp_path / "old.bin"
    torch.save({"w": torch.ones(2)}, str(path), _use_new_zipfile_serialization=False)
    assert sniff(str(path)) == "pytorch-legacy"
    with open_checkpoint(str(path)) as ck:
        assert [t.name for t in ck.tensors] == ["w"] and ck.warnings == []


def evil_torch_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", TOUCH)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_safetensors_carrying_a_torch_zip_in_its_data_region(tmp_path: Path) -> None:
    blob = np.frombuffer(evil_torch_zip(), dtype=np.uint8)
    path = tmp_path / "model.safetensors"
    save_file({"w": np.ones(4, dtype=np.float32), "z": blob}, str(path))  # U8 sorts last: the zip ends the file
    assert sorted(load_file(str(path))) == ["w", "z"]  # a valid safetensors file for the official library ...
    assert "archive/data.pkl" in zipfile.ZipFile(path).namelist()  # ... and a zip for Python's zipfile (torch)
    with open_checkpoint(str(path)) as ck:
        assert sorted(t.name for t in ck.tensors) == ["w", "z"]
    warnings = file_warnings(str(path), "safetensors")
    assert warnings == ["the file is also a zip archive: torch.load reads it as a torch.save checkpoint "
                        "('archive/data.pkl', and it would run code: pickle calls os.system('touch /tmp/pwned'): "
                        "the file would run code if loaded with torch)"]
    renamed = tmp_path / "pytorch_model.bin"
    path.rename(renamed)
    warnings = file_warnings(str(renamed), "safetensors")
    assert warnings[0] == ("the name 'pytorch_model.bin' says PyTorch but the content is safetensors: tools that "
                           "choose their loader by name would hand it to torch.load")
    assert "also a zip archive" in warnings[1]


def tar_polyglot(path: Path) -> None:
    """A valid safetensors file that is also a tar archive whose 'storages' member is a pickle calling os.system.

    The first tar header is the safetensors header itself: its fields sit inside a JSON metadata string, the first
    member's data covers the rest of the JSON and the first tensor, and the real members live in a U8 tensor.
    """
    members = io.BytesIO()
    with tarfile.open(fileobj=members, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("sys_info", b"\x80\x02}."), ("storages", TOUCH)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    inner = members.getvalue()
    data_start = 1024  # 8 + header length: a tar block boundary
    fields = (b"0000644 " + b"0000000 " * 2 + b"%011o " % data_start + b"00000000000 " + b" " * 8 + b"0"
              + b" " * 100 + b"ustar " + b"  " + b" " * 32 * 2 + b"0000000 " * 2 + b" " * 155 + b" " * 12)
    opening = b'{"__metadata__":{"p":"'
    filler = b"a" * (100 - 8 - len(opening)) + fields
    assert 8 + len(opening) + len(filler) == 512
    rest = (b'"},"w":{"dtype":"F32","shape":[128],"data_offsets":[0,512]},'
            b'"t":{"dtype":"U8","shape":[%d],"data_offsets":[512,%d]}}' % (len(inner), 512 + len(inner)))
    header = opening + filler + rest
    header += b" " * (data_start - 8 - len(header))
    block = bytearray(struct.pack("<Q", len(header)) + header[:504])
    block[148:156] = b" " * 8
    block[148:156] = b"%07o " % sum(block)
    header = bytes(block[8:]) + header[504:]
    weights = np.arange(128, dtype=np.float32).tobytes()
    path.write_bytes(struct.pack("<Q", len(header)) + header + weights + inner)


def test_safetensors_that_is_also_a_legacy_torch_tar(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    tar_polyglot(path)
    assert load_file(str(path))["w"].tolist() == list(range(128))  # the official library reads it ...
    with tarfile.open(path) as tar:  # ... and so does tarfile, as torch's legacy loader would
        assert tar.getnames()[1:] == ["sys_info", "storages"]
        assert tar.extractfile("storages").read() == TOUCH
    with open_checkpoint(str(path)) as ck:
        assert [t.name for t in ck.tensors] == ["w", "t"]
    assert file_warnings(str(path), "safetensors") == [
        "the file is also a tar archive (\"ustar\" at offset 257): torch.load(weights_only=False) tries the legacy "
        "tar format first (its member 'storages', and it would run code: pickle calls os.system('touch /tmp/pwned'): "
        "the file would run code if loaded with torch)"]


def test_pytorch_content_named_safetensors_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.ones(2)}, str(path))
    with open_checkpoint(str(path)) as ck:
        assert ck.warnings == ["the name 'model.safetensors' says safetensors but the content is a PyTorch zip "
                               "(pickle inside): tools that choose their loader by name would hand it to a "
                               "safetensors loader"]


def test_ordinary_files_have_no_warnings(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"w": np.ones(3, dtype=np.float32)}, str(path))
    assert file_warnings(str(path), "safetensors") == []
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, str(pt))
    assert file_warnings(str(pt), "pytorch-zip") == []


def test_opening_a_polyglot_carries_its_warning_to_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import main

    path = tmp_path / "model.safetensors"
    tar_polyglot(path)
    with open_checkpoint(str(path)) as ck:
        assert ck.warnings == file_warnings(str(path), "safetensors")
        assert len(ck.warnings) == 1 and "also a tar archive" in ck.warnings[0]
    assert main.main(["info", str(path)]) == 0
    assert "also a tar archive" in capsys.readouterr().out
    assert main.main(["info", str(path), "--json"]) == 0
    assert any("also a tar archive" in w for w in json.loads(capsys.readouterr().out)["warnings"])


def test_a_polyglot_shard_is_named_in_the_warning(tmp_path: Path) -> None:
    tar_polyglot(tmp_path / "model-00001-of-00002.safetensors")
    save_file({"x": np.ones(3, dtype=np.float32)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = {"w": "model-00001-of-00002.safetensors", "t": "model-00001-of-00002.safetensors",
                  "x": "model-00002-of-00002.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open_checkpoint(str(tmp_path)) as ck:
        assert len(ck.warnings) == 1
        assert ck.warnings[0].startswith("'model-00001-of-00002.safetensors': the file is also a tar archive")


def test_a_v7_tar_header_without_magic_is_still_flagged(tmp_path: Path) -> None:
    """tarfile (and so torch's legacy loader) accepts a header with no "ustar" magic when its checksum matches."""
    members = io.BytesIO()
    with tarfile.open(fileobj=members, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("storages")
        info.size = len(TOUCH)
        tar.addfile(info, io.BytesIO(TOUCH))
    block = bytearray(members.getvalue())
    block[257:265] = bytes(8)  # no magic, no version: a v7 header
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block[:512])
    path = tmp_path / "archive.bin"
    path.write_bytes(bytes(block))
    with tarfile.open(path) as tar:
        assert tar.getnames() == ["storages"]
    warnings = file_warnings(str(path), "pickle")
    assert warnings[0].startswith("the file is also a tar archive (a valid tar header checksum)")
    assert "os.system('touch /tmp/pwned')" in warnings[0]


def test_no_corpus_file_is_taken_for_a_tar() -> None:
    from tests.corpus import CORPUS

    files = [p for p in (CORPUS / "good").rglob("*") if p.is_file() and p.suffix in (".safetensors", ".gguf", ".pt",
                                                                                     ".pth", ".bin", ".ckpt")]
    assert files
    for path in files:
        assert not any("tar archive" in w for w in file_warnings(str(path), sniff(str(path)))), path
