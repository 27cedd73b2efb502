"""GGUF: files the tests write (gguf.GGUFWriter and raw struct bytes), read back against gguf.quants,
and a refusal with its specific reason for every validation rule in SECURITY.md."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quantize

import core.formats.gguf_format as gguf_format
from core.checkpoint import decode
from core.errors import CheckpointError, MalformedFileError, MissingFilesError, UnsupportedFormatError
from core.formats import open_checkpoint
from core.formats.gguf_format import open_gguf
from tests.corpus import CORPUS

Q = GGMLQuantizationType
PLAIN_NUMPY = {Q.F32: np.float32, Q.F16: np.float16, Q.F64: np.float64, Q.I8: np.int8, Q.I16: np.int16,
               Q.I32: np.int32, Q.I64: np.int64}
QUANTIZABLE = [Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.MXFP4, Q.TQ1_0, Q.TQ2_0]


# --- raw GGUF bytes, for inputs no writer would produce ------------------------------------------------------
def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return u64(len(raw)) + raw


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + u32(vtype) + payload


def kv_str(key: str, value: str | bytes) -> bytes:
    return kv(key, 8, gstr(value))


def kv_u32(key: str, value: int) -> bytes:
    return kv(key, 4, u32(value))


def tinfo(name: str | bytes, ne: tuple[int, ...], ggml_type: int, offset: int) -> bytes:
    """A tensor info: ne in GGUF order (fastest axis first), as signed int64 like ggml reads them."""
    return gstr(name) + u32(len(ne)) + b"".join(struct.pack("<q", d) for d in ne) + u32(ggml_type) + u64(offset)


def gguf_bytes(kvs: list[bytes], infos: list[bytes], data: bytes = b"", *, version: int = 3,
               n_tensors: int | None = None, n_kv: int | None = None, alignment: int = 32) -> bytes:
    head = (b"GGUF" + u32(version) + u64(len(infos) if n_tensors is None else n_tensors)
            + u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(infos))
    head += b"\0" * (-len(head) % alignment)
    return head + data


def valid_raw() -> tuple[list[bytes], list[bytes], bytes]:
    """One F32 tensor of shape (2, 4) and one F16 tensor of shape (8,) at aligned offsets 0 and 32."""
    kvs = [kv_str("general.architecture", "llama"), kv_u32("llama.block_count", 1)]
    infos = [tinfo("blk.0.attn_q.weight", (4, 2), Q.F32, 0), tinfo("blk.0.attn_norm.weight", (8,), Q.F16, 32)]
    data = np.arange(8, dtype=np.float32).tobytes() + np.ones(8, np.float16).tobytes()
    return kvs, infos, data


def write(path: Path, raw: bytes) -> str:
    path.write_bytes(raw)
    return str(path)


def refused(path: str, *needles: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(path).close()
    reason = str(info.value)
    assert "\n" not in reason
    for needle in needles:
        assert needle in reason, reason
    return info.value


# --- files from gguf.GGUFWriter ------------------------------------------------------------------------------
def write_model(path: Path, tensors: dict[str, tuple[np.ndarray, GGMLQuantizationType | None]],
                setup=None, **writer_args) -> str:
    writer = GGUFWriter(str(path), "llama", **writer_args)
    if setup is not None:
        setup(writer)
    for name, (array, raw_dtype) in tensors.items():
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def random_blocks(qtype: GGMLQuantizationType, rows: int, blocks_per_row: int, seed: int = 0) -> np.ndarray:
    """Random quant blocks; bytes below 0x3C keep every fp16/fp32 scale finite."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)
    return rng.integers(0, 0x3C, size=(rows, blocks_per_row * type_size), dtype=np.uint8)


