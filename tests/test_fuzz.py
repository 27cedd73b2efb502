"""Mutation fuzz of valid safetensors and GGUF files the tests write: whatever the damage (truncation, bit
flips, header edits), opening and reading every tensor raises nothing but our own CheckpointError."""

from __future__ import annotations

import json
import struct
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import quantize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from core.commands.info import info_json
from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.formats.detect import sniff
from core.formats.gguf_format import read_header
from tests.test_gguf_format import gguf_bytes, kv, kv_str, kv_u32, random_blocks, tinfo, write_model

Q = GGMLQuantizationType
# random quant blocks decode to NaN/Inf now and then: valid data, not a problem to report
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning",
                                        "ignore:overflow encountered:RuntimeWarning")
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SKIP = {"gguf": 8, "safetensors": 10}  # magic + version; header length + "{" (what sniffing looks at)
INTERESTING_U64 = [0, 1, 2, 3, 4, 5, 9, 13, 31, 32, 255, 2**31, 2**32 - 1, 2**32, 2**60, 2**63 - 1, 2**63,
                   2**64 - 1]


def _seed_gguf(folder: Path) -> bytes:
    """A small but varied GGUF: scalars, strings, short and long arrays, plain, legacy-quant and K-quant tensors."""
    rng = np.random.default_rng(5)

    def setup(w) -> None:
        w.add_block_count(2)
        w.add_embedding_length(32)
        w.add_head_count(4)
        w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        w.add_bool("tokenizer.ggml.add_bos_token", True)
        w.add_array("llama.rope.dimension_sections", [2, 4, 8])
        w.add_token_list([f"t{i}" for i in range(80)])
        w.add_array("tokenizer.ggml.scores", [float(i) for i in range(80)])
        w.add_string("tokenizer.chat_template", "{{ messages }}")

    tensors = {
        "token_embd.weight": (rng.standard_normal((80, 32)).astype(np.float16), None),
        "blk.0.attn_q.weight": (quantize(rng.standard_normal((32, 32)).astype(np.float32), Q.Q8_0), Q.Q8_0),
        "blk.0.ffn_up.weight": (random_blocks(Q.Q4_K, 2, 1), Q.Q4_K),
        "blk.1.attn_k.weight": (quantize(rng.standard_normal((4, 32)).astype(np.float32), Q.Q4_0), Q.Q4_0),
        "blk.1.attn_norm.weight": (np.ones(32, np.float32), None),
        "output.weight": (random_blocks(Q.IQ2_XS, 1, 1), Q.IQ2_XS),
    }
    return Path(write_model(folder / "seed.gguf", tensors, setup)).read_bytes()


def _seed_safetensors(folder: Path) -> bytes:
    rng = np.random.default_rng(6)
    path = folder / "seed.safetensors"
    save_file({"model.embed_tokens.weight": rng.standard_normal((16, 8)).astype(np.float32),
               "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((8, 8)).astype(np.float16),
               "model.layers.0.self_attn.q_proj.bias": np.zeros(8, np.float64),
               "position_ids": np.arange(16, dtype=np.int64), "mask": np.ones(4, np.bool_)},
              str(path), metadata={"format": "pt", "note": "fuzz seed"})
    return path.read_bytes()


@cache
def seeds() -> dict[str, tuple[bytes, int]]:
    """Each format's seed file and where its header ends (mutations mostly land before that)."""
    with tempfile.TemporaryDirectory() as folder:
        gguf_raw = _seed_gguf(Path(folder))
        gguf_end = read_header(str(Path(folder) / "seed.gguf")).data_start
        st_raw = _seed_safetensors(Path(folder))
    return {"gguf": (gguf_raw, gguf_end), "safetensors": (st_raw, 8 + struct.unpack("<Q", st_raw[:8])[0])}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@st.composite
