"""PyTorch files the tests write with torch.save (zip and legacy): names, shapes, dtypes, counts and exact values,
and a refusal for every rule of the zip container, the storages and the legacy layout."""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import core.io
from core.errors import CheckpointError, MalformedFileError, UnsafeFileError, UnsupportedFormatError
from core.formats import open_checkpoint
from core.formats.pytorch_zip import read_members

DTYPES = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
    torch.complex64: "C64", torch.complex128: "C128", torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}


def save(obj: object, path: Path, legacy: bool = False) -> str:
    torch.save(obj, str(path), _use_new_zipfile_serialization=not legacy)
    return str(path)


def sample(dtype: torch.dtype, shape: tuple[int, ...] = (3, 4), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dtype.is_complex:
        return torch.randn(shape, generator=g, dtype=dtype)
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * 10).to(dtype)
    info = torch.iinfo(dtype)
    low, high = max(info.min, -1000), min(info.max, 1000)
    return torch.randint(low, high, shape, generator=g, dtype=torch.int64).to(dtype)


def expected(t: torch.Tensor) -> np.ndarray:
    """What a person would print: BF16 and float8 widened to float32, as core.checkpoint.read does."""
    if t.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
        return t.float().numpy()
    return t.numpy()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("dtype", list(DTYPES), ids=[str(d).removeprefix("torch.") for d in DTYPES])
def test_every_dtype_reads_back_exactly(tmp_path: Path, dtype: torch.dtype, legacy: bool) -> None:
    tensors = {"layer.weight": sample(dtype, (3, 5)), "layer.bias": sample(dtype, (5,), seed=1),
               "scalar": sample(dtype, (), seed=2), "empty": sample(dtype, (0, 4))}
    path = save(tensors, tmp_path / "m.pt", legacy)
    with open_checkpoint(path) as ck:
        assert ck.format == "pytorch"
        assert [t.name for t in ck.tensors] == list(tensors)
        for name, original in tensors.items():
            info = ck.tensor(name)
            assert info.dtype == DTYPES[dtype]
            assert info.shape == tuple(original.shape)
            assert info.elements == original.numel()
            assert info.nbytes == original.numel() * original.element_size()
            np.testing.assert_array_equal(ck.read_tensor(name), expected(original))
        assert ck.element_count == sum(t.numel() for t in tensors.values())
        assert ck.metadata["serialization"].startswith("legacy" if legacy else "zip")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_shared_storages_and_strided_views(tmp_path: Path, legacy: bool) -> None:
    base = torch.arange(60, dtype=torch.float32)
    grid = base[:20].view(4, 5)
    tensors = {
        "base": base,
        "slice": base[7:19],  # offset into a shared storage
        "grid": grid,
        "transposed": grid.t(),  # strided
        "column": grid[:, 2],  # strided with an offset
        "stepped": base[3:50:7],
        "expanded": torch.arange(3.0).expand(4, 3),  # stride 0
        "alias": base,  # the same tensor listed twice
        "channels_last": torch.arange(48.0).view(2, 3, 2, 4).contiguous(memory_format=torch.channels_last),
    }
    path = save(tensors, tmp_path / "views.pt", legacy)
    with open_checkpoint(path) as ck:
        assert [t.name for t in ck.tensors] == list(tensors)
        assert len(ck.tensors) == 9
        assert ck.element_count == sum(t.numel() for t in tensors.values())
        for name, original in tensors.items():
            assert ck.tensor(name).shape == tuple(original.shape)
            np.testing.assert_array_equal(ck.read_tensor(name), original.numpy())
        assert ck.tensor("transposed").strides == (1, 5)
        assert ck.tensor("base").strides is None
        chunks = list(ck.iter_chunks("transposed", chunk_bytes=16))
        np.testing.assert_array_equal(np.concatenate(chunks), tensors["transposed"].numpy().reshape(-1))


