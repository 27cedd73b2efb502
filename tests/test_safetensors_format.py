"""safetensors: values and counts of files the tests write, and a refusal for every broken rule."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file
from safetensors.torch import save_file as torch_save_file

from core.errors import CheckpointError, MalformedFileError, MissingFilesError
from core.formats import open_checkpoint

NUMPY_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def raw_file(path: str, header: dict | bytes, data: bytes = b"", header_len: int | None = None) -> str:
    """A safetensors-shaped file with exactly the header and data given (no validation on our side)."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw) if header_len is None else header_len))
        f.write(raw)
        f.write(data)
    return path


@pytest.mark.parametrize("dtype", list(NUMPY_DTYPES))
def test_every_numpy_dtype_reads_back_exactly(tmp_path, dtype: str) -> None:
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((3, 5, 7)) * 50).astype(NUMPY_DTYPES[dtype])
    path = str(tmp_path / "m.safetensors")
    save_file({"a.weight": values, "empty": np.zeros((0, 4), NUMPY_DTYPES[dtype])}, path)
    with open_checkpoint(path) as ck:
        t = ck.tensor("a.weight")
        assert (t.dtype, t.shape, t.elements, t.nbytes) == (dtype, (3, 5, 7), 105, values.nbytes)
        assert np.array_equal(ck.read_tensor(t), values)
        assert np.array_equal(ck.read(t, 10, 20), values.reshape(-1)[10:30])
        assert ck.tensor("empty").elements == 0


def test_bf16_bits_and_values(tmp_path) -> None:
    values = torch.tensor([[1.5, -2.0, float("inf")], [float("nan"), 0.0, 3.0e38]], dtype=torch.bfloat16)
    path = str(tmp_path / "m.safetensors")
    torch_save_file({"w": values}, path)
    with open_checkpoint(path) as ck:
        raw = ck.read_raw("w")
        assert raw.dtype == np.uint16
        assert np.array_equal(raw, values.view(torch.int16).numpy().reshape(-1).view(np.uint16))
        decoded = ck.read("w")
        expected = values.float().numpy().reshape(-1)
        assert np.array_equal(decoded, expected, equal_nan=True)


def test_float8_values(tmp_path) -> None:
    values = torch.tensor([0.5, -448.0, 1.0e-3, 240.0], dtype=torch.float32)
    path = str(tmp_path / "m.safetensors")
    torch_save_file({"e4": values.to(torch.float8_e4m3fn), "e5": values.to(torch.float8_e5m2)}, path)
    with open_checkpoint(path) as ck:
        assert np.array_equal(ck.read("e4"), values.to(torch.float8_e4m3fn).float().numpy())
        assert np.array_equal(ck.read("e5"), values.to(torch.float8_e5m2).float().numpy())


def test_chunks_cover_the_tensor_in_order(tmp_path) -> None:
    values = np.arange(10_000, dtype=np.float32)
    path = str(tmp_path / "m.safetensors")
    save_file({"w": values}, path)
    with open_checkpoint(path) as ck:
        chunks = [c.copy() for c in ck.iter_chunks("w", chunk_bytes=4096)]
    assert len(chunks) == 10
    assert np.array_equal(np.concatenate(chunks), values)


def test_sharded_index_and_folder(tmp_path) -> None:
    save_file({"model.layers.0.mlp.up_proj.weight": np.ones((4, 2), np.float32)},
              str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"model.layers.1.mlp.up_proj.weight": np.ones((4, 2), np.float32),
               "lm_head.weight": np.ones((3, 2), np.float32)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = {"model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
                  "model.layers.1.mlp.up_proj.weight": "model-00002-of-00002.safetensors",
                  "lm_head.weight": "model-00002-of-00002.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2,
                                                      "hidden_size": 2, "vocab_size": 3}))
    for target in (tmp_path, tmp_path / "model.safetensors.index.json"):
        with open_checkpoint(str(target)) as ck:
            assert len(ck.files) == 2 and len(ck.tensors) == 3
            assert ck.parameter_count == 8 + 8 + 6
            assert ck.architecture["layers"] == 2 and ck.architecture["family"] == "llama"
            assert ck.architecture["source"] == "config.json"
            assert np.array_equal(ck.read_tensor("lm_head.weight"), np.ones((3, 2), np.float32))


def test_index_refuses_path_traversal_and_missing_shards(tmp_path) -> None:
    (tmp_path / "a.index.json").write_text(json.dumps({"weight_map": {"w": "../evil.safetensors"}}))
    with pytest.raises(MalformedFileError, match="unsafe shard path"):
        open_checkpoint(str(tmp_path / "a.index.json"))
    (tmp_path / "b.index.json").write_text(json.dumps({"weight_map": {"w": "/etc/passwd"}}))
    with pytest.raises(MalformedFileError, match="unsafe shard path"):
        open_checkpoint(str(tmp_path / "b.index.json"))
    (tmp_path / "c.index.json").write_text(json.dumps({"weight_map": {"w": "gone.safetensors"}}))
    with pytest.raises(MissingFilesError, match=r"missing: gone\.safetensors"):
        open_checkpoint(str(tmp_path / "c.index.json"))