def mutations(draw: st.DrawFn, fmt: str) -> bytes:
    seed, header_end = seeds()[fmt]
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        # mostly inside the header, past the magic number and version (else sniffing refuses it first);
        # sometimes in the header's last third (GGUF tensor infos), sometimes anywhere
        region = draw(st.sampled_from(["header", "header", "header", "tail", "anywhere"]))
        if region == "anywhere":
            low, high = 0, len(data)
        else:
            high = min(header_end, len(data))
            low = min(SKIP[fmt], high - 1) if region == "header" else max(0, high - header_end // 3)
        pos = draw(st.integers(max(0, low), max(0, high - 1)))
        op = draw(st.sampled_from(["flip", "byte", "u64", "u32", "truncate", "insert", "delete"]))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op in ("u64", "u32"):
            width = 8 if op == "u64" else 4
            value = draw(st.sampled_from(INTERESTING_U64) | st.integers(0, 2**64 - 1)) % (1 << (8 * width))
            data[pos : pos + width] = value.to_bytes(width, "little")
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        if not data:
            break
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.sampled_from(
        [0, 1, -1, 2, 7, 8, 64, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), "F32", "F16", "BF16", "I64",
         "Q4_K", "F4", "", "\x00", "__metadata__", 1.5, 1e308]) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


@st.composite
def safetensors_header_edits(draw: st.DrawFn) -> bytes:
    """Structured edits of the JSON header (dtype, shape, offsets, keys), re-serialised; data kept."""
    seed, header_end = seeds()["safetensors"]
    header = json.loads(seed[8:header_end])
    names = sorted(header)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(names))
        action = draw(st.sampled_from(["field", "shape_item", "offset", "drop", "add", "whole"]))
        entry = header.get(name)
        if action == "field" and isinstance(entry, dict):
            entry[draw(st.sampled_from(["dtype", "shape", "data_offsets", "extra"]))] = draw(JSON_VALUES)
        elif action == "shape_item" and isinstance(entry, dict) and isinstance(entry.get("shape"), list) \
                and entry["shape"]:
            entry["shape"][draw(st.integers(0, len(entry["shape"]) - 1))] = draw(JSON_VALUES)
        elif action == "offset" and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list):
            offsets = entry["data_offsets"]
            at = draw(st.integers(0, max(0, len(offsets) - 1)))
            if offsets and type(offsets[at]) is int:
                offsets[at] += draw(st.integers(-64, 64))
        elif action == "drop":
            header.pop(name, None)
        elif action == "add":
            header[draw(st.text(max_size=12))] = draw(JSON_VALUES)
        elif action == "whole":
            header[name] = draw(JSON_VALUES)
    text = json.dumps(header).encode()
    declared = len(text) + draw(st.sampled_from([0] * 8 + [-1, 1, 7]))
    return struct.pack("<Q", max(0, declared)) + text + seed[header_end:]