class _AdamState:
    """An optimizer state dict shaped exactly like torch.optim.Adam's (importing torch.optim costs seconds)."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.state = {i: {"step": torch.tensor(1.0), "exp_avg": torch.randn(p.shape), "exp_avg_sq": torch.rand(p.shape)}
                      for i, p in enumerate(params)}

    def state_dict(self) -> dict:
        return {"state": self.state, "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08,
                                                        "weight_decay": 0, "params": list(self.state)}]}


def _trained_net() -> tuple[torch.nn.Module, _AdamState]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(OrderedDict(fc=torch.nn.Linear(4, 3), bn=torch.nn.BatchNorm1d(3)))
    net(torch.randn(5, 4))
    return net, _AdamState(list(net.parameters()))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_nested_checkpoint_lists_every_tensor_under_its_key_path(tmp_path: Path, legacy: bool) -> None:
    net, opt = _trained_net()
    path = save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 7, "note": "run-3"},
                tmp_path / "ckpt.pt", legacy)
    with open_checkpoint(path) as ck:
        names = [t.name for t in ck.tensors]
        model_names = [f"model.{k}" for k in net.state_dict()]
        assert names[: len(model_names)] == model_names
        adam = [f"optimizer.state.{i}.{k}" for i in range(4) for k in ("step", "exp_avg", "exp_avg_sq")]
        assert names[len(model_names):] == adam
        np.testing.assert_array_equal(ck.read_tensor("optimizer.state.0.exp_avg"),
                                      opt.state_dict()["state"][0]["exp_avg"].numpy())
        np.testing.assert_array_equal(ck.read_tensor("model.fc.weight"), net.fc.weight.detach().numpy())
        assert ck.metadata["epoch"] == 7 and ck.metadata["note"] == "run-3"
        assert ck.metadata["optimizer.param_groups"][0]["params"] == [0, 1, 2, 3]
        assert ck.metadata["optimizer.param_groups"][0]["lr"] == pytest.approx(0.001)
        assert ck.tensor("model.bn.num_batches_tracked").kind == "buffer"


def test_a_single_state_dict_wrapper_is_dropped_from_names(tmp_path: Path) -> None:
    net, _ = _trained_net()
    path = save({"state_dict": net.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    with open_checkpoint(path) as ck:
        assert [t.name for t in ck.tensors] == list(net.state_dict())
        assert ck.metadata["state_dict_key"] == "state_dict"
        assert ck.metadata["epoch"] == 3
        assert ck.tensor("fc.weight").kind == "weight" and ck.tensor("fc.bias").kind == "bias"
        assert ck.tensor("bn.running_mean").kind == "buffer"


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_lightning_like_checkpoint_with_inert_placeholders(tmp_path: Path, legacy: bool) -> None:
    net, opt = _trained_net()
    checkpoint = {
        "epoch": 4, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": OrderedDict((f"model.{k}", v) for k, v in net.state_dict().items()),
        "optimizer_states": [opt.state_dict()], "lr_schedulers": [],
        "hparams_name": "hparams",
        "hyper_parameters": argparse.Namespace(lr=0.01, hidden=[64, 32], name="mnist", dropout=None),
        "callbacks": {"ModelCheckpoint": {"best_model_score": np.float64(0.25), "best_k": np.int64(3),
                                          "dirpath": Path("/tmp/runs")}},
        "numpy_array": np.arange(6, dtype=np.int32).reshape(2, 3),
        "dtype": torch.bfloat16, "size": torch.Size([2, 3]), "device": torch.device("cpu"),
        "tags": {"a", "b"}, "blob": b"\x00\x01", "z": 1 + 2j,
    }
    path = save(checkpoint, tmp_path / "epoch=4.ckpt", legacy)
    with open_checkpoint(path) as ck:
        assert len(ck.tensors) == len(net.state_dict()) + 12
        assert ck.tensors[0].name == "state_dict.model.fc.weight"
        meta = ck.metadata
        assert meta["hyper_parameters"] == {"__class__": "argparse.Namespace", "lr": 0.01, "hidden": [64, 32],
                                            "name": "mnist", "dropout": None}
        assert meta["callbacks"]["ModelCheckpoint"]["best_model_score"] == 0.25
        assert meta["callbacks"]["ModelCheckpoint"]["best_k"] == 3
        assert meta["callbacks"]["ModelCheckpoint"]["dirpath"]["__class__"].startswith("pathlib.")
        assert meta["numpy_array"] == {"__class__": "numpy.ndarray", "shape": [2, 3]}
        assert meta["dtype"] == "<torch.bfloat16>" and meta["size"] == [2, 3]
        assert sorted(meta["tags"]) == ["a", "b"] and meta["blob"] == "<2 bytes>" and meta["z"] == "(1+2j)"
        json.dumps(meta)  # inert, JSON-ready values only


def test_parameters_and_top_level_tensor_and_list(tmp_path: Path) -> None:
    p = torch.nn.Parameter(torch.randn(2, 3))
    with open_checkpoint(save(p, tmp_path / "p.pt")) as ck:
        assert [t.name for t in ck.tensors] == ["tensor"]
        np.testing.assert_array_equal(ck.read_tensor("tensor"), p.detach().numpy())
    with open_checkpoint(save([torch.ones(2), (torch.zeros(3), 5)], tmp_path / "l.pt")) as ck:
        assert [t.name for t in ck.tensors] == ["0", "1.0"]
        assert ck.metadata["1.1"] == 5


def test_sharded_bin_index_opens_as_one_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    shard1 = {"model.embed_tokens.weight": torch.randn(10, 4), "model.layers.0.mlp.up_proj.weight": torch.randn(8, 4)}
    shard2 = {"model.layers.0.mlp.down_proj.weight": torch.randn(4, 8), "lm_head.weight": torch.randn(10, 4)}
    save(shard1, tmp_path / "pytorch_model-00001-of-00002.bin")
    save(shard2, tmp_path / "pytorch_model-00002-of-00002.bin", legacy=True)
    weight_map = {k: "pytorch_model-00001-of-00002.bin" for k in shard1}
    weight_map |= {k: "pytorch_model-00002-of-00002.bin" for k in shard2}
    index = tmp_path / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}))
    for target in (index, tmp_path):
        with open_checkpoint(str(target)) as ck:
            assert len(ck.files) == 2
            assert [t.name for t in ck.tensors] == list(shard1) + list(shard2)
            assert ck.element_count == 40 + 32 + 32 + 40
            assert ck.tensor("model.embed_tokens.weight").kind == "embedding"
            for name, t in (shard1 | shard2).items():
                np.testing.assert_array_equal(ck.read_tensor(name), t.numpy())
    weight_map["missing.weight"] = "pytorch_model-00002-of-00002.bin"
    index.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(MalformedFileError, match="not in their shards"):
        open_checkpoint(str(index))


def test_duplicate_tensor_names_across_shards_are_refused(tmp_path: Path) -> None:
    save({"w": torch.ones(2)}, tmp_path / "a.bin")
    save({"w": torch.ones(2)}, tmp_path / "b.bin")
    index = tmp_path / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "a.bin", "x": "b.bin"}}))
    with pytest.raises(MalformedFileError, match="two shards"):
        open_checkpoint(str(index))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_opening_reads_headers_only(tmp_path: Path, legacy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save({"big": torch.zeros(2_000_000), "small": torch.ones(3)}, tmp_path / "big.pt", legacy)
    read = []
    original = core.io.FileReader.read_into

    def counting(self: core.io.FileReader, offset: int, out: object) -> None:
        read.append(memoryview(out).nbytes)
        original(self, offset, out)

    monkeypatch.setattr(core.io.FileReader, "read_into", counting)
    with open_checkpoint(path) as ck:
        assert ck.element_count == 2_000_003
    assert sum(read) < 200_000 < os.path.getsize(path) // 40


# --- malformed zip archives: hand-built so that every field is ours to break ---------------------------------------
class FakeStorage:
    def __init__(self, key: str, numel: int, storage_type: type = torch.FloatStorage) -> None:
        self.key, self.numel, self.storage_type = key, numel, storage_type


class FakeTensor:
    """Pickles exactly like a tensor (``_rebuild_tensor_v2`` on a persistent storage), with any fields we like."""

    def __init__(self, storage: FakeStorage, offset: object, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self) -> tuple:
        return torch._utils._rebuild_tensor_v2, self.args


def state_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.persistent_id = lambda o: (  # type: ignore[method-assign]
        ("storage", o.storage_type, o.key, "cpu", o.numel) if isinstance(o, FakeStorage) else None)
    pickler.dump(obj)
    return buf.getvalue()


def local_header(name: bytes, data: bytes, flags: int = 0, method: int = 0, crc: int | None = None) -> bytes:
    crc = zlib.crc32(data) if crc is None else crc
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0, crc, len(data), len(data),
                       len(name), 0) + name


def central_entry(name: bytes, data: bytes, offset: int, flags: int = 0, method: int = 0) -> bytes:
    return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, method, 0, 0, zlib.crc32(data), len(data),
                       len(data), len(name), 0, 0, 0, 0, 0, offset) + name


def build_zip(members: list[tuple[str, bytes]], *, flags: dict[str, int] | None = None,
              local_names: dict[str, str] | None = None, extra_central: list[tuple[str, bytes, int]] = ()) -> bytes:
    """A stored zip with exactly these members; knobs break one rule at a time."""
    flags = flags or {}
    local_names = local_names or {}
    out = b""
    central = b""
    for name, data in members:
        offset = len(out)
        out += local_header(local_names.get(name, name).encode(), data, flags.get(name, 0)) + data
        central += central_entry(name.encode(), data, offset, flags.get(name, 0))
    for name, data, offset in extra_central:
        central += central_entry(name.encode(), data, offset)
    count = len(members) + len(extra_central)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(out), 0)
    return out + central + eocd


def torch_zip(tensors: dict[str, FakeTensor], storages: dict[str, bytes], **knobs: object) -> bytes:
    members = [("archive/data.pkl", state_pickle(OrderedDict(tensors))), ("archive/byteorder", b"little")]
    members += [(f"archive/data/{k}", v) for k, v in storages.items()]
    members.append(("archive/version", b"3\n"))
    return build_zip(members, **knobs)  # type: ignore[arg-type]


def write(tmp_path: Path, data: bytes, name: str = "m.pt") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


SIX_FLOATS = np.arange(6, dtype=np.float32).tobytes()


def test_hand_built_zip_opens_so_the_variants_below_test_one_rule_each(tmp_path: Path) -> None:
    data = torch_zip({"w": FakeTensor(FakeStorage("0", 6), 0, (2, 3), (3, 1)),
                      "t": FakeTensor(FakeStorage("0", 6), 1, (2, 2), (1, 3))}, {"0": SIX_FLOATS})
    with open_checkpoint(write(tmp_path, data)) as ck:
        np.testing.assert_array_equal(ck.read_tensor("w"), np.arange(6, dtype=np.float32).reshape(2, 3))
        np.testing.assert_array_equal(ck.read_tensor("t"), np.array([[1, 4], [2, 5]], dtype=np.float32))


@pytest.mark.parametrize(("tensor", "storages", "match"), [
    (FakeTensor(FakeStorage("0", 7), 0, (7,), (1,)), {"0": SIX_FLOATS}, "claims 7 elements"),
    (FakeTensor(FakeStorage("0", 6), 1, (2, 3), (3, 1)), {"0": SIX_FLOATS}, "past the end of its storage"),
    (FakeTensor(FakeStorage("0", 6), 0, (3, 3), (1, 2)), {"0": SIX_FLOATS}, "past the end of its storage"),
    (FakeTensor(FakeStorage("0", 6), -1, (2,), (1,)), {"0": SIX_FLOATS}, "storage offset"),
    (FakeTensor(FakeStorage("0", 6), 0, (2, 3), (-3, 1)), {"0": SIX_FLOATS}, "non-negative"),
    (FakeTensor(FakeStorage("0", 6), 0, (2, -3), (3, 1)), {"0": SIX_FLOATS}, "non-negative"),
    (FakeTensor(FakeStorage("0", 6), 0, (2, True), (3, 1)), {"0": SIX_FLOATS}, "non-negative"),
    (FakeTensor(FakeStorage("0", 6), 0.5, (2,), (1,)), {"0": SIX_FLOATS}, "storage offset"),
    (FakeTensor(FakeStorage("0", 6), 0, (2, 3), (1,)), {"0": SIX_FLOATS}, "2 sizes but 1 strides"),
    (FakeTensor(FakeStorage("9", 6), 0, (6,), (1,)), {"0": SIX_FLOATS}, "no record data/9"),
    (FakeTensor(FakeStorage("0", -1), 0, (6,), (1,)), {"0": SIX_FLOATS}, "invalid element count"),
    (FakeTensor(FakeStorage("0", 3, torch.DoubleStorage), 0, (6,), (1,)), {"0": SIX_FLOATS}, "past the end"),
    (FakeTensor(FakeStorage("0", 6), 0, (1, 6), (1 << 70, 1)), {"0": SIX_FLOATS}, "below 2"),
    (FakeTensor(FakeStorage("0", 6), 0, (1 << 40, 1 << 20), (0, 0)), {"0": SIX_FLOATS}, "implausibly often"),
])
def test_bad_storages_and_views_are_refused(tmp_path: Path, tensor: FakeTensor, storages: dict, match: str) -> None:
    with pytest.raises(MalformedFileError, match=match):
        open_checkpoint(write(tmp_path, torch_zip({"w": tensor}, storages)))


def _good_members() -> list[tuple[str, bytes]]:
    pkl = state_pickle(OrderedDict(w=FakeTensor(FakeStorage("0", 6), 0, (6,), (1,))))
    return [("archive/data.pkl", pkl), ("archive/data/0", SIX_FLOATS), ("archive/version", b"3\n")]


def test_compressed_member_and_zip_bomb_are_refused(tmp_path: Path) -> None:
    for name, data in (("archive/extra", SIX_FLOATS), ("archive/data/1", bytes(64 << 20))):
        path = tmp_path / "bomb.pt"
        with zipfile.ZipFile(path, "w") as zf:
            for member, content in _good_members():
                zf.writestr(member, content, compress_type=zipfile.ZIP_STORED)
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
        assert path.stat().st_size < 1 << 20
        with pytest.raises(MalformedFileError, match=r"compressed.*zip bomb"):
            open_checkpoint(str(path))


def test_encrypted_member_is_refused(tmp_path: Path) -> None:
    data = build_zip(_good_members(), flags={"archive/data/0": 1})
    with pytest.raises(MalformedFileError, match="encrypted"):
        open_checkpoint(write(tmp_path, data))


def test_overlapping_members_are_refused(tmp_path: Path) -> None:
    members = _good_members()
    inner = local_header(b"archive/data/1", SIX_FLOATS) + SIX_FLOATS
    members[1] = ("archive/data/0", inner)  # data/1's record hides inside data/0's data
    offset_of_data0 = sum(30 + len(n) + len(d) for n, d in members[:1]) + 30 + len("archive/data/0")
    data = build_zip(members, extra_central=[("archive/data/1", SIX_FLOATS, offset_of_data0)])
    with pytest.raises(MalformedFileError, match="overlap"):
        open_checkpoint(write(tmp_path, data))


def test_local_and_central_headers_must_agree(tmp_path: Path) -> None:
    data = build_zip(_good_members(), local_names={"archive/data.pkl": "archive/datap.kl"})
    with pytest.raises(MalformedFileError, match="local and central headers disagree"):
        open_checkpoint(write(tmp_path, data))
    raw = bytearray(build_zip(_good_members()))
    raw[14:18] = struct.pack("<L", 12345)  # the first local header's CRC
    with pytest.raises(MalformedFileError, match="disagree"):
        open_checkpoint(write(tmp_path, bytes(raw)))


def test_altered_pickle_fails_its_crc(tmp_path: Path) -> None:
    raw = bytearray(build_zip(_good_members()))
    at = raw.index(b"cpu")
    raw[at + 2] ^= 0x01  # the storage's location string, inside data.pkl
    with pytest.raises(MalformedFileError, match="CRC"):
        open_checkpoint(write(tmp_path, bytes(raw)))


@pytest.mark.parametrize(("members", "match"), [
    ([("data.pkl", b"\x80\x02}q\x00."), ("version", b"3\n")], "top level"),
    ([("a/data.pkl", b"\x80\x02}q\x00."), ("b/data/0", b"")], "one root folder"),
    ([("archive/other.pkl", b"\x80\x02}q\x00.")], "no archive/data.pkl"),
    ([("archive/data.pkl", b"\x80\x02}q\x00."), ("archive/../../etc/x", b"")], "path traversal"),
    ([("archive/data.pkl", b"\x80\x02}q\x00."), ("/etc/passwd", b"")], "path traversal"),
    ([("archive/data.pkl", b"\x80\x02}q\x00."), ("archive/byteorder", b"big")], "big-endian"),
    ([("archive/data.pkl", b"\x80\x02}q\x00."), ("archive/data.pkl", b"")], "two members"),
])
def test_archive_layout_rules(tmp_path: Path, members: list, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        open_checkpoint(write(tmp_path, build_zip(members)))


def test_trailing_or_prepended_bytes_are_refused(tmp_path: Path) -> None:
    good = build_zip(_good_members())
    for data in (good + b"\x00" * 10, b"\x00" * 4 + good, good[:-1]):
        with pytest.raises(CheckpointError):
            open_checkpoint(write(tmp_path, b"PK\x03\x04" + data[4:] if data.startswith(b"\x00") else data))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused_naming_it(tmp_path: Path) -> None:
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    path = tmp_path / "model.pt"
    torch.jit.save(scripted, str(path))
    with pytest.raises(UnsupportedFormatError, match="TorchScript"):
        open_checkpoint(str(path))


def test_whole_module_pickle_is_refused(tmp_path: Path) -> None:
    path = save(torch.nn.Linear(2, 2), tmp_path / "whole.pt")
    with pytest.raises(UnsafeFileError, match=r"torch\.nn\.modules\.linear\.Linear.*state_dict"):
        open_checkpoint(path)


def test_plain_pickle_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": 1, "b": [1.5, "x"]}, protocol=2))
    with pytest.raises(UnsupportedFormatError, match="plain Python pickle"):
        open_checkpoint(str(path))


# --- truncation at every structural boundary ---------------------------------------------------------------------
def _boundaries(path: str) -> set[int]:
    with core.io.FileReader(path) as reader:
        members = read_members(reader)
    size = os.path.getsize(path)
    points = {0, 1, 4, size - 22, size - 21, size - 1}
    for m in members:
        points |= {m.header_offset, m.header_offset + 30, m.data_offset, m.data_offset + 1, m.end - 1, m.end}
    return {p for p in points if 0 <= p < size}


def test_zip_truncated_at_every_boundary_is_refused(tmp_path: Path) -> None:
    path = save({"w": torch.arange(6.0), "b": torch.ones(2, dtype=torch.int64)}, tmp_path / "whole.pt")
    data = Path(path).read_bytes()
    cuts = _boundaries(path) | set(range(0, len(data), 17))
    for cut in sorted(cuts):
        target = write(tmp_path, data[:cut], "cut.pt")
        with pytest.raises(CheckpointError):
            open_checkpoint(target)


def test_legacy_truncated_at_every_boundary_is_refused(tmp_path: Path) -> None:
    path = save({"w": torch.arange(6.0), "b": torch.ones(2, dtype=torch.int64)}, tmp_path / "whole.pt", legacy=True)
    data = Path(path).read_bytes()
    pickle_ends = {i + 1 for i in range(len(data)) if data[i : i + 3] == b".\x80\x02"}
    cuts = set(range(0, len(data), 3)) | set(range(len(data) - 40, len(data))) | pickle_ends
    assert len(pickle_ends) == 4  # magic, protocol version, system info, objects; then the key list
    for cut in sorted(cuts):
        target = write(tmp_path, data[:cut], "cut.pt")
        with pytest.raises(CheckpointError):
            open_checkpoint(target)


def test_legacy_layout_rules(tmp_path: Path) -> None:
    path = save({"w": torch.arange(6.0)}, tmp_path / "l.pt", legacy=True)
    data = Path(path).read_bytes()
    count_at = len(data) - 24 - 8
    assert struct.unpack("<q", data[count_at : count_at + 8])[0] == 6
    bigger = data[:count_at] + struct.pack("<q", 7) + data[count_at + 8 :]
    with pytest.raises(MalformedFileError, match="holds 7 elements"):
        open_checkpoint(write(tmp_path, bigger))
    with pytest.raises(MalformedFileError, match="unexpected bytes after the last storage"):
        open_checkpoint(write(tmp_path, data + b"\x00" * 8))
    # a legacy file whose storage-key list names a storage no tensor uses
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    assert data.startswith(magic)
    keys_at = data.rfind(b"\x80\x02]")
    forged = data[:keys_at] + pickle.dumps(["0", "1"], protocol=2) + data[count_at:]
    with pytest.raises(MalformedFileError, match="storage key list"):
        open_checkpoint(write(tmp_path, forged))


def test_info_cli_on_a_torch_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import main

    path = save({"fc.weight": torch.ones(3, 4), "fc.bias": torch.zeros(3)}, tmp_path / "m.bin")
    assert main.main(["info", path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "pytorch" and out["tensor_count"] == 2 and out["parameter_count"] == 15
    assert out["by_kind"]["bias"] == 3 and out["by_dtype"] == {"F32": 15}
