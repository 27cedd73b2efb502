"""GGUF metadata that is huge on disk but cheap to fake (sparse files): shown in part, skipped unread.

Before, a 1.5 GB string or array was read whole (3 GB of memory for `info`) and 200 million empty strings
were walked one by one for minutes. The files here are sparse: gigabytes long, a few kilobytes on disk.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from core.errors import MalformedFileError
from core.formats import open_checkpoint
from core.formats.gguf_format import HEAD_ITEMS, MAX_NAME_BYTES, MAX_STRING_BYTES, MAX_STRING_ITEMS
from tests.corpus import CORPUS

REPO = Path(__file__).resolve().parents[1]
HUGE = 1_500_000_000
STRING, ARRAY, UINT8, UINT32, F32 = 8, 9, 0, 4, 0


def gstr(raw: bytes) -> bytes:
    return struct.pack("<Q", len(raw)) + raw


def write_gguf(path: Path, kv_head: bytes, hole: int, kv_tail: bytes = b"", n_kv: int = 1) -> np.ndarray:
    """A GGUF file: preamble, ``kv_head``, ``hole`` zero bytes left unwritten (sparse), ``kv_tail``,
    then one F32 tensor 'w' of 8 values; returns the values."""
    values = np.arange(8, dtype=np.float32) * 1.5
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 1, n_kv) + kv_head)
        f.seek(hole, os.SEEK_CUR)
        f.write(kv_tail + gstr(b"w") + struct.pack("<I", 1) + struct.pack("<q", 8) + struct.pack("<IQ", F32, 0))
        data_start = -(-f.tell() // 32) * 32
        f.seek(data_start)
        f.write(values.tobytes())
    return values


# A small interpreter starts the command and reports that child's own peak RSS: forking pytest itself would
# charge the child with pytest's memory (hundreds of MB late in a full run) before it execs.
_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read().decode()
_, status, usage = os.wait4(proc.pid, 0)
sys.stderr.write(err)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss // (1 << 20 if sys.platform == "darwin" else 1 << 10))
"""


def peak_rss_mb(*argv: str, cache: Path) -> tuple[int, int, str]:
    """(exit status, peak RSS in MB, stderr) of one CLI run, measured for that child alone."""
    env = dict(os.environ, WEIGHTSCOPE_CACHE_DIR=str(cache), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, str(REPO / "main.py"), *argv],
                          capture_output=True, text=True, env=env, timeout=300)
    status, rss = (int(x) for x in proc.stdout.split())
    return status, rss, proc.stderr


def test_huge_string_value_is_cut_and_the_rest_skipped_unread(tmp_path: Path) -> None:
    path = tmp_path / "big-string.gguf"
    values = write_gguf(path, gstr(b"general.name") + struct.pack("<I", STRING) + struct.pack("<Q", HUGE), HUGE)
    assert path.stat().st_size > HUGE and path.stat().st_blocks * 512 < 1 << 20  # sparse
    started = time.monotonic()
    with open_checkpoint(str(path)) as checkpoint:
        assert time.monotonic() - started < 10
        name = checkpoint.metadata["general.name"]
        assert name == "\x00" * MAX_STRING_BYTES + f"... [{HUGE:,} bytes in all]"
        assert checkpoint.read_tensor("w").tolist() == values.tolist()  # found past the skipped bytes
    status, rss, err = peak_rss_mb("info", str(path), "--json", cache=tmp_path / "cache")
    assert (status, err) == (0, "")
    assert rss < 500, f"peak RSS {rss} MB"  # it was ~2,900 MB when the string was read whole


def test_huge_fixed_size_array_is_summarised_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big-array.gguf"
    head = gstr(b"big.bytes") + struct.pack("<IIQ", ARRAY, UINT8, HUGE)
    values = write_gguf(path, head, HUGE)
    with open_checkpoint(str(path)) as checkpoint:
        summary = checkpoint.metadata["big.bytes"]
        assert summary == {"summary": f"[array of {HUGE:,} uint8]", "type": "uint8", "count": HUGE,
                           "first": [0] * HEAD_ITEMS}
        assert checkpoint.read_tensor("w").tolist() == values.tolist()
    status, rss, err = peak_rss_mb("stats", str(path), cache=tmp_path / "cache")
    assert (status, err) == (0, "")
    assert rss < 1000, f"peak RSS {rss} MB"