def test_writer_file_metadata_shapes_and_counts(tmp_path) -> None:
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((100, 64)).astype(np.float32)
    q = rng.standard_normal((64, 64)).astype(np.float16)
    norm = np.ones(64, np.float32)

    def setup(w: GGUFWriter) -> None:
        w.add_block_count(1)
        w.add_embedding_length(64)
        w.add_head_count(4)
        w.add_head_count_kv(2)
        w.add_feed_forward_length(256)
        w.add_context_length(2048)
        w.add_token_list([f"tok{i}" for i in range(100)])

    path = write_model(tmp_path / "m.gguf", {"token_embd.weight": (emb, None), "blk.0.attn_q.weight": (q, None),
                                             "blk.0.attn_norm.weight": (norm, None)}, setup)
    with open_checkpoint(path) as ck:
        assert ck.format == "gguf"
        assert [f.path for f in ck.files] == [path] and ck.file_bytes == os.path.getsize(path)
        assert [t.name for t in ck.tensors] == ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight"]
        emb_t, q_t, norm_t = ck.tensors
        assert (emb_t.shape, emb_t.dtype, emb_t.elements, emb_t.nbytes) == ((100, 64), "F32", 6400, 25600)
        assert (q_t.shape, q_t.dtype, q_t.nbytes) == ((64, 64), "F16", 8192)
        assert (norm_t.shape, norm_t.dtype) == ((64,), "F32")
        assert (emb_t.kind, q_t.role, norm_t.role) == ("embedding", "attention.q", "norm")
        assert ck.element_count == 6400 + 4096 + 64
        assert ck.by_dtype() == {"F32": 6464, "F16": 4096}
        # offsets are absolute and aligned: the bytes there are the tensor's own
        for t in ck.tensors:
            assert t.offset % 32 == 0
        assert np.array_equal(ck.read_tensor(emb_t), emb)
        assert np.array_equal(ck.read_tensor(q_t), q)
        assert np.array_equal(ck.read_tensor(norm_t), norm)
        meta = ck.metadata
        assert meta["general.architecture"] == "llama"
        assert meta["llama.block_count"] == 1 and meta["GGUF.version"] == 3
        assert meta["tokenizer.ggml.tokens"]["count"] == 100
        assert ck.architecture == {"family": "llama", "layers": 1, "hidden_size": 64, "heads": 4, "kv_heads": 2,
                                   "head_dim": 16, "intermediate_size": 256, "vocab_size": 100,
                                   "context_length": 2048, "tied_embeddings": True, "source": "GGUF metadata"}


@pytest.mark.parametrize("qtype", list(PLAIN_NUMPY), ids=lambda q: q.name)
def test_plain_types_read_back_exactly(tmp_path, qtype: GGMLQuantizationType) -> None:
    values = (np.random.default_rng(2).standard_normal((3, 5, 8)) * 40).astype(PLAIN_NUMPY[qtype])
    path = write_model(tmp_path / "m.gguf", {"w": (values, None)})
    with open_checkpoint(path) as ck:
        t = ck.tensor("w")
        assert (t.dtype, t.shape, t.elements, t.nbytes) == (qtype.name, (3, 5, 8), 120, values.nbytes)
        assert np.array_equal(ck.read_tensor(t), values)
        assert np.array_equal(ck.read(t, 7, 30), values.reshape(-1)[7:37])


@pytest.mark.parametrize("qtype", QUANTIZABLE, ids=lambda q: q.name)
def test_quantised_values_match_gguf_dequantize_and_the_original(tmp_path, qtype: GGMLQuantizationType) -> None:
    original = np.random.default_rng(3).standard_normal((4, 512)).astype(np.float32)
    packed = quantize(original, qtype)
    path = write_model(tmp_path / "m.gguf", {"blk.0.ffn_up.weight": (packed, qtype)})
    expected = dequantize(packed, qtype).astype(np.float32)
    with open_checkpoint(path) as ck:
        t = ck.tensor("blk.0.ffn_up.weight")
        block, type_size = GGML_QUANT_SIZES[qtype]
        assert (t.dtype, t.shape, t.elements) == (qtype.name, (4, 512), 2048)
        assert t.nbytes == 2048 // block * type_size == packed.nbytes
        whole = ck.read_tensor(t)
        assert whole.dtype == np.float32 and whole.shape == (4, 512)
        assert np.array_equal(whole, expected)
        # a range that starts and ends inside blocks
        assert np.array_equal(ck.read(t, 5, 700), expected.reshape(-1)[5:705])
        chunks = list(ck.iter_chunks(t, chunk_bytes=type_size * 3, reuse=False))
        assert len(chunks) > 1 and np.array_equal(np.concatenate([decode(c, t.dtype) for c in chunks]),
                                                  ck.read(t))
    tolerance = {Q.BF16: 0.02, Q.Q8_0: 0.03, Q.Q5_0: 0.2, Q.Q5_1: 0.2, Q.Q4_0: 0.4, Q.Q4_1: 0.4}
    if qtype in tolerance:
        assert np.max(np.abs(whole - original)) <= tolerance[qtype] * np.max(np.abs(original))


