"""Statistics as CSV and JSON files, and the atomic write every export (PDF included) goes through.

A write goes to a temporary file in the target's own folder and is renamed
over the target only when complete, so a crash or a full disk never leaves a
half-written file under the user's chosen name, and nothing is ever written
anywhere but the folder the user chose.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.errors import CheckpointError
from core.stats_summary import PERCENTILES, HistSpec, TensorStats, percentile_key


class ExportError(CheckpointError):
    """The output file cannot be written (missing folder, no permission, full disk)."""


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before a long analysis, when ``path`` cannot be written; returns it resolved."""
    target = Path(path).expanduser()
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ExportError(f"cannot write {target}: it is a folder")
    if not folder.is_dir():
        raise ExportError(f"cannot write {target}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {target}: folder {folder} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise ExportError(f"cannot write {target}: the file is read-only")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed."""
    target = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)


# --------------------------------------------------------------------------- statistics tables
CSV_COLUMNS = (
    "name", "kind", "role", "shape", "dtype", "count", "mean", "std", "min", "max", "abs_max", "l2", "zeros",
    "nan", "pos_inf", "neg_inf", "skewness", "kurtosis", "beyond_6_sigma", "exact",
    *(f"p{percentile_key(p)}" for p in PERCENTILES),
)


def _tensor_names(result: Any, names: Iterable[str] | None) -> list[str]:
    return list(result.summaries) if names is None else [n for n in names if n in result.summaries]


# A cell starting with one of these is a formula to Excel, LibreOffice or Sheets (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading apostrophe before anything that starts a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_value(value: Any) -> str:
    """Floats as the shortest text that reads back to the same float; NaN/Inf as nan/inf/-inf; text from the
    file (tensor names) neutralised so a spreadsheet never runs it as a formula. Numbers stay numbers."""
    if isinstance(value, str):
        return neutralise_formula(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def stats_row(ts: TensorStats, info: Any = None) -> dict[str, Any]:
    """One CSV row: the tensor's statistics (and kind, role, shape when its TensorInfo is known)."""
    row: dict[str, Any] = {
        "name": ts.name, "kind": getattr(info, "kind", ""), "role": getattr(info, "role", ""),
        "shape": "x".join(str(d) for d in info.shape) if info is not None else "",
        "dtype": ts.dtype, "count": ts.count, "mean": ts.mean, "std": ts.std, "min": ts.min, "max": ts.max,
        "abs_max": ts.abs_max, "l2": ts.l2, "zeros": ts.zeros, "nan": ts.nan, "pos_inf": ts.pos_inf,
        "neg_inf": ts.neg_inf, "skewness": ts.skewness, "kurtosis": ts.kurtosis,
        "beyond_6_sigma": ts.beyond_6_sigma, "exact": ts.exact,
    }
    for p in PERCENTILES:
        row[f"p{percentile_key(p)}"] = ts.percentiles[percentile_key(p)]
    return row


def write_stats_csv(result: Any, path: str | os.PathLike[str], spec: HistSpec = HistSpec(), checkpoint: Any = None,
                    names: Iterable[str] | None = None) -> int:
    """One row per analysed tensor (file order), atomically; returns the number of rows.

    ``spec`` only matters for what derive computes on the way (a CSV has no histograms);
    ``checkpoint`` adds kind, role and shape columns.
    """
    infos = {t.name: t for t in checkpoint.tensors} if checkpoint is not None else {}
    rows = [stats_row(result.stats(n, spec), infos.get(n)) for n in _tensor_names(result, names)]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return len(rows)


def stats_document(result: Any, spec: HistSpec = HistSpec(), checkpoint: Any = None,
                   names: Iterable[str] | None = None) -> dict[str, Any]:
    """The JSON export: analysis facts, the whole-model statistics and one object per tensor."""
    from core.stats import stats_to_json

    infos = {t.name: t for t in checkpoint.tensors} if checkpoint is not None else {}
    tensors = []
    for name in _tensor_names(result, names):
        obj = stats_to_json(result.stats(name, spec))
        info = infos.get(name)
        if info is not None:
            obj = {"name": name, "kind": info.kind, "role": info.role, "shape": list(info.shape), **obj}
        tensors.append(obj)
    model = result.model(spec)
    doc: dict[str, Any] = {
        "weightscope_stats": 1,
        "device": result.device,
        "seconds": result.seconds,
        "bytes_read": result.bytes_read,
        "model": stats_to_json(model) if model is not None else None,
        "tensors": tensors,
    }
    if checkpoint is not None:
        doc = {"path": checkpoint.path, "format": checkpoint.format, **doc}
    return doc


def write_stats_json(result: Any, path: str | os.PathLike[str], spec: HistSpec = HistSpec(), checkpoint: Any = None,
                     names: Iterable[str] | None = None) -> int:
    """The statistics document (see stats_document) as JSON, atomically; returns the number of tensors."""
    doc = stats_document(result, spec, checkpoint, names)
    write_text_atomic(path, json.dumps(doc, indent=1, allow_nan=False, default=_json_default) + "\n")
    return len(doc["tensors"])


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