def test_200_million_empty_strings_are_refused_at_once(tmp_path: Path) -> None:
    count = 200_000_000
    path = tmp_path / "empty-strings.gguf"
    write_gguf(path, gstr(b"tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, count), 8 * count)
    started = time.monotonic()
    with pytest.raises(MalformedFileError, match=f"holds {count:,} strings, more than the {MAX_STRING_ITEMS:,}"):
        open_checkpoint(str(path))
    assert time.monotonic() - started < 5  # the walk took over a minute


def test_string_array_just_past_the_cap_is_refused_and_at_the_cap_is_walked(tmp_path: Path) -> None:
    too_many = tmp_path / "too-many.gguf"
    write_gguf(too_many, gstr(b"a") + struct.pack("<IIQ", ARRAY, STRING, MAX_STRING_ITEMS + 1),
               8 * (MAX_STRING_ITEMS + 1))
    with pytest.raises(MalformedFileError, match="more than the"):
        open_checkpoint(str(too_many))
    walked = tmp_path / "walked.gguf"
    count = 300_000  # a large real vocabulary, items of varying length
    tokens = [f"tok{i}".encode() * (1 + i % 3) for i in range(count)]
    body = struct.pack("<IIQ", ARRAY, STRING, count) + b"".join(gstr(t) for t in tokens)
    values = write_gguf(walked, gstr(b"tokenizer.ggml.tokens") + body, 0)
    with open_checkpoint(str(walked)) as checkpoint:
        summary = checkpoint.metadata["tokenizer.ggml.tokens"]
        assert summary["count"] == count
        assert summary["first"] == [t.decode() for t in tokens[:HEAD_ITEMS]]
        assert checkpoint.read_tensor("w").tolist() == values.tolist()


def test_long_string_inside_an_array_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "long-item.gguf"
    long_item = b"x" * (MAX_STRING_BYTES + 10)
    write_gguf(path, gstr(b"list") + struct.pack("<IIQ", ARRAY, STRING, 2) + gstr(long_item) + gstr(b"y"), 0)
    with open_checkpoint(str(path)) as checkpoint:
        assert checkpoint.metadata["list"] == ["x" * MAX_STRING_BYTES, "y"]


def test_key_longer_than_the_name_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "long-key.gguf"
    write_gguf(path, struct.pack("<Q", HUGE), HUGE)
    with pytest.raises(MalformedFileError, match=f"metadata key 1 is {HUGE:,} bytes long .*{MAX_NAME_BYTES:,}"):
        open_checkpoint(str(path))


def test_truncated_inside_a_skipped_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + gstr(b"big") + struct.pack("<IIQ", ARRAY, UINT32, 1000)
                     + b"\x00" * 4000)
    with pytest.raises(MalformedFileError, match="truncated GGUF file"):
        open_checkpoint(str(path))


@pytest.mark.parametrize("name", sorted(p.name for p in (CORPUS / "good" / "gguf").glob("ggml-vocab-*.gguf")))
def test_real_vocabularies_match_the_gguf_package(name: str) -> None:
    path = CORPUS / "good" / "gguf" / name
    reference = GGUFReader(str(path))
    with open_checkpoint(str(path)) as checkpoint:
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                    "tokenizer.ggml.merges"):
            if key not in reference.fields:
                continue
            field = reference.fields[key]
            expected = [field.contents(i) for i in range(min(HEAD_ITEMS, len(field.data)))]
            ours = checkpoint.metadata[key]
            assert ours["count"] == len(field.data), key
            first = ours["first"]
            if isinstance(expected[0], float):
                assert first == pytest.approx(expected), key
            else:
                assert first == expected, key
