"""A pickle interpreter of our own: it decodes opcodes and builds inert records, and calls nothing from the file.

``pickle.load`` (and torch's weights-only unpickler) import and call whatever
the stream names. Here every global goes through ``pytorch_globals``, whose
allow-list turns the few a checkpoint needs into inert records and refuses the
rest. The decoder is bounded: every length is checked against the bytes left
before reading, and the opcode count, memo size, mark depth, line length and
integer size are capped.
"""

from __future__ import annotations

import codecs
import struct
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections.abc import Callable
from typing import Any

from core.errors import CheckpointError, MalformedFileError, UnsafeFileError
from core.formats.pytorch_globals import (
    Budget,
    CallRecord,
    Global,
    Placeholder,
    SetRecord,
    build,
    call,
    check_key,
    refusal_reason,
    resolve_global,
    type_name,
)

MAX_OPS = 10_000_000
MAX_MEMO = 2_000_000
MAX_MARK_DEPTH = 10_000
MAX_LINE = 65_536
MAX_LONG_BYTES = 1024
MAX_MEMO_INDEX = 1 << 32
HIGHEST_PROTOCOL = 5


# --- the byte source -----------------------------------------------------------------------------------------------
class ByteSource:
    """Sequential, bounds-checked reads over ``[start, end)`` of a file or buffer, buffered in chunks."""

    CHUNK = 64 << 10

    def __init__(self, fetch: Callable[[int, int], bytes], start: int, end: int) -> None:
        self._fetch = fetch
        self.pos = start
        self.end = end
        self._buf = b""
        self._buf_start = start

    @classmethod
    def from_bytes(cls, data: bytes) -> ByteSource:
        source = cls(lambda offset, n: data[offset : offset + n], 0, len(data))
        source._buf = data
        return source

    @property
    def left(self) -> int:
        return self.end - self.pos

    def _ensure(self, n: int) -> int:
        """Make the buffer cover ``[pos, pos + n)``; return pos relative to the buffer."""
        rel = self.pos - self._buf_start
        if rel < 0 or rel + n > len(self._buf):
            size = min(max(n, self.CHUNK), self.end - self.pos)
            self._buf = self._fetch(self.pos, size)
            self._buf_start = self.pos
            if len(self._buf) < n:
                raise MalformedFileError("truncated pickle: the file ended early")
            rel = 0
        return rel

    def read(self, n: int) -> bytes:
        rel = self.pos - self._buf_start
        if rel >= 0 and n >= 0 and rel + n <= len(self._buf):  # fast path: the buffer never extends past ``end``
            self.pos += n
            return self._buf[rel : rel + n]
        if n < 0 or n > self.end - self.pos:
            raise MalformedFileError(f"truncated pickle: an argument of {n:,} bytes at offset {self.pos:,} runs "
                                     f"past the end ({self.end - self.pos:,} bytes left)")
        rel = self._ensure(n)
        self.pos += n
        return self._buf[rel : rel + n]

    def readline(self) -> bytes:
        """One newline-terminated argument (without the newline), at most MAX_LINE bytes."""
        n = min(MAX_LINE + 1, self.end - self.pos)
        rel = self.pos - self._buf_start
        idx = self._buf.find(b"\n", rel, rel + n) if 0 <= rel <= len(self._buf) else -1
        if idx < 0:
            rel = self._ensure(n)
            idx = self._buf.find(b"\n", rel, rel + n)
        if idx < 0:
            raise MalformedFileError(f"truncated pickle: no end of line within {MAX_LINE:,} bytes at offset "
                                     f"{self.pos:,}")
        line = self._buf[rel:idx]
        self.pos += idx - rel + 1
        return line


# --- the interpreter ------------------------------------------------------------------------------------------------
class _Mark:
    pass