@st.composite
def gguf_generated(draw: st.DrawFn) -> bytes:
    """GGUF files assembled field by field: any ggml type (and unknown ones), odd shapes, offsets, alignments."""
    alignment = draw(st.sampled_from([None, None, None, 1, 8, 32, 64, 0, 13, 2**31]))
    align = alignment if alignment and alignment & (alignment - 1) == 0 else 32
    kvs = [kv_str("general.architecture", draw(st.sampled_from(["llama", "", "x" * 300, "qwen2"])))]
    if alignment is not None:
        vtype, fmt = draw(st.sampled_from([(4, "<I"), (4, "<I"), (4, "<I"), (10, "<Q"), (5, "<q")]))
        kvs.append(kv(b"general.alignment", vtype, struct.pack(fmt, alignment)[: 4 if vtype != 10 else 8]))
    if draw(st.booleans()):
        kvs.append(kv_u32("llama.block_count", draw(st.sampled_from([0, 1, 2**32 - 1]))))
    infos, offset = [], 0
    type_ids = st.sampled_from([int(q) for q in GGML_QUANT_SIZES]) | st.integers(0, 45)
    for i in range(draw(st.integers(0, 3))):
        type_id = draw(type_ids)
        block = GGML_QUANT_SIZES[Q(type_id)][0] if type_id in {int(q) for q in GGML_QUANT_SIZES} else 1
        good = st.sampled_from([1, 2, 3, block, 2 * block])
        ne = draw(st.lists(good, min_size=0, max_size=4) | st.lists(good | st.sampled_from([block + 1, 0, -1]),
                                                                    min_size=0, max_size=5))
        elements = int(np.prod(ne)) if ne else 1
        size = elements // block * GGML_QUANT_SIZES[Q(type_id)][1] if block > 1 or type_id in {
            int(q) for q in GGML_QUANT_SIZES} else elements
        at = offset + draw(st.sampled_from([0, 0, 0, align, -align, 1]))
        infos.append(tinfo(draw(st.sampled_from([f"blk.{i}.w"] * 4 + ["blk.0.w", ""])), tuple(ne), type_id, max(0, at)))
        offset = max(0, at) + max(0, size) + (-max(0, size) % align)
    data_len = min(1 << 16, max(0, offset + draw(st.sampled_from([0, 0, 0, -1, -align, 1]))))
    data = draw(st.binary(min_size=min(data_len, 64), max_size=min(data_len, 64))) + b"\x11" * max(0, data_len - 64)
    return gguf_bytes(kvs, infos, data, alignment=min(align, 64))  # 2**31 stays in the header, not on disk


def _open_and_read_everything(path: Path, fmt: str) -> None:
    """Only CheckpointError may escape; a file that opens must read every tensor and describe itself."""
    try:
        if sniff(str(path)) != fmt:  # the magic was hit: another reader's business, not this fuzz's
            return
        with open_checkpoint(str(path)) as ck:
            json.dumps(info_json(ck), default=str)
            for t in ck.tensors:
                values = ck.read(t)
                assert values.size == t.elements
    except CheckpointError as exc:
        assert str(exc) and "\n" not in str(exc)


@pytest.mark.parametrize("fmt", ["gguf", "safetensors"])
def test_seeds_are_valid(fmt: str, work: Path) -> None:
    path = work / f"seed.{fmt}"
    path.write_bytes(seeds()[fmt][0])
    with open_checkpoint(str(path)) as ck:
        assert len(ck.tensors) == (6 if fmt == "gguf" else 5)
        for t in ck.tensors:
            assert ck.read(t).size == t.elements


@FUZZ
@given(raw=mutations("gguf"))
def test_fuzz_gguf(work: Path, raw: bytes) -> None:
    path = work / "fuzz.gguf"
    path.write_bytes(raw)
    _open_and_read_everything(path, "gguf")


@FUZZ
@given(raw=mutations("safetensors"))
def test_fuzz_safetensors(work: Path, raw: bytes) -> None:
    path = work / "fuzz.safetensors"
    path.write_bytes(raw)
    _open_and_read_everything(path, "safetensors")


@FUZZ
@given(raw=safetensors_header_edits())
def test_fuzz_safetensors_header_fields(work: Path, raw: bytes) -> None:
    path = work / "fields.safetensors"
    path.write_bytes(raw)
    _open_and_read_everything(path, "safetensors")


@FUZZ
@given(raw=gguf_generated())
def test_fuzz_generated_gguf(work: Path, raw: bytes) -> None:
    path = work / "generated.gguf"
    path.write_bytes(raw)
    _open_and_read_everything(path, "gguf")


@pytest.mark.parametrize("fmt", ["gguf", "safetensors"])
def test_every_truncation_is_refused(fmt: str, work: Path) -> None:
    raw, header_end = seeds()[fmt]
    path = work / f"cut.{fmt}"
    # every byte of the fixed fields and of the tail of the header (GGUF tensor infos), a sample elsewhere
    cuts = {*range(128), *range(max(0, header_end - 512), header_end + 1), *range(0, header_end, 11),
            *range(header_end + 1, len(raw), 97)}
    for cut in sorted(cuts):
        path.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError):
            open_checkpoint(str(path)).close()
