"""The statistics cache can only save time, never change a result: replaced files, planted or inconsistent
entries, foreign files in a shared cache folder and unsafe folders (see core/stats_cache.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import core.stats_cache as sc
from core.formats import open_checkpoint
from core.stats import run, stats_to_json
from tests.conftest import cached_models

pytestmark = pytest.mark.usefixtures("cache_dir")


def _json(result) -> dict:
    return {name: stats_to_json(result.stats(name)) for name in sorted(result.summaries)}


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in (cache_dir / sc.SUBDIR).glob("*.npz") if sc.ENTRY_NAME.fullmatch(p.name))


def _write_pair(tmp_path: Path) -> tuple[Path, dict, dict]:
    """File A and values for a file B of the same size that differs only inside tensor "w" (586 NaN)."""
    rng = np.random.default_rng(0)
    a = {"w": rng.normal(size=(100, 100)).astype(np.float32), "b": np.arange(64, dtype=np.float32)}
    b = {"w": a["w"].copy(), "b": a["b"].copy()}
    b["w"].ravel()[rng.choice(10_000, 586, replace=False)] = np.nan
    path = tmp_path / "m.safetensors"
    save_file(a, str(path))
    return path, a, b


def test_replaced_file_with_same_size_and_mtime_is_a_miss(tmp_path: Path) -> None:
    path, _a, b = _write_pair(tmp_path)
    before = os.stat(path)
    first = run(path, device="cpu")
    assert first.stats("w").nan == 0
    assert run(path, device="cpu").device == "cache"
    save_file(b, str(path))  # `cp -p` / `rsync -t`: same size, same mtime
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns
    again = run(path, device="cpu")
    assert again.bytes_read > 0
    assert _json(again) == _json(run(path, device="cpu", use_cache=False))
    assert again.stats("w").nan == 586


def test_fingerprint_alone_catches_a_change_when_every_stat_field_matches(tmp_path: Path, monkeypatch) -> None:
    path, _a, b = _write_pair(tmp_path)
    size = path.stat().st_size  # device, inode, mtime and ctime faked equal across the rewrite
    monkeypatch.setattr(sc, "stat_identity", lambda p: (os.path.realpath(p), 1, 2, size, 3, 4))
    run(path, device="cpu")
    assert run(path, device="cpu").device == "cache"
    save_file(b, str(path))
    again = run(path, device="cpu")
    assert again.bytes_read > 0 and again.stats("w").nan == 586


def test_fingerprint_samples_each_tensor_and_stays_bounded(tmp_path: Path) -> None:
    path, _a, _b = _write_pair(tmp_path)
    tensors = open_checkpoint(str(path)).tensors
    original = sc.file_fingerprint(str(path), tensors)
    assert original == sc.file_fingerprint(str(path), tensors)
    w = next(t for t in tensors if t.name == "w")
    data = bytearray(path.read_bytes())
    for where in (w.offset, w.offset + w.nbytes // 2, w.offset + w.nbytes - 4):  # first, middle, last block
        changed = bytearray(data)
        changed[where: where + 4] = np.array([np.nan], np.float32).tobytes()
        path.write_bytes(bytes(changed))
        assert sc.file_fingerprint(str(path), tensors) != original, where
    path.write_bytes(bytes(data))
    assert sc.file_fingerprint(str(path), tensors) == original
    # a huge sparse file with many tensors: the samples stay within the bound
    many = [w.__class__(f"t{i}", (1 << 20,), "F32", 1 << 20, 4 << 20, str(path), i * (4 << 20)) for i in range(2000)]
    ranges = sc.sample_ranges(2000 * (4 << 20), many)
    assert sum(hi - lo for lo, hi in ranges) <= sc.MAX_SAMPLED
    assert all(lo < hi for lo, hi in ranges) and ranges == sorted(ranges)


def test_one_entry_per_checkpoint_for_thousands_of_tensors(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "many.safetensors"
    save_file({f"t{i}": np.array([i], np.float32) for i in range(3000)}, str(path))
    first = run(path, device="cpu")
    assert len(_entries(cache_dir)) == 1
    second = run(path, device="cpu")
    assert second.device == "cache" and second.bytes_read == 0
    assert second.stats("t2999").max == 2999.0 == first.stats("t2999").max


def test_pruning_keeps_foreign_files_and_counts_allocated_blocks(tmp_path: Path, cache_dir: Path) -> None:
    foreign = {cache_dir / "other-app.db": None, cache_dir / "huge.sparse": 8 << 30,
               cache_dir / sc.SUBDIR / "notes.txt": None, cache_dir / sc.SUBDIR / ("a" * 63 + ".npz"): None,
               cache_dir / "sub" / ("b" * 64 + ".npz"): 1 << 30}
    cached_models(tmp_path)
    for f, size in foreign.items():
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"not ours")
        if size:
            os.truncate(f, size)  # sparse: huge apparent size, a few bytes allocated
    ours = _entries(cache_dir)
    assert len(ours) == 3
    for age, entry in enumerate(ours):
        os.utime(entry, ns=(10**18, 10**18 + age))
    keep = ours[-1].stat().st_blocks * 512
    sc.StatsCache(str(cache_dir)).prune(max_bytes=keep, once=False)
    assert [p.exists() for p in ours] == [False, False, True]  # the sparse foreign files did not count
    assert all(f.exists() for f in foreign), [f for f in foreign if not f.exists()]
    sc.StatsCache(str(cache_dir)).prune(max_bytes=0, once=False)
    sc.StatsCache(str(cache_dir)).clear()
    assert not _entries(cache_dir) and all(f.exists() for f in foreign)
    assert (cache_dir / sc.SUBDIR / sc.MARKER).exists()


def test_folder_and_key_are_private(tmp_path: Path, cache_dir: Path) -> None:
    path, _a, _b = _write_pair(tmp_path)
    run(path)
    folder = cache_dir / sc.SUBDIR
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / sc.KEY_FILE).stat().st_mode) == 0o600
    assert len((folder / sc.KEY_FILE).read_bytes()) == 32


@pytest.mark.parametrize("problem", ["others_write", "symlink", "not_owner", "open_key"])
def test_unsafe_folder_is_refused_and_results_stay_right(tmp_path: Path, cache_dir: Path, problem: str) -> None:
    path, _a, _b = _write_pair(tmp_path)
    folder = cache_dir / sc.SUBDIR
    if problem == "others_write":
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o777)
    elif problem == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    elif problem == "not_owner":
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)
    else:
        folder.mkdir(mode=0o700)
        (folder / sc.KEY_FILE).write_bytes(os.urandom(32))
        os.chmod(folder / sc.KEY_FILE, 0o644)
    assert not sc.StatsCache(str(cache_dir)).usable
    truth = _json(run(path, use_cache=False))
    for _ in range(2):
        result = run(path)
        assert result.bytes_read > 0 and _json(result) == truth  # never used, never a crash
    assert not list(folder.glob("*.npz"))  # nothing written there (through a link: nothing written elsewhere)


def _rewrite(entry: Path, edit, key: bytes | None) -> None:
    """Change an entry's arrays; re-sign with ``key`` (a bug writing a bad figure) or not (a forgery)."""
    with np.load(entry, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    edit(arrays)
    if key is not None:
        arrays["mac"] = np.frombuffer(sc._mac(arrays, key), np.uint8)
    with open(entry, "wb") as f:
        np.savez(f, **arrays)


def _set_float(i: int, value: float):
    def edit(arrays: dict) -> None:
        arrays["floats"] = arrays["floats"].copy()
        arrays["floats"][:, i] = value
    return edit


def _set_int(i: int, value: int):
    def edit(arrays: dict) -> None:
        arrays["ints"] = arrays["ints"].copy()
        arrays["ints"][:, i] = value
    return edit


def _shuffle_top(arrays: dict) -> None:
    arrays["top"] = arrays["top"][::-1].copy()


def _more_keys(arrays: dict) -> None:
    arrays["cnt"] = arrays["cnt"] * 2


EDITS = {"mean_beyond_max": _set_float(0, 1e6), "huge_spread": _set_float(1, 1e30), "min_above_max": _set_float(4, 9e9),
         "negative_m2": _set_float(1, -5.0), "nan_count": _set_int(3, 7), "zeros_above_count": _set_int(2, 10**9),
         "extremes_unsorted": _shuffle_top, "key_counts": _more_keys,
         "version": lambda a: a.update(version=np.array(99, np.int64)),
         "missing_array": lambda a: a.pop("floats")}


@pytest.mark.parametrize("signed", [False, True], ids=["forged", "resigned"])
@pytest.mark.parametrize("edit", list(EDITS))
def test_planted_entries_are_never_served(tmp_path: Path, cache_dir: Path, edit: str, signed: bool) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"w": np.random.default_rng(1).normal(size=3000).astype(np.float32)}, str(path))
    truth = _json(run(path))
    entry, = _entries(cache_dir)
    key = (cache_dir / sc.SUBDIR / sc.KEY_FILE).read_bytes() if signed else None
    _rewrite(entry, EDITS[edit], key)
    again = run(path)
    assert again.bytes_read > 0, "a planted entry was served"
    assert _json(again) == truth