class PickleVM:
    """Runs one pickle (PROTO ... STOP) from a ByteSource; ``persistent_load`` turns persistent ids into records."""

    def __init__(self, source: ByteSource, persistent_load: Callable[[Any], Any] | None = None,
                 *, max_ops: int = MAX_OPS, budget: Budget | None = None) -> None:
        self.src = source
        self.persistent_load = persistent_load
        self.max_ops = max_ops
        self.budget = budget if budget is not None else Budget()
        self.calls: list[CallRecord] = []  # calls we refuse to make; any of them refuses the file at STOP
        self.unknown: list[Global] = []  # globals off the allow-list; each must only be reconstructed
        self.placeholder_classes: list[str] = []  # unknown classes reconstructed as inert placeholders
        self.proto = 0
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.ops = 0
        self.globals_seen: list[str] = []

    def run(self) -> Any:
        src = self.src
        dispatch = _DISPATCH
        while True:
            self.ops += 1
            if self.ops > self.max_ops:
                raise MalformedFileError(f"pickle has more than {self.max_ops:,} opcodes")
            if src.pos >= src.end:
                raise MalformedFileError("truncated pickle: it ends without a STOP opcode")
            rel = src.pos - src._buf_start
            if 0 <= rel < len(src._buf):
                code = src._buf[rel]
                src.pos += 1
            else:
                code = src.read(1)[0]
            handler = dispatch.get(code)
            if handler is None:
                raise MalformedFileError(f"not a valid pickle: unknown opcode 0x{code:02x} at offset {src.pos - 1:,}")
            if handler is _op_stop:
                if not self.stack:
                    raise MalformedFileError("not a valid pickle: STOP with an empty stack")
                self.refuse_if_unsafe()
                return self.stack.pop()
            handler(self)

    def refuse_if_unsafe(self) -> None:
        """Raise UnsafeFileError if the stream asked for a call, or imported a global it did not only rebuild."""
        if self.calls:
            raise refusal(self.calls)
        for glob in self.unknown:
            if not glob.reconstructed:
                raise UnsafeFileError(refusal_reason(glob.module, glob.name), call=glob.qualname[:200])

    def called(self, value: Any) -> Any:
        """Note what a call opcode produced: refused calls and placeholders are remembered."""
        if isinstance(value, CallRecord):
            if len(self.calls) < 1000:
                self.calls.append(value)
        elif isinstance(value, Placeholder) and value.unknown and value.cls not in self.placeholder_classes:
            self.placeholder_classes.append(value.cls)
        return value

    # helpers
    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            raise MalformedFileError("not a valid pickle: stack underflow")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise MalformedFileError("not a valid pickle: stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise MalformedFileError("not a valid pickle: no MARK to pop")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def memo_put(self, index: int, value: Any) -> None:
        if not 0 <= index < MAX_MEMO_INDEX:
            raise MalformedFileError(f"not a valid pickle: memo index {index} out of range")
        if len(self.memo) >= MAX_MEMO and index not in self.memo:
            raise MalformedFileError(f"pickle memo exceeds {MAX_MEMO:,} entries")
        self.memo[index] = value

    def memo_get(self, index: int) -> Any:
        try:
            return self.memo[index]
        except KeyError:
            raise MalformedFileError(f"not a valid pickle: memo entry {index} is missing") from None

    def find_global(self, module: str, name: str) -> Global:
        if self.proto < 3:
            if (module, name) in NAME_MAPPING:
                module, name = NAME_MAPPING[(module, name)]
            elif module in IMPORT_MAPPING:
                module = IMPORT_MAPPING[module]
        self.globals_seen.append(f"{module}.{name}")
        glob = resolve_global(module, name)
        if glob.kind == "unknown":
            self.unknown.append(glob)
        return glob


# --- argument decoding ----------------------------------------------------------------------------------------------
def _line_int(vm: PickleVM, *, allow_bool: bool = False) -> int | bool:
    line = vm.src.readline()
    if allow_bool and line == b"00":
        return False
    if allow_bool and line == b"01":
        return True
    if line.endswith(b"L"):
        line = line[:-1]
    try:
        return int(line, 0) if allow_bool else int(line)
    except ValueError:
        raise MalformedFileError(f"not a valid pickle: bad integer {line[:40]!r}") from None


def _line_long(vm: PickleVM) -> int:
    line = vm.src.readline()
    if line.endswith(b"L"):
        line = line[:-1]
    try:
        return int(line, 0)
    except ValueError:
        raise MalformedFileError(f"not a valid pickle: bad integer {line[:40]!r}") from None


def _u(vm: PickleVM, n: int) -> int:
    src = vm.src
    rel = src.pos - src._buf_start
    if rel >= 0 and rel + n <= len(src._buf):
        src.pos += n
        return int.from_bytes(src._buf[rel : rel + n], "little")
    return int.from_bytes(src.read(n), "little")


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _long_bytes(vm: PickleVM, n: int) -> int:
    if n < 0:
        raise MalformedFileError("not a valid pickle: negative LONG4 length")
    if n > MAX_LONG_BYTES:
        raise MalformedFileError(f"pickle holds an integer of {n:,} bytes (limit {MAX_LONG_BYTES})")
    return int.from_bytes(vm.src.read(n), "little", signed=True)


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise MalformedFileError("not a valid pickle: a string is not valid UTF-8") from None


def _global_line(vm: PickleVM) -> str:
    raw = vm.src.readline()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedFileError("not a valid pickle: a global's name is not valid UTF-8") from None
    if not text or not all(c.isprintable() for c in text):
        raise MalformedFileError(f"not a valid pickle: bad global name {text[:60]!r}")
    return text


# --- opcode handlers --------------------------------------------------------------------------------------------
def _op_int(vm: PickleVM) -> None:
    vm.push(_line_int(vm, allow_bool=True))


def _op_binint(vm: PickleVM) -> None:
    vm.push(int.from_bytes(vm.src.read(4), "little", signed=True))


def _op_binint1(vm: PickleVM) -> None:
    vm.push(_u(vm, 1))


def _op_binint2(vm: PickleVM) -> None:
    vm.push(_u(vm, 2))


def _op_long(vm: PickleVM) -> None:
    vm.push(_line_long(vm))


def _op_long1(vm: PickleVM) -> None:
    vm.push(_long_bytes(vm, _u(vm, 1)))


def _op_long4(vm: PickleVM) -> None:
    vm.push(_long_bytes(vm, int.from_bytes(vm.src.read(4), "little", signed=True)))


def _op_string(vm: PickleVM) -> None:
    data = vm.src.readline()
    if len(data) < 2 or data[0] != data[-1] or data[0] not in b"\"'":
        raise MalformedFileError("not a valid pickle: the STRING argument must be quoted")
    try:
        raw = codecs.escape_decode(data[1:-1])[0]
    except ValueError:
        raise MalformedFileError("not a valid pickle: bad escape in a STRING") from None
    vm.push(_decode_text(raw))


def _op_binstring(vm: PickleVM) -> None:
    n = int.from_bytes(vm.src.read(4), "little", signed=True)
    if n < 0:
        raise MalformedFileError("not a valid pickle: negative BINSTRING length")
    vm.push(_decode_text(vm.src.read(n)))


def _op_short_binstring(vm: PickleVM) -> None:
    vm.push(_decode_text(vm.src.read(_u(vm, 1))))


def _op_binbytes(vm: PickleVM) -> None:
    vm.push(vm.src.read(_u(vm, 4)))


def _op_short_binbytes(vm: PickleVM) -> None:
    vm.push(vm.src.read(_u(vm, 1)))


def _op_binbytes8(vm: PickleVM) -> None:
    vm.push(vm.src.read(_u(vm, 8)))


def _op_bytearray8(vm: PickleVM) -> None:
    vm.push(vm.src.read(_u(vm, 8)))


def _op_buffer(vm: PickleVM) -> None:
    raise MalformedFileError("pickle refers to out-of-band buffers, which a checkpoint file cannot provide")


def _op_none(vm: PickleVM) -> None:
    vm.push(None)


def _op_true(vm: PickleVM) -> None:
    vm.push(True)


def _op_false(vm: PickleVM) -> None:
    vm.push(False)


def _op_unicode(vm: PickleVM) -> None:
    try:
        vm.push(str(vm.src.readline(), "raw-unicode-escape"))
    except UnicodeDecodeError:
        raise MalformedFileError("not a valid pickle: bad UNICODE argument") from None


def _op_short_binunicode(vm: PickleVM) -> None:
    vm.push(_utf8(vm.src.read(_u(vm, 1))))


def _op_binunicode(vm: PickleVM) -> None:
    vm.push(_utf8(vm.src.read(_u(vm, 4))))


def _op_binunicode8(vm: PickleVM) -> None:
    vm.push(_utf8(vm.src.read(_u(vm, 8))))


def _op_float(vm: PickleVM) -> None:
    line = vm.src.readline()
    try:
        vm.push(float(line))
    except ValueError:
        raise MalformedFileError(f"not a valid pickle: bad float {line[:40]!r}") from None


def _op_binfloat(vm: PickleVM) -> None:
    vm.push(struct.unpack(">d", vm.src.read(8))[0])


def _op_empty_list(vm: PickleVM) -> None:
    vm.push([])


def _op_append(vm: PickleVM) -> None:
    value = vm.pop()
    target = vm.top()
    if not isinstance(target, list):
        raise MalformedFileError(f"not a valid pickle: APPEND to a {type_name(target)}")
    target.append(value)


def _op_appends(vm: PickleVM) -> None:
    items = vm.pop_mark()
    target = vm.top()
    if not isinstance(target, list):
        raise MalformedFileError(f"not a valid pickle: APPENDS to a {type_name(target)}")
    target.extend(items)


def _op_list(vm: PickleVM) -> None:
    vm.push(vm.pop_mark())


def _op_empty_tuple(vm: PickleVM) -> None:
    vm.push(())


def _op_tuple(vm: PickleVM) -> None:
    vm.push(tuple(vm.pop_mark()))


def _op_tuple1(vm: PickleVM) -> None:
    vm.push((vm.pop(),))


def _op_tuple2(vm: PickleVM) -> None:
    b = vm.pop()
    a = vm.pop()
    vm.push((a, b))


def _op_tuple3(vm: PickleVM) -> None:
    c = vm.pop()
    b = vm.pop()
    a = vm.pop()
    vm.push((a, b, c))


def _op_empty_dict(vm: PickleVM) -> None:
    vm.push({})


def _set_pairs(vm: PickleVM, target: dict, items: list[Any]) -> None:
    if len(items) % 2:
        raise MalformedFileError("not a valid pickle: odd number of items for a dict")
    for i in range(0, len(items), 2):
        key = items[i]
        check_key(key)
        vm.budget.check_key(target, key)
        target[key] = items[i + 1]


def _op_dict(vm: PickleVM) -> None:
    out: dict = {}
    _set_pairs(vm, out, vm.pop_mark())
    vm.push(out)


def _op_setitem(vm: PickleVM) -> None:
    value = vm.pop()
    key = vm.pop()
    target = vm.top()
    if not isinstance(target, dict):
        raise MalformedFileError(f"not a valid pickle: SETITEM on a {type_name(target)}")
    check_key(key)
    vm.budget.check_key(target, key)
    target[key] = value


def _op_setitems(vm: PickleVM) -> None:
    items = vm.pop_mark()
    target = vm.top()
    if not isinstance(target, dict):
        raise MalformedFileError(f"not a valid pickle: SETITEMS on a {type_name(target)}")
    _set_pairs(vm, target, items)


def _op_empty_set(vm: PickleVM) -> None:
    vm.push(SetRecord())


def _op_additems(vm: PickleVM) -> None:
    items = vm.pop_mark()
    target = vm.top()
    if not isinstance(target, SetRecord):
        raise MalformedFileError(f"not a valid pickle: ADDITEMS on a {type_name(target)}")
    target.extend(items)


def _op_frozenset(vm: PickleVM) -> None:
    vm.push(SetRecord(vm.pop_mark()))


def _op_pop(vm: PickleVM) -> None:
    if vm.stack:
        vm.stack.pop()
    else:
        vm.pop_mark()


def _op_dup(vm: PickleVM) -> None:
    vm.push(vm.top())


def _op_mark(vm: PickleVM) -> None:
    if len(vm.metastack) >= MAX_MARK_DEPTH:
        raise MalformedFileError(f"pickle nests MARKs deeper than {MAX_MARK_DEPTH:,}")
    vm.metastack.append(vm.stack)
    vm.stack = []


def _op_pop_mark(vm: PickleVM) -> None:
    vm.pop_mark()


def _op_get(vm: PickleVM) -> None:
    vm.push(vm.memo_get(_line_int(vm)))


def _op_binget(vm: PickleVM) -> None:
    vm.push(vm.memo_get(_u(vm, 1)))


def _op_long_binget(vm: PickleVM) -> None:
    vm.push(vm.memo_get(_u(vm, 4)))


def _op_put(vm: PickleVM) -> None:
    vm.memo_put(_line_int(vm), vm.top())


def _op_binput(vm: PickleVM) -> None:
    vm.memo_put(_u(vm, 1), vm.top())


def _op_long_binput(vm: PickleVM) -> None:
    vm.memo_put(_u(vm, 4), vm.top())


def _op_memoize(vm: PickleVM) -> None:
    vm.memo_put(len(vm.memo), vm.top())


def _op_ext(vm: PickleVM) -> None:
    raise UnsafeFileError("pickle imports a global through the copyreg extension registry (EXT opcode): "
                          "the file could run code if loaded with torch, so it is refused")


def _op_global(vm: PickleVM) -> None:
    module = _global_line(vm)
    name = _global_line(vm)
    vm.push(vm.find_global(module, name))


def _op_stack_global(vm: PickleVM) -> None:
    name = vm.pop()
    module = vm.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise MalformedFileError("not a valid pickle: STACK_GLOBAL needs two strings")
    vm.push(vm.find_global(module, name))


def _op_reduce(vm: PickleVM) -> None:
    args = vm.pop()
    func = vm.pop()
    if not isinstance(args, tuple):
        raise MalformedFileError("not a valid pickle: REDUCE arguments are not a tuple")
    vm.push(vm.called(call(func, args, None, "REDUCE", vm.budget)))


def _op_build(vm: PickleVM) -> None:
    state = vm.pop()
    build(vm.top(), state, vm.budget)


def _op_inst(vm: PickleVM) -> None:
    module = _global_line(vm)
    name = _global_line(vm)
    cls = vm.find_global(module, name)
    vm.push(vm.called(call(cls, tuple(vm.pop_mark()), None, "INST", vm.budget)))


def _op_obj(vm: PickleVM) -> None:
    items = vm.pop_mark()
    if not items:
        raise MalformedFileError("not a valid pickle: OBJ without a class")
    vm.push(vm.called(call(items[0], tuple(items[1:]), None, "OBJ", vm.budget)))


def _op_newobj(vm: PickleVM) -> None:
    args = vm.pop()
    cls = vm.pop()
    if not isinstance(args, tuple):
        raise MalformedFileError("not a valid pickle: NEWOBJ arguments are not a tuple")
    vm.push(vm.called(call(cls, args, None, "NEWOBJ", vm.budget)))


def _op_newobj_ex(vm: PickleVM) -> None:
    kwargs = vm.pop()
    args = vm.pop()
    cls = vm.pop()
    if not isinstance(args, tuple) or not isinstance(kwargs, dict):
        raise MalformedFileError("not a valid pickle: NEWOBJ_EX needs a tuple and a dict")
    vm.push(vm.called(call(cls, args, kwargs, "NEWOBJ", vm.budget)))


def _op_proto(vm: PickleVM) -> None:
    proto = _u(vm, 1)
    if proto > HIGHEST_PROTOCOL:
        raise MalformedFileError(f"unsupported pickle protocol {proto}")
    vm.proto = proto


def _op_frame(vm: PickleVM) -> None:
    size = _u(vm, 8)
    if size > vm.src.left:
        raise MalformedFileError(f"truncated pickle: a frame of {size:,} bytes runs past the end")


def _op_persid(vm: PickleVM) -> None:
    raw = vm.src.readline()
    try:
        pid = raw.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedFileError("not a valid pickle: persistent id is not ASCII") from None
    vm.push(_persistent(vm, pid))


def _op_binpersid(vm: PickleVM) -> None:
    vm.push(_persistent(vm, vm.pop()))


def _persistent(vm: PickleVM, pid: Any) -> Any:
    if vm.persistent_load is None:
        raise MalformedFileError("pickle refers to external storage (a persistent id) where none can exist")
    return vm.persistent_load(pid)


def _op_stop(vm: PickleVM) -> None:  # handled in the loop
    raise AssertionError


_DISPATCH: dict[int, Callable[[PickleVM], None]] = {
    ord(k): v for k, v in {
        "I": _op_int, "J": _op_binint, "K": _op_binint1, "M": _op_binint2, "L": _op_long, "\x8a": _op_long1,
        "\x8b": _op_long4, "S": _op_string, "T": _op_binstring, "U": _op_short_binstring, "B": _op_binbytes,
        "C": _op_short_binbytes, "\x8e": _op_binbytes8, "\x96": _op_bytearray8, "\x97": _op_buffer,
        "\x98": _op_buffer, "N": _op_none, "\x88": _op_true, "\x89": _op_false, "V": _op_unicode,
        "\x8c": _op_short_binunicode, "X": _op_binunicode, "\x8d": _op_binunicode8, "F": _op_float,
        "G": _op_binfloat, "]": _op_empty_list, "a": _op_append, "e": _op_appends, "l": _op_list,
        ")": _op_empty_tuple, "t": _op_tuple, "\x85": _op_tuple1, "\x86": _op_tuple2, "\x87": _op_tuple3,
        "}": _op_empty_dict, "d": _op_dict, "s": _op_setitem, "u": _op_setitems, "\x8f": _op_empty_set,
        "\x90": _op_additems, "\x91": _op_frozenset, "0": _op_pop, "2": _op_dup, "(": _op_mark,
        "1": _op_pop_mark, "g": _op_get, "h": _op_binget, "j": _op_long_binget, "p": _op_put, "q": _op_binput,
        "r": _op_long_binput, "\x94": _op_memoize, "\x82": _op_ext, "\x83": _op_ext, "\x84": _op_ext,
        "c": _op_global, "\x93": _op_stack_global, "R": _op_reduce, "b": _op_build, "i": _op_inst, "o": _op_obj,
        "\x81": _op_newobj, "\x92": _op_newobj_ex, "\x80": _op_proto, ".": _op_stop, "\x95": _op_frame,
        "P": _op_persid, "Q": _op_binpersid,
    }.items()
}

OPCODES = frozenset(_DISPATCH)


def run_pickle(source: ByteSource, persistent_load: Callable[[Any], Any] | None = None,
               budget: Budget | None = None) -> tuple[Any, PickleVM]:
    """Interpret one pickle from ``source`` (left just after its STOP); return its inert value and the VM.

    A stream that asked for a call refuses the file as unsafe even when it breaks later, so the refusal
    names the call rather than the breakage. ``budget`` is shared by every pickle of one file.
    """
    vm = PickleVM(source, persistent_load, budget=budget)
    try:
        try:
            return vm.run(), vm
        except RecursionError:
            raise MalformedFileError("pickle structure is nested too deeply") from None
        except (TypeError, ValueError, OverflowError, IndexError, KeyError, struct.error) as exc:
            raise MalformedFileError(f"not a valid pickle ({type(exc).__name__})") from None
    except UnsafeFileError:
        raise
    except CheckpointError:
        vm.refuse_if_unsafe()
        raise


def refusal(calls: list[CallRecord]) -> UnsafeFileError:
    """The refusal for a stream's calls: a whole pickled model is named as such, else the outermost call."""
    for record in calls:
        inner = record.func
        while isinstance(inner, CallRecord):
            inner = inner.func
        if isinstance(inner, Global) and inner.module.startswith(("torch.nn.modules.", "__torch__")):
            return UnsafeFileError(refusal_reason(inner.module, inner.name), call=inner.qualname[:200])
    func, arguments = calls[-1].render()
    return UnsafeFileError(f"pickle calls {func}({arguments}): the file would run code if loaded with torch",
                           call=func, arguments=arguments)
