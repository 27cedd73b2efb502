"""Mutation fuzz of torch.save files (zip and legacy) the test writes: truncations, bit flips, byte edits, and edits
of data.pkl inside a zip rebuilt with valid CRCs (so the pickle interpreter itself is fuzzed). Opening, and reading
every tensor of whatever opens, raises nothing but our own CheckpointError."""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections import OrderedDict
from functools import cache
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.formats.pickle_vm import ByteSource, run_pickle

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INTERESTING = [0x00, 0x01, 0x02, 0x28, 0x2E, 0x4B, 0x52, 0x71, 0x7F, 0x80, 0x8A, 0x93, 0x94, 0x95, 0xFF]


def _state() -> OrderedDict:
    torch.manual_seed(3)
    base = torch.arange(24, dtype=torch.float32)
    return OrderedDict([
        ("embed.weight", torch.randn(6, 4)), ("layer.0.weight", torch.randn(4, 4).to(torch.bfloat16)),
        ("layer.0.bias", torch.zeros(4, dtype=torch.float16)), ("view", base[5:17]),
        ("transposed", base.view(4, 6).t()), ("steps", torch.tensor(3, dtype=torch.int64)),
        ("mask", torch.ones(3, dtype=torch.bool)), ("nested", {"a": [torch.ones(2)], "lr": 0.1}),
    ])


@cache
def seeds() -> dict[str, bytes]:
    out = {}
    for name, legacy in (("zip", False), ("legacy", True)):
        buf = io.BytesIO()
        torch.save(_state(), buf, _use_new_zipfile_serialization=not legacy)
        out[name] = buf.getvalue()
    with zipfile.ZipFile(io.BytesIO(out["zip"])) as zf:
        out["data.pkl"] = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
    return out


def _open_and_read(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.pt"
        path.write_bytes(data)
        try:
            with open_checkpoint(str(path)) as ck:
                for t in ck.tensors:
                    ck.read_raw(t)
        except CheckpointError:
            pass


def _mutate(raw: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(raw)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.one_of(st.sampled_from(INTERESTING), st.integers(0, 255))),
                 min_size=1, max_size=6)


@FUZZ
@given(kind=st.sampled_from(["zip", "legacy"]), cut=st.integers(0, 1 << 20))
def test_truncated_files(kind: str, cut: int) -> None:
    raw = seeds()[kind]
    _open_and_read(raw[: cut % len(raw)])


@FUZZ
@given(kind=st.sampled_from(["zip", "legacy"]), edits=edits, cut=st.none() | st.integers(1, 1 << 20))
def test_byte_edits(kind: str, edits: list[tuple[int, int]], cut: int | None) -> None:
    _open_and_read(_mutate(seeds()[kind], edits, cut))


@FUZZ
@given(edits=edits, cut=st.none() | st.integers(1, 4096))
def test_pickle_edits_inside_a_valid_zip(edits: list[tuple[int, int]], cut: int | None) -> None:
    pkl = _mutate(seeds()["data.pkl"], edits, cut)
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(seeds()["zip"])) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, pkl if info.filename.endswith("/data.pkl") else src.read(info.filename))
    _open_and_read(buf.getvalue())


@FUZZ
@given(data=st.binary(max_size=200) | st.builds(lambda e, c: _mutate(seeds()["data.pkl"], e, c), edits,
                                                   st.none() | st.integers(1, 4096)))
def test_interpreter_on_random_and_mutated_pickles(data: bytes) -> None:
    try:
        run_pickle(ByteSource.from_bytes(data), lambda pid: None)
    except CheckpointError:
        pass
