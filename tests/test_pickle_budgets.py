"""Small pickles that would unpack into huge work: hash-colliding dict keys, copies of a memoised list, and a DAG
of shared lists with half a million paths to one tensor. Each must open or be refused within a couple of seconds."""

from __future__ import annotations

import io
import pickletools
import time
import zipfile
from pathlib import Path

import pytest
import torch

from core.errors import MalformedFileError
from core.formats import open_checkpoint
from core.formats.pickle_vm import ByteSource, run_pickle

MODULUS = 2**61 - 1  # CPython hashes an integer modulo this prime: its multiples all hash to 0


def torch_zip_pickle(tensor: torch.Tensor) -> tuple[bytes, dict[str, bytes], int]:
    """torch.save({"w": tensor})'s data.pkl, its other members, and the memo index of the tensor."""
    buf = io.BytesIO()
    torch.save({"w": tensor}, buf)
    zf = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    members = {n: zf.read(n) for n in zf.namelist()}
    pkl = next(v for n, v in members.items() if n.endswith("data.pkl"))
    ops = list(pickletools.genops(pkl))
    reduces = [i for i, (op, _arg, _pos) in enumerate(ops) if op.name == "REDUCE"]
    put = ops[reduces[-1] + 1]
    assert put[0].name == "BINPUT"
    return pkl, members, put[1]


def write_zip(path: Path, members: dict[str, bytes], pkl: bytes) -> str:
    with zipfile.ZipFile(path, "w") as out:
        for name, data in members.items():
            out.writestr(name, pkl if name.endswith("data.pkl") else data)
    return str(path)