def test_resigned_untouched_entry_is_served(tmp_path: Path, cache_dir: Path) -> None:
    """The control for the test above: re-signing alone keeps an entry valid, so the edits are what fail."""
    path = tmp_path / "m.safetensors"
    save_file({"w": np.random.default_rng(1).normal(size=3000).astype(np.float32)}, str(path))
    truth = _json(run(path))
    entry, = _entries(cache_dir)
    _rewrite(entry, lambda a: None, (cache_dir / sc.SUBDIR / sc.KEY_FILE).read_bytes())
    again = run(path)
    assert again.bytes_read == 0 and _json(again) == truth


def test_many_shards_are_grouped_by_file_once(tmp_path: Path, cache_dir: Path) -> None:
    """Each shard's fingerprint samples its own tensors; finding them must not rescan the whole list per shard
    (60,000 shards made that 3.6 billion comparisons)."""
    import json

    weight_map = {}
    for i in range(300):
        name = f"model-{i:05d}.safetensors"
        save_file({f"t{i}.a": np.full(2, i, dtype=np.float32), f"t{i}.b": np.ones(1, dtype=np.float32)},
                  str(tmp_path / name))
        weight_map.update({f"t{i}.a": name, f"t{i}.b": name})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open_checkpoint(str(tmp_path)) as ck:
        fresh = _json(run(ck, use_cache=False))
        cache = sc.StatsCache(str(cache_dir))
        t = ck.tensor("t7.a")
        assert [x.name for x in cache._tensors_of_file(t, ck.tensors)] == ["t7.a", "t7.b"]
        groups = cache._grouped
        cache._tensors_of_file(ck.tensor("t8.b"), ck.tensors)
        assert cache._grouped is groups and len(groups[1]) == 300  # grouped once, every shard
        assert _json(run(ck)) == fresh  # cold cache
        assert _json(run(ck)) == fresh  # warm cache


def test_small_data_files_are_neither_looked_up_nor_written(tmp_path: Path, cache_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Under MIN_CACHED_BYTES a file is quicker to read again than to look up: no entry is written, and the
    statistics are the same on the second run; at the threshold the file is cached."""
    monkeypatch.setattr(sc, "MIN_CACHED_BYTES", 1 << 20)
    small, large = tmp_path / "small.safetensors", tmp_path / "large.safetensors"
    values = np.random.default_rng(5).standard_normal(1 << 18).astype(np.float32)  # exactly 1 MiB
    save_file({"w": values[:1000]}, str(small))
    save_file({"w": values}, str(large))
    first = run(small)
    assert not list(cache_dir.rglob("*.npz"))
    second = run(small)
    assert second.bytes_read == first.bytes_read == 4000
    assert second.stats("w").mean == first.stats("w").mean
    run(large)
    assert len(list(cache_dir.rglob("*.npz"))) == 1
    assert run(large).bytes_read == 0