DEQUANT_ONLY = [q for q in GGML_QUANT_SIZES if GGML_QUANT_SIZES[q][0] > 1 and q not in QUANTIZABLE]


@pytest.mark.parametrize("qtype", DEQUANT_ONLY, ids=lambda q: q.name)
def test_every_other_quant_type_lists_and_dequantises_like_gguf(tmp_path, qtype: GGMLQuantizationType) -> None:
    """K-quants, IQ types, NVFP4 ...: random blocks written raw, read back equal to gguf.quants.dequantize."""
    blocks = random_blocks(qtype, rows=3, blocks_per_row=2)
    block, type_size = GGML_QUANT_SIZES[qtype]
    path = write_model(tmp_path / "m.gguf", {"blk.0.attn_k.weight": (blocks, qtype)})
    with open_checkpoint(path) as ck:
        t = ck.tensor("blk.0.attn_k.weight")
        assert (t.dtype, t.shape, t.elements, t.nbytes) == (qtype.name, (3, 2 * block), 6 * block, 6 * type_size)
        try:
            expected = dequantize(blocks, qtype).astype(np.float32).reshape(-1)
        except NotImplementedError:  # Q8_1, Q8_K, Q1_0: the gguf package cannot decode them
            with pytest.raises(CheckpointError, match=qtype.name):
                ck.read(t)
            return
        assert np.array_equal(ck.read(t), expected, equal_nan=True)
        assert np.array_equal(ck.read(t, block - 3, block + 7), expected[block - 3 : 2 * block + 4], equal_nan=True)


def test_dtype_names_match_core_dtypes_for_every_ggml_type() -> None:
    from core import dtypes

    for qtype, (block, size) in GGML_QUANT_SIZES.items():
        dt = dtypes.get(qtype.name)
        assert (dt.block_size, dt.type_size) == (block, size)


def test_custom_alignment_and_four_dimensions(tmp_path) -> None:
    values = np.arange(2 * 3 * 4 * 8, dtype=np.float32).reshape(2, 3, 4, 8)
    path = write_model(tmp_path / "m.gguf", {"a": (values, None), "b": (np.ones(3, np.float32), None)},
                       lambda w: w.add_custom_alignment(64))
    with open_checkpoint(path) as ck:
        assert ck.metadata["general.alignment"] == 64
        assert ck.tensor("a").shape == (2, 3, 4, 8)
        assert all(t.offset % 64 == 0 for t in ck.tensors)
        assert np.array_equal(ck.read_tensor("a"), values)
        assert np.array_equal(ck.read_tensor("b"), np.ones(3, np.float32))


