"""The comparison cache: a cached figure is the fresh figure; a changed file, a corrupt or forged entry is a miss."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import main
from core.diff import run
from core.diff_cache import DiffCache
from core.stats_cache import _mac


def write_pair(tmp_path: Path, seed: int = 5) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    a = {"w": rng.normal(size=(30, 12)).astype(np.float32), "v": rng.normal(size=5).astype(np.float32)}
    b = {"w": a["w"] + rng.normal(scale=0.1, size=(30, 12)).astype(np.float32), "v": a["v"]}
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(a, str(pa))
    save_file(b, str(pb))
    return pa, pb


def figures(result) -> dict:
    return {name: (asdict(td.sums), td.top_singular_values, td.rank90, td.rank_note)
            for name, td in result.tensors.items()}


@pytest.fixture
def cache(tmp_path: Path) -> DiffCache:
    return DiffCache(str(tmp_path / "cache"))


def entries(cache: DiffCache) -> list[str]:
    return sorted(n for n in os.listdir(cache.folder) if n.endswith(".npz"))


def test_a_cached_result_equals_a_fresh_one(tmp_path: Path, cache: DiffCache) -> None:
    pa, pb = write_pair(tmp_path)
    fresh = run(pa, pb, rank=True, device="cpu", cache=cache)
    assert not fresh.cached and len(entries(cache)) == 1
    again = run(pa, pb, rank=True, device="cpu", cache=cache)
    assert again.cached and again.bytes_read == 0
    assert figures(again) == figures(fresh) == figures(run(pa, pb, rank=True, device="cpu"))
    assert list(again.tensors) == list(fresh.tensors)
    plain = run(pa, pb, cache=cache)  # the rank flag is part of the key
    assert not plain.cached and plain.tensors["w"].rank90 is None
    assert not run(pa, pb, ["w"], cache=cache).cached  # so is the selection
    assert not run(pb, pa, cache=cache).cached  # and which model is A
    assert len(entries(cache)) == 4
    assert not any(p.name != "cache" and p.suffix not in (".safetensors",) for p in tmp_path.iterdir())


def test_a_file_rewritten_with_the_same_size_and_mtime_is_not_served(tmp_path: Path, cache: DiffCache) -> None:
    pa, pb = write_pair(tmp_path)
    before = run(pa, pb, cache=cache)
    st = os.stat(pb)
    data = bytearray(pb.read_bytes())
    data[-8:] = np.array([1.5, -2.25], np.float32).tobytes()  # the last two values of "w" (the file's tail)
    pb.write_bytes(bytes(data))
    os.utime(pb, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(pb).st_size == st.st_size and os.stat(pb).st_mtime_ns == st.st_mtime_ns
    after = run(pa, pb, cache=cache)
    assert not after.cached
    assert after.tensors["w"].sums.ss_d != before.tensors["w"].sums.ss_d
    assert figures(after) == figures(run(pa, pb))  # what was read now, not the old numbers
    assert run(pa, pb, cache=cache).cached  # and the new result is what the cache serves next


def test_the_key_sees_content_even_when_all_stat_fields_match(tmp_path: Path, cache: DiffCache,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """ctime cannot be forced back: pretend every stat field stayed, so only the fingerprint can tell."""
    import core.diff_cache

    pa, pb = write_pair(tmp_path)
    frozen = {str(p): core.diff_cache.stat_identity(str(p)) for p in (pa, pb)}
    monkeypatch.setattr(core.diff_cache, "stat_identity", lambda path: frozen[os.path.realpath(path)])
    run(pa, pb, cache=cache)
    data = bytearray(pb.read_bytes())
    data[-4:] = np.array([7.0], np.float32).tobytes()
    pb.write_bytes(bytes(data))
    assert not run(pa, pb, cache=cache).cached


@pytest.mark.parametrize("damage", ["garbage", "truncated", "forged", "other pairs"])
def test_corrupt_entries_are_ignored(tmp_path: Path, cache: DiffCache, damage: str) -> None:
    pa, pb = write_pair(tmp_path)
    fresh = run(pa, pb, cache=cache)
    (name,) = entries(cache)
    path = Path(cache.folder) / name
    if damage == "garbage":
        path.write_bytes(b"PK\x03\x04 not a zip at all" * 10)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        rows = json.loads(arrays["payload"].tobytes())
        if damage == "forged":  # a changed figure without our key's signature
            rows[0]["ss_d"] = 123.0
        else:  # signed with our key, but naming a pair these models do not have
            rows[0]["a"] = "not.here"
        arrays["payload"] = np.frombuffer(json.dumps(rows).encode(), np.uint8)
        if damage == "other pairs":
            arrays["mac"] = np.frombuffer(_mac(arrays, cache._key), np.uint8)
        np.savez(path, **arrays)
    again = run(pa, pb, cache=cache)
    assert not again.cached and figures(again) == figures(fresh)


def test_cli_uses_the_cache_and_no_cache_bypasses_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path / "user-cache"))
    pa, pb = write_pair(tmp_path)
    docs = []
    for extra in ([], [], ["--no-cache"]):
        assert main.main(["diff", str(pa), str(pb), "--json", *extra]) == 0
        docs.append(json.loads(capsys.readouterr().out))
    assert [d["cached"] for d in docs] == [False, True, False]
    for d in docs:
        d.pop("cached"), d.pop("seconds"), d.pop("bytes_read")
    assert docs[0] == docs[1] == docs[2]
    assert main.main(["diff", str(pa), str(pb)]) == 0
    assert "from the cache" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors", "user-cache"]
