"""What the globals a checkpoint pickle may name mean, as inert records: the allow-list and its semantics.

Only what a state dict needs is understood: tensor rebuild functions, storage
classes, dtypes, dict-like containers, and data-only classes (numpy scalars,
argparse Namespace, omegaconf configs, paths) that become ``Placeholder``
records. "Calling" one of them in the stream builds a record; nothing from the
file, and nothing the file names, is ever called. Any other global refuses the
file with an UnsafeFileError that names it.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core import dtypes
from core.errors import MalformedFileError, UnsafeFileError, UnsupportedFormatError

MAX_KEY_NODES = 1_000
MAX_KEY_DEPTH = 32
MAX_DIM = 1 << 62
MAX_REPEAT = 64  # a view may show its storage's bytes this many times over (plus MAX_EXPANDED_BYTES)
MAX_EXPANDED_BYTES = 1 << 30
MAX_BUDGET = 10_000_000  # copied elements plus tensor paths, per file
PAIR_COST = 8  # a (key, value) pair copied into a dict is checked in Python: it costs this many elements
MAX_SAME_HASH = 16  # non-string dict keys sharing one hash value, per dict
MAX_SHOWN = 300  # characters of a refused call's rendered arguments


# --- records: what the interpreter builds instead of live objects ------------------------------------------------
@dataclass(eq=False, slots=True)
class Global:
    """A global the stream imported; ``kind`` says what the interpreter does with it (never a call)."""

    module: str
    name: str
    kind: str
    info: Any = None
    reconstructed: bool = False  # an "unknown" class that became a placeholder at least once

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False, slots=True)
class Placeholder:
    """An instance of a data-only class (argparse.Namespace, numpy array metadata ...): class name and raw state."""

    cls: str
    args: tuple = ()
    kwargs: dict | None = None
    state: Any = None
    unknown: bool = False  # a class off the allow-list that the stream only reconstructs (NEWOBJ)


@dataclass(eq=False, slots=True)
class StorageRef:
    """A storage named by a persistent id; the format reader says where its bytes are."""

    key: str
    dtype: str | None  # core.dtypes name of the storage's elements
    torch_dtype: str  # e.g. "float32", for messages
    numel: int
    location: str
    nbytes: int
    file: str = ""
    data_offset: int = 0  # absolute offset of the storage's first byte in ``file``
    view_of: StorageRef | None = None  # legacy storage views: a slice of another storage
    view_offset: int = 0  # bytes into ``view_of``


@dataclass(eq=False, slots=True)
class TensorRecord:
    storage: StorageRef
    storage_offset: int  # in elements of ``dtype``
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: str
    requires_grad: bool = False
    is_parameter: bool = False
    extra: dict = field(default_factory=dict)


class SetRecord(list):
    """A Python set, kept as a list so that nothing is hashed."""


@dataclass(eq=False, slots=True)
class CallRecord:
    """A call the stream asks for that we would never make (os.system(...)); its presence refuses the file."""

    func: Any
    args: tuple
    kwargs: dict | None = None

    def render(self) -> tuple[str, str]:
        """(what is called, its arguments), as bounded inert text."""
        parts = [render(a) for a in self.args] + [f"{k}={render(v)}" for k, v in (self.kwargs or {}).items()]
        arguments = ", ".join(parts)
        if len(arguments) > MAX_SHOWN:
            arguments = arguments[:MAX_SHOWN] + "..."
        return render(self.func), arguments


def render(value: Any, depth: int = 0) -> str:
    """Inert, bounded text for a value from the stream: repr for data, names for globals, calls spelled out."""
    if isinstance(value, Global):
        return value.qualname[:200]
    if isinstance(value, CallRecord):
        func, arguments = value.render() if depth < 4 else ("...", "...")
        return f"{func}({arguments})"
    if isinstance(value, Placeholder):
        return f"<{value.cls[:200]}>"
    if isinstance(value, (str, bytes)):
        return repr(value[:MAX_SHOWN]) + ("..." if len(value) > MAX_SHOWN else "")
    if value is None or isinstance(value, (bool, int, float, complex)):
        text = repr(value)
        return text if len(text) <= 60 else text[:60] + "..."
    if isinstance(value, (tuple, list)) and depth < 4:
        inner = ", ".join(render(v, depth + 1) for v in value[:8]) + (", ..." if len(value) > 8 else "")
        return f"({inner}{',' if len(value) == 1 else ''})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict) and depth < 4:
        items = list(value.items())[:8]
        inner = ", ".join(f"{render(k, depth + 1)}: {render(v, depth + 1)}" for k, v in items)
        return "{" + inner + (", ..." if len(value) > 8 else "") + "}"
    return f"<{type(value).__name__}>"


class Budget:
    """One allowance per file for what a small pickle can make large: copied elements and tensor paths.

    Also guards dicts against hash flooding: keys whose hash an attacker can choose (integers, floats,
    tuples of them) may share one hash value at most MAX_SAME_HASH times in one dict.
    """

    def __init__(self, units: int = MAX_BUDGET) -> None:
        self.total = units
        self.left = units
        self._hashes: dict[int, dict[int, int]] = {}

    def charge(self, units: int, what: str) -> None:
        self.left -= units
        if self.left < 0:
            raise MalformedFileError(f"pickle expands beyond {self.total:,} copied elements and tensor paths "
                                     f"({what}): a small file that would unpack into a huge structure")

    def check_key(self, target: dict, key: Any) -> None:
        """Call before inserting ``key`` into ``target``; refuses the key that would make too many collide."""
        if isinstance(key, str) or key in target:  # a lookup walks at most MAX_SAME_HASH colliding entries
            return
        counts = self._hashes.setdefault(id(target), {})
        h = hash(key)  # keys are plain values (check_key) or our own records: no code from the file runs
        counts[h] = counts.get(h, 0) + 1
        if counts[h] > MAX_SAME_HASH:
            raise MalformedFileError(f"pickle dict has more than {MAX_SAME_HASH} keys with one hash value, such as "
                                     f"{render(key)} (a hash-collision attack that makes loading quadratic)")


# --- the allow-list ------------------------------------------------------------------------------------------------
STORAGE_DTYPES = {
    "DoubleStorage": ("F64", "float64"), "FloatStorage": ("F32", "float32"), "HalfStorage": ("F16", "float16"),
    "BFloat16Storage": ("BF16", "bfloat16"), "LongStorage": ("I64", "int64"), "IntStorage": ("I32", "int32"),
    "ShortStorage": ("I16", "int16"), "CharStorage": ("I8", "int8"), "ByteStorage": ("U8", "uint8"),
    "BoolStorage": ("BOOL", "bool"), "ComplexFloatStorage": ("C64", "complex64"),
    "ComplexDoubleStorage": ("C128", "complex128"), "UntypedStorage": ("U8", "uint8"),
    "QInt8Storage": (None, "qint8"), "QUInt8Storage": (None, "quint8"), "QInt32Storage": (None, "qint32"),
    "QUInt4x2Storage": (None, "quint4x2"), "QUInt2x4Storage": (None, "quint2x4"),
}
TORCH_DTYPES = {
    "float64": "F64", "double": "F64", "float32": "F32", "float": "F32", "float16": "F16", "half": "F16",
    "bfloat16": "BF16", "int64": "I64", "long": "I64", "int32": "I32", "int": "I32", "int16": "I16",
    "short": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64",
    "bool": "BOOL", "complex64": "C64", "cfloat": "C64", "complex128": "C128", "cdouble": "C128",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e8m0fnu": "F8_E8M0",
}
_TORCH_DTYPES_UNSUPPORTED = {
    "complex32", "chalf", "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "float8_e4m3fnuz",
    "float8_e5m2fnuz", "float4_e2m1fn_x2", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
    *(f"uint{i}" for i in range(1, 8)), *(f"int{i}" for i in range(1, 8)),
}

_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor"): "rebuild_tensor",
    ("torch._utils", "_rebuild_tensor_v2"): "rebuild_tensor_v2",
    ("torch._utils", "_rebuild_tensor_v3"): "rebuild_tensor_v3",
    ("torch._utils", "_rebuild_parameter"): "rebuild_parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "rebuild_parameter_with_state",
    ("torch._tensor", "_rebuild_from_type_v2"): "rebuild_from_type_v2",
    ("torch", "Size"): "size",
    ("torch", "Tensor"): "tensor_class",
    ("torch.nn.parameter", "Parameter"): "tensor_class",
    ("collections", "OrderedDict"): "dict_class",
    ("collections", "defaultdict"): "dict_class",
    ("collections", "Counter"): "dict_class",
    ("builtins", "dict"): "dict_class",
    ("pytorch_lightning.utilities.parsing", "AttributeDict"): "dict_class",
    ("lightning_fabric.utilities.data", "AttributeDict"): "dict_class",
    ("lightning.fabric.utilities.data", "AttributeDict"): "dict_class",
    ("builtins", "list"): "list_class",
    ("builtins", "tuple"): "tuple_class",
    ("builtins", "set"): "set_class",
    ("builtins", "frozenset"): "set_class",
    ("builtins", "complex"): "complex",
    ("_codecs", "encode"): "codecs_encode",
    ("copyreg", "_reconstructor"): "reconstructor",
    ("copyreg", "__newobj__"): "newobj",
    ("copyreg", "__newobj_ex__"): "newobj",
    ("numpy.core.multiarray", "scalar"): "np_scalar",
    ("numpy._core.multiarray", "scalar"): "np_scalar",
    ("numpy.core.multiarray", "_reconstruct"): "np_reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "np_reconstruct",
}
# Classes that only hold data: calling them in the stream makes a Placeholder, and nothing runs.
_INERT_CLASSES = {
    ("builtins", n) for n in ("int", "float", "str", "bool", "bytes", "bytearray", "object", "slice", "range",
                              "NoneType", "type")
} | {
    ("torch", "device"), ("torch", "layout"), ("torch", "memory_format"), ("torch.torch_version", "TorchVersion"),
    ("argparse", "Namespace"), ("numpy", "dtype"), ("numpy", "ndarray"),
    ("pathlib", "Path"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PurePath"),
    ("pathlib", "PurePosixPath"), ("pathlib", "PureWindowsPath"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
    ("datetime", "timezone"), ("decimal", "Decimal"), ("uuid", "UUID"), ("typing", "Any"),
    ("omegaconf.dictconfig", "DictConfig"), ("omegaconf.listconfig", "ListConfig"),
    ("omegaconf.base", "ContainerMetadata"), ("omegaconf.base", "Metadata"),
} | {
    ("omegaconf.nodes", n) for n in ("AnyNode", "ValueNode", "StringNode", "IntegerNode", "FloatNode",
                                     "BooleanNode", "EnumNode", "PathNode", "BytesNode", "InterpolationResultNode")
}
_NUMPY_DTYPE_CLASS = re.compile(r"^[A-Z][A-Za-z0-9]*DType$")

# Named in the refusal so the user sees what the file reaches for; everything off the allow-list is refused anyway.
_DANGEROUS_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "runpy", "importlib", "pkgutil", "types", "code",
    "codeop", "webbrowser", "pty", "asyncio", "multiprocessing", "ctypes", "pickle", "_pickle", "dill",
    "cloudpickle", "marshal", "platform", "signal", "threading", "_thread", "urllib", "requests", "http", "ftplib",
    "telnetlib", "smtplib", "shlex", "tempfile", "glob", "commands", "popen2", "timeit", "trace", "pdb", "bdb",
    "cProfile", "profile", "doctest", "imp", "zipimport", "linecache", "functools", "operator", "inspect",
    "ssl", "select", "selectors", "pydoc", "venv", "ensurepip", "distutils", "setuptools", "pip", "sqlite3",
    "_posixsubprocess", "_io", "io", "gc", "weakref", "joblib", "nturl2path", "builtins.__import__",
}
_NO_PLACEHOLDER_ROOTS = {
    "builtins", "__builtin__", "__builtins__", "torch", "torchvision", "torchaudio", "numpy", "scipy", "pandas",
    "copyreg", "copy_reg", "IPython", "jinja2", "yaml", "transformers", "huggingface_hub", "keras", "tensorflow",
}
_DATA_STDLIB = {"collections", "datetime", "decimal", "fractions", "argparse", "pathlib", "uuid", "enum",
                "dataclasses", "ipaddress"}
_DANGEROUS_NAMES = re.compile(r"(system|exec|eval|popen|spawn|call|run|load|open|import|getattr|setattr|compile|"
                              r"partial|methodcaller|attrgetter|itemgetter|apply|globals|input|breakpoint|"
                              r"resolve_name|CodeType|FunctionType|remove|rmtree|write|unlink|kill|fork)",
                              re.IGNORECASE)


def resolve_global(module: str, name: str) -> Global:
    """The record for a global; anything off the allow-list becomes an "unknown" record, refused when used.

    Refusal waits until the stream shows what it does with the global, so the message can show a call with
    its arguments, and a class that is only reconstructed (NEWOBJ) can become an inert placeholder. Names that
    walk attributes ("f.__globals__") or are not identifiers are refused at once.
    """
    if (module, name) in _FUNCTIONS:
        return Global(module, name, _FUNCTIONS[(module, name)])
    if module in ("torch", "torch.cuda", "torch.storage") and name in STORAGE_DTYPES:
        return Global(module, name, "storage_type", STORAGE_DTYPES[name])
    if module == "torch" and (name in TORCH_DTYPES or name in _TORCH_DTYPES_UNSUPPORTED):
        return Global(module, name, "torch_dtype", TORCH_DTYPES.get(name))
    if (module, name) in _INERT_CLASSES or (module == "numpy.dtypes" and _NUMPY_DTYPE_CLASS.match(name)):
        return Global(module, name, "inert_class")
    if not name.isidentifier() or not all(part.isidentifier() for part in module.split(".")):
        raise UnsafeFileError(refusal_reason(module, name), call=f"{module}.{name}"[:200])
    return Global(module, name, "unknown", placeholder_allowed(module, name))


def placeholder_allowed(module: str, name: str) -> bool:
    """May a NEWOBJ of this class become an inert placeholder? Only plain classes of the user's own modules.

    Standard-library modules (bar a few that only hold data), torch, numpy and the serialisers are never
    placeholders: their classes' ``__new__`` / ``__setstate__`` are what attacks reach for.
    """
    root = module.split(".", 1)[0]
    if name.startswith("__") or root in _DANGEROUS_MODULES or root in _NO_PLACEHOLDER_ROOTS:
        return False
    return root not in sys.stdlib_module_names or root in _DATA_STDLIB


def refusal_reason(module: str, name: str) -> str:
    qualname = f"{module}.{name}"[:200]
    root = module.split(".", 1)[0]
    if module.startswith("torch.nn.modules.") or module.startswith("__torch__"):
        return (f"pickle imports {qualname}: the file pickles a whole model (torch.save(model)), and loading it "
                "runs the model's Python code; open a file saved from model.state_dict() instead")
    if root in _DANGEROUS_MODULES or _DANGEROUS_NAMES.search(name):
        return f"pickle calls {qualname}: the file would run code if loaded with torch"
    return (f"pickle imports {qualname}, which is not a known tensor or data class: the file could run code "
            "if loaded with torch, so it is refused")


# --- what calling an allowed global means (never an actual call) --------------------------------------------------
def type_name(value: Any) -> str:
    if isinstance(value, Global):
        return value.qualname
    if isinstance(value, Placeholder):
        return value.cls
    return type(value).__name__


_SCALAR_KEYS = {str, int, float, bool, type(None), bytes}


def check_key(key: Any) -> None:
    """Refuse dict keys that Python could not hash, or whose hashing would recurse deeply or blow up."""
    if type(key) in _SCALAR_KEYS:
        return
    todo = [(key, 0)]
    seen = 0
    while todo:
        value, depth = todo.pop()
        seen += 1
        if seen > MAX_KEY_NODES or depth > MAX_KEY_DEPTH:
            raise MalformedFileError("pickle uses an implausibly large dict key")
        if isinstance(value, tuple):
            todo.extend((v, depth + 1) for v in value)
        elif isinstance(value, (list, dict, SetRecord)):
            raise MalformedFileError("not a valid pickle: unhashable dict key")


_COPYING_KINDS = {"dict_class", "list_class", "tuple_class", "set_class", "size"}


def call(func: Any, args: tuple, kwargs: dict | None, how: str, budget: Budget | None = None) -> Any:
    """What REDUCE / NEWOBJ / OBJ / INST on a global produce: an inert record, never a call.

    A global off the allow-list gives a CallRecord (which refuses the file once the stream ends), except that
    NEWOBJ of a plain user class gives a placeholder that records the class name and its state.
    """
    if isinstance(func, CallRecord):
        return CallRecord(func, args, kwargs)
    if not isinstance(func, Global):
        raise MalformedFileError(f"not a valid pickle: {how} on a {type_name(func)}, which is not callable")
    kind = func.kind
    if kind == "unknown":
        if how == "NEWOBJ" and func.info:
            func.reconstructed = True
            return Placeholder(func.qualname, args, kwargs or None, unknown=True)
        return CallRecord(func, args, kwargs)
    handler = _CALLS.get(kind)
    if handler is None:
        raise MalformedFileError(f"pickle calls {func.qualname} in a way no checkpoint does")
    if how != "REDUCE" and kind.startswith("rebuild"):
        raise MalformedFileError(f"not a valid pickle: {how} on the function {func.qualname}")
    if budget is not None and kind in _COPYING_KINDS:
        cost = PAIR_COST if kind == "dict_class" else 1
        budget.charge(cost * sum(len(a) for a in args if isinstance(a, (list, tuple, dict))),
                      f"{func.qualname} copies")
    if kind == "dict_class":
        return _call_dict(func, args, kwargs or {}, budget)
    return handler(func, args, kwargs or {})


def build(target: Any, state: Any, budget: Budget | None = None) -> None:
    """BUILD (``__setstate__``): store the state on our record; nothing is called."""
    if isinstance(target, Placeholder):
        if isinstance(target.state, dict) and isinstance(state, dict):
            if budget is not None:
                budget.charge(len(state), f"state of {target.cls[:80]}")
            target.state.update(state)
        else:
            target.state = state
    elif isinstance(target, TensorRecord):
        target.extra["state"] = state
    elif isinstance(target, (dict, list, CallRecord)):
        pass  # attributes of a dict/list subclass (a state dict's ``_metadata``), or of a refused call: not data
    else:
        raise MalformedFileError(f"not a valid pickle: BUILD on a {type_name(target)}")


def _call_dict(func: Global, args: tuple, kwargs: dict, budget: Budget | None = None) -> dict:
    out: dict = {}
    if func.name == "defaultdict":
        args = args[1:]
    if args and isinstance(args[0], dict):
        for key, value in args[0].items():
            out[key] = value  # keys already passed the guard of the dict they come from
    elif args and isinstance(args[0], (list, tuple)):
        for pair in args[0]:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise MalformedFileError(f"not a valid pickle: {func.qualname} needs (key, value) pairs")
            check_key(pair[0])
            if budget is not None:
                budget.check_key(out, pair[0])
            out[pair[0]] = pair[1]
    for key, value in kwargs.items():
        check_key(key)
        if budget is not None:
            budget.check_key(out, key)
        out[key] = value
    return out


def _iterable_arg(func: Global, args: tuple) -> list:
    if not args:
        return []
    if len(args) != 1 or not isinstance(args[0], (list, tuple)):
        raise MalformedFileError(f"not a valid pickle: {func.qualname} needs one list or tuple")
    return list(args[0])


def _call_list(func: Global, args: tuple, kwargs: dict) -> list:
    return _iterable_arg(func, args)


def _call_tuple(func: Global, args: tuple, kwargs: dict) -> tuple:
    return tuple(_iterable_arg(func, args))


def _call_set(func: Global, args: tuple, kwargs: dict) -> SetRecord:
    return SetRecord(_iterable_arg(func, args))


def _call_complex(func: Global, args: tuple, kwargs: dict) -> complex:
    if not 1 <= len(args) <= 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise MalformedFileError("not a valid pickle: complex() needs one or two numbers")
    try:
        return complex(*(float(a) for a in args))
    except OverflowError:
        raise MalformedFileError("not a valid pickle: complex() argument out of range") from None


def _call_codecs_encode(func: Global, args: tuple, kwargs: dict) -> bytes:
    # Protocol 2 pickles bytes as _codecs.encode(text, "latin1"); nothing else is accepted.
    if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
        raise MalformedFileError("pickle calls _codecs.encode in a way no checkpoint does")
    try:
        return args[0].encode("latin-1")
    except UnicodeEncodeError:
        raise MalformedFileError("not a valid pickle: _codecs.encode text is not latin-1") from None


def _call_size(func: Global, args: tuple, kwargs: dict) -> tuple:
    dims = tuple(_iterable_arg(func, args))
    if not all(_is_int(d) and d >= 0 for d in dims):
        raise MalformedFileError("torch.Size holds something other than non-negative integers")
    return dims


def _call_inert(func: Global, args: tuple, kwargs: dict) -> Placeholder:
    return Placeholder(func.qualname, args, kwargs or None)


def _call_reconstructor(func: Global, args: tuple, kwargs: dict) -> Any:
    # copyreg._reconstructor(cls, base, state): protocol 0/1 objects; only allowed classes get through.
    if len(args) != 3 or not isinstance(args[0], Global):
        raise MalformedFileError("not a valid pickle: bad copyreg._reconstructor arguments")
    base = args[1].qualname if isinstance(args[1], Global) else ""
    if args[0].kind == "unknown" and base not in _PLAIN_BASES:
        return CallRecord(func, args)  # base.__new__(cls, state) of another base runs that base's code
    if args[2] is None:
        return call(args[0], (), None, "NEWOBJ")
    return call(args[0], args[2] if isinstance(args[2], tuple) else (args[2],), None, "NEWOBJ")


# bases whose __new__ / __init__ copyreg._reconstructor may use on a placeholder class: built-in data types only
_PLAIN_BASES = {f"builtins.{n}" for n in ("object", "tuple", "list", "dict", "int", "float", "str", "bytes")}


def _call_newobj(func: Global, args: tuple, kwargs: dict) -> Any:
    # copyreg.__newobj__(cls, *args) / __newobj_ex__(cls, args, kwargs): what the NEWOBJ opcodes do.
    if not args:
        raise MalformedFileError(f"not a valid pickle: {func.qualname} without a class")
    if func.name == "__newobj_ex__":
        if len(args) != 3 or not isinstance(args[1], tuple) or not isinstance(args[2], dict):
            raise MalformedFileError("not a valid pickle: bad copyreg.__newobj_ex__ arguments")
        return call(args[0], args[1], args[2], "NEWOBJ")
    return call(args[0], args[1:], None, "NEWOBJ")


def _call_np_scalar(func: Global, args: tuple, kwargs: dict) -> Any:
    """numpy scalar(dtype, raw bytes): decoded for plain numeric dtypes, else a placeholder."""
    if len(args) == 2 and isinstance(args[0], Placeholder) and args[0].cls == "numpy.dtype" \
            and isinstance(args[1], bytes) and args[0].args and isinstance(args[0].args[0], str):
        code = args[0].args[0]
        order = "<"
        if isinstance(args[0].state, tuple) and len(args[0].state) > 1 and args[0].state[1] in ("<", ">", "|", "="):
            order = "<" if args[0].state[1] in ("|", "=") else args[0].state[1]
        match = re.fullmatch(r"([fiub])(\d{1,2})", code)
        fmt = {("f", 2): "e", ("f", 4): "f", ("f", 8): "d", ("i", 1): "b", ("i", 2): "h", ("i", 4): "i",
               ("i", 8): "q", ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q", ("b", 1): "?"}
        if match:
            key = (match[1], int(match[2]))
            if key in fmt and len(args[1]) == key[1]:
                return struct.unpack(order + fmt[key], args[1])[0]
    return Placeholder(func.qualname, args)


def _call_np_reconstruct(func: Global, args: tuple, kwargs: dict) -> Placeholder:
    return Placeholder("numpy.ndarray")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > 64 \
            or not all(_is_int(v) and 0 <= v < MAX_DIM for v in value):
        raise MalformedFileError(f"tensor {what} must be a short tuple of non-negative integers below 2^62")
    return tuple(value)


def make_tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None = None,
                torch_dtype: str | None = None) -> TensorRecord:
    """A tensor view of ``storage``, checked: non-negative ints, and every element inside the storage."""
    if not isinstance(storage, StorageRef):
        raise MalformedFileError("a tensor is rebuilt from something other than a storage")
    if not _is_int(offset) or not 0 <= offset < MAX_DIM:
        raise MalformedFileError("a tensor's storage offset is not a non-negative integer")
    shape = _int_tuple(size, "sizes")
    strides = _int_tuple(stride, "strides")
    if len(shape) != len(strides):
        raise MalformedFileError(f"a tensor has {len(shape)} sizes but {len(strides)} strides")
    dtype = dtype or storage.dtype
    if dtype is None:
        raise UnsupportedFormatError(f"tensors of type torch.{torch_dtype or storage.torch_dtype} are not supported")
    itemsize = dtypes.get(dtype).type_size
    elements = 1
    last = offset
    for dim, st in zip(shape, strides, strict=True):
        elements *= dim
        last += (dim - 1) * st if dim else 0
    if elements and (last + 1) * itemsize > storage.nbytes:
        raise MalformedFileError(
            f"a tensor view (offset {offset:,}, shape {list(shape)}, strides {list(strides)}) reaches past the end "
            f"of its storage {storage.key!r} ({storage.nbytes:,} bytes)")
    if elements >= 1 << 63:
        raise MalformedFileError("a tensor's element count overflows int64")
    if elements * itemsize > MAX_REPEAT * storage.nbytes + MAX_EXPANDED_BYTES:
        # stride-0 views (expand) are legitimate and read in bounded blocks, but every element costs time
        raise MalformedFileError(f"a tensor view of {elements:,} elements repeats its storage {storage.key!r} "
                                 f"({storage.nbytes:,} bytes) implausibly often")
    return TensorRecord(storage, offset, shape, strides, dtype)


def _tensor_v1(func: Global, args: tuple, kwargs: dict) -> TensorRecord:
    if len(args) != 4:
        raise MalformedFileError(f"{func.name} takes 4 arguments, got {len(args)}")
    return make_tensor(*args)


def _tensor_v2(func: Global, args: tuple, kwargs: dict) -> TensorRecord:
    if not 6 <= len(args) <= 7:
        raise MalformedFileError(f"{func.name} takes 6 or 7 arguments, got {len(args)}")
    tensor = make_tensor(*args[:4])
    _finish_tensor(tensor, args[4], args[6] if len(args) > 6 else None)
    return tensor


def _tensor_v3(func: Global, args: tuple, kwargs: dict) -> TensorRecord:
    if not 7 <= len(args) <= 8:
        raise MalformedFileError(f"{func.name} takes 7 or 8 arguments, got {len(args)}")
    dtype = args[6]
    if not isinstance(dtype, Global) or dtype.kind != "torch_dtype":
        raise MalformedFileError("_rebuild_tensor_v3 needs a torch dtype")
    tensor = make_tensor(*args[:4], dtype=dtype.info, torch_dtype=dtype.name)
    _finish_tensor(tensor, args[4], args[7] if len(args) > 7 else None)
    return tensor


def _finish_tensor(tensor: TensorRecord, requires_grad: Any, metadata: Any) -> None:
    tensor.requires_grad = requires_grad is True
    if isinstance(metadata, dict) and any(metadata.get(k) for k in ("conj", "neg")):
        raise UnsupportedFormatError("a tensor is stored with a lazy conjugate/negative bit, which is not supported")


def _parameter(func: Global, args: tuple, kwargs: dict) -> TensorRecord:
    if len(args) not in (3, 4) or not isinstance(args[0], TensorRecord):
        raise MalformedFileError(f"{func.name} needs a tensor")
    args[0].is_parameter = True
    args[0].requires_grad = args[1] is True
    return args[0]


def _from_type_v2(func: Global, args: tuple, kwargs: dict) -> Any:
    # _rebuild_from_type_v2(func, new_type, args, state): only plain tensors and Parameters are allowed.
    if len(args) != 4 or not isinstance(args[0], Global) or not isinstance(args[1], Global) \
            or args[1].kind != "tensor_class" or not isinstance(args[2], tuple):
        raise MalformedFileError("_rebuild_from_type_v2 is used in a way no checkpoint does")
    result = call(args[0], args[2], None, "REDUCE")
    if isinstance(result, TensorRecord) and args[1].name == "Parameter":
        result.is_parameter = True
    return result


_CALLS: dict[str, Callable[[Global, tuple, dict], Any]] = {
    "dict_class": _call_dict, "list_class": _call_list, "tuple_class": _call_tuple, "set_class": _call_set,
    "complex": _call_complex, "codecs_encode": _call_codecs_encode, "size": _call_size,
    "inert_class": _call_inert, "reconstructor": _call_reconstructor, "newobj": _call_newobj,
    "np_scalar": _call_np_scalar,
    "np_reconstruct": _call_np_reconstruct, "rebuild_tensor": _tensor_v1, "rebuild_tensor_v2": _tensor_v2,
    "rebuild_tensor_v3": _tensor_v3, "rebuild_parameter": _parameter, "rebuild_parameter_with_state": _parameter,
    "rebuild_from_type_v2": _from_type_v2,
}