def test_split_model_opens_as_one(tmp_path) -> None:
    rng = np.random.default_rng(4)
    tensors = {f"blk.{i}.ffn_down.weight": (rng.standard_normal((8, 32)).astype(np.float32), None) for i in range(5)}
    write_model(tmp_path / "model.gguf", tensors, lambda w: w.add_block_count(5), split_max_tensors=2)
    parts = sorted(p.name for p in tmp_path.iterdir())
    assert parts == [f"model-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    for opened in ("model-00002-of-00003.gguf", "model-00001-of-00003.gguf"):
        with open_checkpoint(str(tmp_path / opened)) as ck:
            assert [os.path.basename(f.path) for f in ck.files] == parts
            assert ck.file_bytes == sum(os.path.getsize(tmp_path / p) for p in parts)
            assert [t.name for t in ck.tensors] == list(tensors)
            assert ck.element_count == 5 * 256
            assert ck.metadata["llama.block_count"] == 5 and ck.metadata["split.count"] == 3
            assert ck.architecture["layers"] == 5
            for t in ck.tensors:
                assert np.array_equal(ck.read_tensor(t), tensors[t.name][0])
            assert {os.path.basename(t.file) for t in ck.tensors} == set(parts)
    with open_checkpoint(str(tmp_path)) as ck:  # the folder opens through its first part
        assert len(ck.tensors) == 5


def test_split_model_problems_are_refused(tmp_path) -> None:
    tensors = {f"t{i}": (np.ones(4, np.float32), None) for i in range(4)}
    write_model(tmp_path / "m.gguf", tensors, split_max_tensors=2)
    first, second = tmp_path / "m-00001-of-00002.gguf", tmp_path / "m-00002-of-00002.gguf"
    second_bytes = second.read_bytes()
    second.unlink()
    assert isinstance(refused(str(first), "missing 1 part", "m-00002-of-00002.gguf"), MissingFilesError)
    second.write_bytes(second_bytes.replace(b"t2", b"t0", 1))
    refused(str(first), "'t0' appears in two parts")
    second.write_bytes(b"GGUX" + second_bytes[4:])
    refused(str(first), "not a GGUF file")
    # split.no of the second part rewritten to say it is part 1 (the UINT16 value follows its key and type)
    at = second_bytes.index(b"split.no") + len("split.no") + 4
    second.write_bytes(second_bytes[:at] + struct.pack("<H", 0) + second_bytes[at + 2 :])
    refused(str(first), "says it is part 1", "part 2")
    # one part renamed so the name no longer tells where the others are
    second.write_bytes(second_bytes)
    lone = tmp_path / "renamed.gguf"
    lone.write_bytes(first.read_bytes())
    assert isinstance(refused(str(lone), "one part of a 2-part split"), MissingFilesError)


def test_split_count_and_tensor_count_must_agree(tmp_path) -> None:
    def part(no: int, count: int, total: int, name: str) -> bytes:
        kvs = [kv_str("general.architecture", "llama"), kv("split.no", 2, struct.pack("<H", no)),
               kv("split.count", 2, struct.pack("<H", count)), kv("split.tensors.count", 5, struct.pack("<i", total))]
        return gguf_bytes(kvs, [tinfo(name, (4,), Q.F32, 0)], b"\0" * 16)

    first = write(tmp_path / "x-00001-of-00002.gguf", part(0, 2, 2, "a"))
    write(tmp_path / "x-00002-of-00002.gguf", part(1, 3, 2, "b"))
    refused(first, "says the model has 3 parts")
    write(tmp_path / "x-00002-of-00002.gguf", part(1, 2, 2, "b"))
    with open_checkpoint(first) as ck:
        assert [t.name for t in ck.tensors] == ["a", "b"]
    write(tmp_path / "x-00001-of-00002.gguf", part(0, 2, 7, "a"))
    refused(first, "should hold 7 tensors", "hold 2")


def test_metadata_values_and_summaries(tmp_path) -> None:
    def setup(w: GGUFWriter) -> None:
        w.add_uint8("t.u8", 200)
        w.add_int8("t.i8", -100)
        w.add_uint16("t.u16", 65000)
        w.add_int16("t.i16", -30000)
        w.add_uint32("t.u32", 4_000_000_000)
        w.add_int32("t.i32", -2_000_000_000)
        w.add_uint64("t.u64", 2**64 - 1)
        w.add_int64("t.i64", -(2**63))
        w.add_float32("t.f32", 1e-5)
        w.add_float64("t.f64", 0.1)
        w.add_bool("t.bool", True)
        w.add_string("t.str", "héllo <script>")
        w.add_array("t.short", [1, 2, 3])
        w.add_array("t.short_str", ["a", "b"])
        w.add_array("t.long_str", [f"token{i}" for i in range(32000)])
        w.add_array("t.long_f32", [float(i) / 2 for i in range(1000)])
        w.add_array("t.long_bool", [bool(i % 2) for i in range(100)])
        w.add_string("t.huge", "x" * (gguf_format.MAX_STRING_BYTES + 10))

    path = write_model(tmp_path / "m.gguf", {"w": (np.zeros(4, np.float32), None)}, setup)
    with open_checkpoint(path) as ck:
        m = ck.metadata
    assert (m["t.u8"], m["t.i8"], m["t.u16"], m["t.i16"]) == (200, -100, 65000, -30000)
    assert (m["t.u32"], m["t.i32"], m["t.u64"], m["t.i64"]) == (4_000_000_000, -2_000_000_000, 2**64 - 1, -(2**63))
    assert m["t.f32"] == 1e-5 and m["t.f64"] == 0.1 and m["t.bool"] is True
    assert m["t.str"] == "héllo <script>"
    assert m["t.short"] == [1, 2, 3] and m["t.short_str"] == ["a", "b"]
    assert m["t.long_str"] == {"summary": "[array of 32,000 str]", "type": "str", "count": 32000,
                               "first": [f"token{i}" for i in range(gguf_format.HEAD_ITEMS)]}
    assert m["t.long_f32"]["count"] == 1000 and m["t.long_f32"]["type"] == "float32"
    assert m["t.long_f32"]["first"] == [i / 2 for i in range(gguf_format.HEAD_ITEMS)]
    assert m["t.long_bool"]["first"] == [False, True] * (gguf_format.HEAD_ITEMS // 2)
    assert m["t.huge"].startswith("x" * gguf_format.MAX_STRING_BYTES) and m["t.huge"].endswith(
        f"[{gguf_format.MAX_STRING_BYTES + 10:,} bytes in all]")


def test_invalid_utf8_is_replaced_not_refused(tmp_path) -> None:
    kvs, infos, data = valid_raw()
    kvs.append(kv_str("general.name", b"bad \xff\xfe name"))
    kvs.append(kv("tokens", 9, u32(8) + u64(2) + gstr(b"\xc3") + gstr(b"ok")))
    kvs.append(kv("empty", 9, u32(4) + u64(0)))
    with open_checkpoint(write(tmp_path / "m.gguf", gguf_bytes(kvs, infos, data))) as ck:
        assert ck.metadata["general.name"] == "bad \ufffd\ufffd name"
        assert ck.metadata["tokens"] == ["\ufffd", "ok"]
        assert ck.metadata["empty"] == []


def test_raw_baseline_is_valid(tmp_path) -> None:
    """The file every malformed variant below starts from opens, with GGUF's reversed dimension order."""
    kvs, infos, data = valid_raw()
    for version in (2, 3):
        with open_checkpoint(write(tmp_path / f"v{version}.gguf", gguf_bytes(kvs, infos, data, version=version))) \
                as ck:
            q = ck.tensor("blk.0.attn_q.weight")
            assert q.shape == (2, 4)
            assert np.array_equal(ck.read_tensor(q), np.arange(8, dtype=np.float32).reshape(2, 4))
            assert np.array_equal(ck.read_tensor("blk.0.attn_norm.weight"), np.ones(8, np.float32))
            assert ck.metadata["GGUF.version"] == version


def variant(tmp_path: Path, *, kvs=None, infos=None, data=None, **kwargs) -> str:
    base_kvs, base_infos, base_data = valid_raw()
    raw = gguf_bytes(base_kvs if kvs is None else kvs, base_infos if infos is None else infos,
                     base_data if data is None else data, **kwargs)
    return write(tmp_path / "bad.gguf", raw)


def test_bad_magic_is_refused(tmp_path) -> None:
    raw = gguf_bytes(*valid_raw())
    path = write(tmp_path / "m.gguf", b"GGUX" + raw[4:])
    with pytest.raises(UnsupportedFormatError, match="not a GGUF file"):
        open_gguf([path], path)
    refused(path, "not a recognised checkpoint")


@pytest.mark.parametrize(("version", "needle", "error"), [
    (1, "GGUF version 1", UnsupportedFormatError),
    (4, "GGUF version 4 is newer", UnsupportedFormatError),
    (0, "invalid GGUF version 0", MalformedFileError),
    (0x03000000, "byte-swapped", UnsupportedFormatError),
    (0x02000000, "big-endian", UnsupportedFormatError),
])
def test_versions(tmp_path, version: int, needle: str, error: type) -> None:
    assert isinstance(refused(variant(tmp_path, version=version), needle), error)


def test_two_to_the_sixty_tensors_in_a_tiny_file(tmp_path) -> None:
    refused(variant(tmp_path, n_tensors=2**60), "claims 1,152,921,504,606,846,976 tensors", "bytes left")
    refused(variant(tmp_path, n_tensors=2**64 - 1), "tensors", "bytes left")


def test_counts_beyond_the_caps_in_a_big_sparse_file(tmp_path) -> None:
    """Counts the bytes could hold but no model needs: capped, since each costs a Python object."""
    for counts, needle in (({"n_tensors": gguf_format.MAX_TENSORS + 1}, "more than the 1,000,000 this reader"),
                           ({"n_kv": gguf_format.MAX_KV + 1}, "key/values, more than the 1,000,000")):
        path = variant(tmp_path, **counts)
        os.truncate(path, 64 << 20)  # sparse: room for the counts, no disk used
        refused(path, needle)


def test_huge_key_value_count(tmp_path) -> None:
    refused(variant(tmp_path, n_kv=2**62), "metadata key/values", "bytes left")
    refused(variant(tmp_path, n_kv=3, infos=[], data=b"", alignment=1), "truncated", "metadata key/value 3 of 3")


@pytest.mark.parametrize("where", ["key", "value", "array element", "tensor name"])
def test_string_length_two_to_the_63(tmp_path, where: str) -> None:
    huge = u64(2**63)
    kvs, infos, _ = valid_raw()
    if where == "key":
        kvs.append(huge + b"general.name")
    elif where == "value":
        kvs.append(gstr("general.name") + u32(8) + huge + b"x")
    elif where == "array element":
        kvs.append(kv("tokenizer.ggml.tokens", 9, u32(8) + u64(2) + gstr("a") + huge + b"b"))
    else:
        infos[0] = huge + infos[0][8:]
    refused(variant(tmp_path, kvs=kvs, infos=infos), "claims a string of 9,223,372,036,854,775,808 bytes")


def test_array_count_beyond_the_file(tmp_path) -> None:
    kvs, _, _ = valid_raw()
    refused(variant(tmp_path, kvs=[*kvs, kv("scores", 9, u32(6) + u64(2**40))]), "'scores' claims 1,099,511,627,776")
    refused(variant(tmp_path, kvs=[*kvs, kv("toks", 9, u32(8) + u64(2**61))]), "'toks' claims")


def test_nested_arrays(tmp_path) -> None:
    kvs, _, _ = valid_raw()
    nested = kv("nested", 9, u32(9) + u64(1) + u32(4) + u64(1) + u32(7))
    refused(variant(tmp_path, kvs=[*kvs, nested]), "nested arrays")


@pytest.mark.parametrize("vtype", [13, 255, 2**32 - 1])
def test_invalid_value_types(tmp_path, vtype: int) -> None:
    kvs, _, _ = valid_raw()
    refused(variant(tmp_path, kvs=[*kvs, kv("k", vtype, u32(0))]), f"invalid value type {vtype}")
    refused(variant(tmp_path, kvs=[*kvs, kv("k", 9, u32(vtype) + u64(0))]), f"invalid element type {vtype}")


def test_empty_and_duplicate_keys(tmp_path) -> None:
    kvs, _, _ = valid_raw()
    refused(variant(tmp_path, kvs=[*kvs, kv_u32("", 1)]), "metadata key 3 of 3 is empty")
    refused(variant(tmp_path, kvs=[*kvs, kv_u32("llama.block_count", 2)]), "duplicate metadata key 'llama.block_count'")


@pytest.mark.parametrize(("payload", "needle"), [
    (kv_u32("general.alignment", 0), "power of two, not 0"),
    (kv_u32("general.alignment", 13), "power of two, not 13"),
    (kv_u32("general.alignment", 2**31 + 1), "power of two"),
    (kv("general.alignment", 10, u64(32)), "general.alignment must be a UINT32, not uint64"),
    (kv("general.alignment", 5, struct.pack("<i", 32)), "must be a UINT32, not int32"),
    (kv_str("general.alignment", "32"), "must be a UINT32, not str"),
])
def test_alignment_rules(tmp_path, payload: bytes, needle: str) -> None:
    kvs, _, _ = valid_raw()
    refused(variant(tmp_path, kvs=[*kvs, payload]), needle)


def test_valid_unusual_alignment_is_honoured(tmp_path) -> None:
    kvs, _, _ = valid_raw()
    infos = [tinfo("a", (2,), Q.F32, 0), tinfo("b", (4,), Q.F32, 8)]
    data = np.arange(6, dtype=np.float32).tobytes()
    path = variant(tmp_path, kvs=[*kvs, kv_u32("general.alignment", 8)], infos=infos, data=data, alignment=8)
    with open_checkpoint(path) as ck:
        assert np.array_equal(ck.read_tensor("b"), np.arange(2, 6, dtype=np.float32))
    refused(variant(tmp_path, kvs=[*kvs, kv_u32("general.alignment", 8)], infos=[tinfo("a", (4,), Q.F32, 4)],
                    data=data, alignment=8), "data offset 4 is not a multiple of the alignment 8")


def test_duplicate_and_empty_tensor_names(tmp_path) -> None:
    _, infos, _ = valid_raw()
    refused(variant(tmp_path, infos=[infos[0], tinfo("blk.0.attn_q.weight", (8,), Q.F16, 32)]),
            "duplicate tensor name 'blk.0.attn_q.weight'")
    refused(variant(tmp_path, infos=[infos[0], tinfo("", (8,), Q.F16, 32)]), "tensor 2 of 2 has an empty name")


@pytest.mark.parametrize(("ne", "needle"), [
    ((2, 2, 2, 2, 2), "has 5 dimensions (GGUF allows at most 4)"),
    ((4, -1), "a dimension of -1"),
    ((0, 4), "a dimension of 0"),
    ((-(2**63), 1), "a dimension of -9223372036854775808"),
    ((2**63 - 1, 2), "overflows the int64 element count"),
    ((2**32, 2**32), "overflows the int64 element count"),
])
def test_dimension_rules(tmp_path, ne: tuple[int, ...], needle: str) -> None:
    refused(variant(tmp_path, infos=[tinfo("w", ne, Q.F32, 0)]), needle)


def test_n_dims_huge_is_refused_before_reading_dims(tmp_path) -> None:
    info = gstr("w") + u32(2**32 - 1)
    refused(variant(tmp_path, infos=[info]), "4,294,967,295 dimensions")


def test_large_but_valid_shape_needs_its_data(tmp_path) -> None:
    refused(variant(tmp_path, infos=[tinfo("w", (2**31, 2**30), Q.F32, 0)]), "past the end of the file")


@pytest.mark.parametrize("type_id", [4, 5, 31, 32, 33, 36, 37, 38, 42, 99, 2**31, 2**32 - 1])
def test_unknown_tensor_type(tmp_path, type_id: int) -> None:
    refused(variant(tmp_path, infos=[tinfo("w", (32,), type_id, 0)]), f"unknown ggml type {type_id}")


@pytest.mark.parametrize(("qtype", "ne0"), [(Q.Q4_0, 16), (Q.Q8_0, 48), (Q.Q4_K, 128), (Q.IQ2_XS, 257)])
def test_first_dimension_must_fill_blocks(tmp_path, qtype: GGMLQuantizationType, ne0: int) -> None:
    block = GGML_QUANT_SIZES[qtype][0]
    refused(variant(tmp_path, infos=[tinfo("w", (ne0, 2), qtype, 0)]),
            f"first dimension {ne0} is not a multiple of the {qtype.name} block size {block}")


def test_tensor_data_placement(tmp_path) -> None:
    _, infos, data = valid_raw()
    refused(variant(tmp_path, infos=[infos[0], tinfo("n", (8,), Q.F16, 64)]), "'n' data", "past the end")
    refused(variant(tmp_path, infos=[infos[0], tinfo("n", (8,), Q.F16, 2**63)]), "past the end")
    refused(variant(tmp_path, infos=[infos[0], tinfo("n", (8,), Q.F16, 2**64 - 32)]), "past the end")
    refused(variant(tmp_path, infos=[infos[0], tinfo("n", (8,), Q.F16, 16)]), "not a multiple of the alignment 32")
    refused(variant(tmp_path, infos=[tinfo("a", (16,), Q.F32, 0), tinfo("b", (8,), Q.F16, 32)], data=data + data),
            "'b' data overlaps tensor 'a'")
    refused(variant(tmp_path, infos=[infos[0], tinfo("alias", (4, 2), Q.F32, 0)]), "overlaps")
    refused(variant(tmp_path, data=data[:-1]), "past the end")


def test_truncation_at_every_structural_boundary(tmp_path) -> None:
    kvs, infos, data = valid_raw()
    kvs.append(kv_str("general.name", "n" * 200))
    raw = gguf_bytes(kvs, infos, data)
    kv3 = 24 + len(kvs[0]) + len(kvs[1])  # where the third key/value starts
    header_end = kv3 + len(kvs[2]) + sum(map(len, infos))
    cuts = {
        3: "too small",  # not even a magic number: format detection says so
        4: "ends inside the version",
        8: "ends inside the tensor and key/value counts",
        23: "ends inside the tensor and key/value counts",
        24: "header claims 2 tensors",  # the counts cannot fit in what is left
        kv3 + 4: "header claims 2 tensors",
        kv3 + 8 + 12 + 2: "ends inside metadata value 'general.name'",
        kv3 + 8 + 12 + 4 + 8 + 50: "claims a string of 200 bytes but only 50 bytes are left",
        header_end - len(infos[1]) + 2: "ends inside tensor info 2 of 2",
        header_end - 1: "ends inside the tensor info of 'blk.0.attn_norm.weight'",
        header_end: "past the end of the file",
        len(raw) - 1: "past the end of the file",
    }
    for cut, needle in cuts.items():
        refused(write(tmp_path / "cut.gguf", raw[:cut]), needle)


def test_corpus_bad_gguf_files_give_their_reason() -> None:
    refused(str(CORPUS / "malformed/ollama-truncated.gguf"), "truncated", "version")
    refused(str(CORPUS / "malformed/lfs-pointer.gguf"), "LFS pointer", "not downloaded")


def test_corpus_vocab_files_summarise_their_tokenizers() -> None:
    with open_checkpoint(str(CORPUS / "good/gguf/ggml-vocab-aquila.gguf")) as ck:
        assert ck.tensors == []
        tokens = ck.metadata["tokenizer.ggml.tokens"]
        assert tokens["count"] == 100008 and tokens["first"][0] == "<|endoftext|>"
        assert ck.metadata["tokenizer.ggml.merges"]["count"] == 99743
        assert ck.architecture["vocab_size"] == 100008 and ck.architecture["layers"] == 32


def test_opening_reads_headers_only_and_is_fast(tmp_path, monkeypatch) -> None:
    """A 200k-token vocabulary and a sparse 16 GiB tensor: milliseconds, and only the header's bytes read."""
    tokens = b"".join(gstr(f"tok_{i:06d}") for i in range(200_000))
    kvs = [kv_str("general.architecture", "llama"), kv("tokenizer.ggml.tokens", 9, u32(8) + u64(200_000) + tokens),
           kv("tokenizer.ggml.scores", 9, u32(6) + u64(200_000) + np.zeros(200_000, np.float32).tobytes())]
    header = gguf_bytes(kvs, [tinfo("token_embd.weight", (8192, 2**19), Q.F32, 0)])
    path = tmp_path / "big.gguf"
    path.write_bytes(header)
    os.truncate(path, len(header) + 8192 * 2**19 * 4)
    read_bytes = []
    real_read = gguf_format.FileReader.read

    def counting_read(self, offset: int, nbytes: int) -> bytes:
        read_bytes.append(nbytes)
        return real_read(self, offset, nbytes)

    monkeypatch.setattr(gguf_format.FileReader, "read", counting_read)
    started = time.perf_counter()
    with open_checkpoint(str(path)) as ck:
        elapsed = time.perf_counter() - started
        assert ck.element_count == 2**32 and ck.file_bytes == len(header) + 2**34
        assert ck.metadata["tokenizer.ggml.tokens"]["count"] == 200_000
    assert sum(read_bytes) <= 2 * len(header)
    assert elapsed < 1.0, f"opening took {elapsed:.3f} s"