def test_index_tensor_absent_from_its_shard(tmp_path) -> None:
    save_file({"a": np.ones(2, np.float32)}, str(tmp_path / "s.safetensors"))
    (tmp_path / "m.index.json").write_text(json.dumps({"weight_map": {"a": "s.safetensors",
                                                                      "b": "s.safetensors"}}))
    with pytest.raises(MalformedFileError, match="not in their shards"):
        open_checkpoint(str(tmp_path / "m.index.json"))


GOOD_ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
BAD_HEADERS = [
    ({"w": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype"),
    ({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}}, b"\0" * 8, "non-negative integers"),
    ({"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, b"\0" * 8, "non-negative integers"),
    ({"w": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}}, b"\0" * 8, "non-negative integers"),
    ({"w": {"dtype": "F32", "shape": [2, 2**63], "data_offsets": [0, 8]}}, b"\0" * 8, "non-negative integers"),
    ({"w": {"dtype": "F32", "shape": [2**62, 4], "data_offsets": [0, 8]}}, b"\0" * 8, "overflows"),
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12 bytes"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, "end before"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}}, b"\0" * 8, "two non-negative"),
    ({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "exactly dtype"),
    ({"a": GOOD_ENTRY, "b": GOOD_ENTRY}, b"\0" * 8, "overlaps"),
    ({"a": GOOD_ENTRY, "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}, b"\0" * 24, "gap"),
    ({"w": GOOD_ENTRY}, b"\0" * 12, "trailing bytes"),
    ({"w": GOOD_ENTRY}, b"\0" * 4, "truncated"),
    ({"w": GOOD_ENTRY, "__metadata__": {"k": 1}}, b"\0" * 8, "strings to strings"),
    (b'{"a": [1, 2]}', b"", "exactly dtype"),
]


@pytest.mark.parametrize(("header", "data", "reason"), BAD_HEADERS, ids=lambda v: str(v)[:40])
def test_each_validation_rule_refuses(tmp_path, header, data, reason) -> None:
    path = raw_file(str(tmp_path / "bad.safetensors"), header, data)
    with pytest.raises(MalformedFileError, match=reason):
        open_checkpoint(path)


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "w": {}}', "duplicate key"),
    (b'{"w": \xff}', "UTF-8"),
    (b'{"w": ', "not valid JSON"),
    (b'{"w": NaN}', "non-JSON constant"),
])
def test_header_text_problems(tmp_path, raw: bytes, reason: str) -> None:
    path = raw_file(str(tmp_path / "bad.safetensors"), raw, b"\0" * 8)
    with pytest.raises(MalformedFileError, match=reason):
        open_checkpoint(path)


def test_header_length_limits(tmp_path) -> None:
    huge = raw_file(str(tmp_path / "huge.safetensors"), b"{}", header_len=2**63)
    with pytest.raises(MalformedFileError, match="exceeds"):
        open_checkpoint(huge)
    longer = raw_file(str(tmp_path / "long.safetensors"), b"{}", header_len=1000)
    with pytest.raises(MalformedFileError, match="truncated"):
        open_checkpoint(longer)


def test_file_that_shrinks_while_open_gives_read_error(tmp_path) -> None:
    path = str(tmp_path / "m.safetensors")
    save_file({"w": np.ones(1000, np.float32)}, path)
    with open_checkpoint(path) as ck:
        os.truncate(path, 200)
        with pytest.raises(CheckpointError, match="shorter than expected"):
            ck.read("w")


def test_opening_reads_headers_only(tmp_path) -> None:
    """A 4 GB sparse tensor opens without touching its data (a read of it would take seconds)."""
    from tests.llama_shapes import write_sparse_safetensors

    path = str(tmp_path / "big.safetensors")
    write_sparse_safetensors(path, [("w", (1 << 31,))])
    with open_checkpoint(path) as ck:
        assert ck.tensor("w").nbytes == 1 << 32
        assert ck.file_bytes > 1 << 32


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutation_fuzz_only_raises_our_errors(tmp_path, data) -> None:
    path = str(tmp_path / "m.safetensors")
    save_file({"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.int64)}, path)
    blob = bytearray(Path(path).read_bytes())
    action = data.draw(st.sampled_from(["truncate", "flip", "edit"]))
    if action == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif action == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
    else:
        i = data.draw(st.integers(0, min(len(blob) - 1, 120)))
        blob[i] = data.draw(st.integers(0, 255))
    mutated = str(tmp_path / "mutated.safetensors")
    with open(mutated, "wb") as f:
        f.write(bytes(blob))
    try:
        with open_checkpoint(mutated) as ck:
            for t in ck.tensors:
                ck.read(t)
    except CheckpointError as exc:
        assert str(exc) and "\n" not in str(exc)