def long1(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def extended(tmp_path: Path, extra_items: bytes) -> str:
    """The torch.save zip of {"w": ones(4)} with more (key, value) pickle items added to its top dict."""
    pkl, members, _ = torch_zip_pickle(torch.ones(4))
    assert pkl.endswith(b".")
    return write_zip(tmp_path / "x.pt", members, pkl[:-1] + b"(" + extra_items + b"u.")


def test_hash_colliding_integer_keys_are_refused_fast(tmp_path: Path) -> None:
    keys = [k * MODULUS for k in range(1, 100_001)]
    assert {hash(k) for k in keys[:1000]} == {0}
    items = b"Vd\n}(" + b"".join(long1(k) + b"N" for k in keys) + b"u"
    path = extended(tmp_path, items)
    assert 1_000_000 < Path(path).stat().st_size < 2_000_000
    start = time.perf_counter()
    with pytest.raises(MalformedFileError, match="hash-collision attack"):
        open_checkpoint(path)
    assert time.perf_counter() - start < 2


def test_many_integer_keys_with_distinct_hashes_still_open(tmp_path: Path) -> None:
    # an optimizer's state: one integer key per parameter
    items = b"Vstate\n}(" + b"".join(long1(k) + long1(k * 3) for k in range(50_000)) + b"u"
    with open_checkpoint(extended(tmp_path, items)) as ck:
        assert [t.name for t in ck.tensors] == ["w"]
        assert ck.metadata["state"]["7"] == 21 and ck.metadata["state"]["..."] == "49,936 more entries"


def test_memo_index_chosen_to_collide_is_refused() -> None:
    with pytest.raises(MalformedFileError, match="memo index"):
        run_pickle(ByteSource.from_bytes(b"N" + b"".join(b"p%d\n" % (k * MODULUS) for k in range(1, 5)) + b"."))


@pytest.mark.parametrize("constructor", [b"cbuiltins\nlist\n", b"ccollections\nOrderedDict\n"])
def test_copies_of_a_memoised_container_are_charged_to_the_budget(tmp_path: Path, constructor: bytes) -> None:
    # one list of 250,000 items (pairs, so OrderedDict accepts it too), copied 300 times by an allowed constructor
    n = 250_000
    pair = b"K\x01K\x02\x86q\x01"
    items = b"Vbomb\n]q\x02(" + pair + b"h\x01" * (n - 1) + b"e0" + constructor + b"q\x030"
    items += b"]q\x04(" + b"h\x03h\x02\x85R" * 300 + b"e"
    path = extended(tmp_path, items)
    assert Path(path).stat().st_size < 1_200_000
    start = time.perf_counter()
    with pytest.raises(MalformedFileError, match=r"expands beyond 10,000,000 copied elements"):
        open_checkpoint(path)
    assert time.perf_counter() - start < 5


def test_a_few_copies_still_open(tmp_path: Path) -> None:
    items = b"Vcopies\n]q\x05(K\x01K\x02e0cbuiltins\nlist\nq\x060(h\x06h\x05\x85Rh\x06h\x05\x85Rl"
    with open_checkpoint(extended(tmp_path, items)) as ck:
        assert ck.metadata["copies"] == [[1, 2], [1, 2]]


def dag_pickle(levels: int) -> tuple[bytes, dict[str, bytes]]:
    """{"w": t, "dag": L} where L0 = [t] and L(i+1) = [Li, Li]: 2**levels paths from "dag" to t."""
    pkl, members, tensor_memo = torch_zip_pickle(torch.arange(4.0))
    body = b"Vdag\n]q\xa0h" + bytes([tensor_memo]) + b"a"
    for i in range(levels):
        prev, new = 0xA0 + i, 0xA1 + i
        body += b"0](h" + bytes([prev]) + b"h" + bytes([prev]) + b"eq" + bytes([new])
    return pkl[:-1] + b"(" + body + b"u.", members


def test_dag_of_shared_lists_lists_the_tensor_once_with_its_aliases(tmp_path: Path) -> None:
    pkl, members = dag_pickle(19)
    path = write_zip(tmp_path / "dag.pt", members, pkl)
    assert Path(path).stat().st_size < 5_000
    start = time.perf_counter()
    with open_checkpoint(path) as ck:
        assert time.perf_counter() - start < 2
        assert [t.name for t in ck.tensors] == ["w"]
        assert ck.element_count == 4
        assert ck.read_tensor("w").tolist() == [0.0, 1.0, 2.0, 3.0]
        alias = "dag" + ".0" * 20
        assert ck.warnings == [f"tensor 'w' is also reachable as {alias!r} (524,288 aliases); "
                               "it is listed and counted once"]


def test_same_tensor_under_two_keys_is_listed_under_both_with_a_warning(tmp_path: Path) -> None:
    t = torch.arange(3.0)
    path = tmp_path / "tied.pt"
    torch.save({"embed.weight": t, "lm_head.weight": t}, str(path))
    with open_checkpoint(str(path)) as ck:
        assert [x.name for x in ck.tensors] == ["embed.weight", "lm_head.weight"]
        assert ck.warnings == ["tensor 'embed.weight' is also reachable as 'lm_head.weight' (1 aliases); listed under "
                               "its first 2 names"]


def test_a_big_list_referenced_many_times_is_searched_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[L, L, ... 300 times] with L a memoised list of 200,000 items: references, not copies; searching it for
    tensors must cost one pass over L, not 300 (listing its children on every reference took 20 s)."""
    from core.formats import pytorch_format

    n = 200_000
    items = b"Vrefs\n]q\x07" + b"(" + b"K\x01" * n + b"e0](" + b"h\x07" * 300 + b"e"
    listed = 0
    children = pytorch_format._children

    def counting(obj: object) -> object:
        nonlocal listed
        out = children(obj)
        listed += len(out or ())
        return out

    monkeypatch.setattr(pytorch_format, "_children", counting)
    with open_checkpoint(extended(tmp_path, items)) as ck:
        assert [t.name for t in ck.tensors] == ["w"]
        assert ck.metadata["refs"][0][:3] == [1, 1, 1]
    assert listed < n  # the tensor-free list is searched lazily, once, and never listed
