"""Eigenvalues of analysed matrices cached on disk, beside the statistics cache and keyed the same way.

core.stats_cache does the work: the entry of a data file is keyed by its identity and content fingerprint,
signed with a per-user HMAC key, written atomically, pruned by age; this kind lives in the sub-folder
``weightscope-spectra`` and stores, per tensor, its sorted eigenvalues or the reason it was not analysed.
Metrics are recomputed from the eigenvalues on every use, so a cached figure is the fresh figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.checkpoint import TensorInfo
from core.stats_cache import StatsCache, _blob, _mac, _text, authentic, default_cache_dir

VERSION = 2  # 2: eigenvalues at rounding level replaced by exact singular values squared
MAX_REASON = 500


class SpectraCache(StatsCache):
    """get(t) -> (sorted eigenvalues or None, reason or ""), put(t, (evals, reason)); best effort like StatsCache."""

    subdir = "weightscope-spectra"
    kind = f"weightscope-spectra v{VERSION}"

    @classmethod
    def default(cls) -> SpectraCache:
        return cls(default_cache_dir())

    def _encode_row(self, value: Any) -> dict[str, Any]:
        evals, reason = value
        return {"evals": np.empty(0) if evals is None else np.asarray(evals, np.float64), "reason": str(reason)}

    def _decode_row(self, row: dict[str, Any], t: TensorInfo) -> tuple[np.ndarray | None, str] | None:
        from core.gram import matrix_layout

        evals, reason = row["evals"], row["reason"]
        if reason:
            return (None, reason) if not len(evals) and len(reason) <= MAX_REASON else None
        layout = matrix_layout(t)
        if isinstance(layout, str) or len(evals) != layout.n_evals or not np.isfinite(evals).all():
            return None
        if np.any(evals < 0) or np.any(np.diff(evals) < 0) or evals[-1] <= 0:
            return None
        return evals.copy(), ""

    def _pack_rows(self, rows: dict[str, dict[str, Any]], key_text: str, secret: bytes) -> dict[str, np.ndarray]:
        items = list(rows.items())
        out: dict[str, np.ndarray] = {"version": np.array(VERSION, np.int64), "file_key": _blob([key_text])[0]}
        out["key"], out["key_off"] = _blob([k for k, _ in items])
        out["reason"], out["reason_off"] = _blob([r["reason"] for _, r in items])
        parts = [r["evals"] for _, r in items]
        out["evals"] = np.concatenate(parts) if parts else np.empty(0, np.float64)
        out["evals_off"] = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        out["mac"] = np.frombuffer(_mac(out, secret), np.uint8)
        return out

    def _unpack_rows(self, z: dict[str, np.ndarray], key_text: str, secret: bytes | None) -> dict[str, dict[str, Any]]:
        if not authentic(z, key_text, secret, VERSION):
            return {}
        n = len(z["key_off"]) - 1
        for off in ("key_off", "reason_off", "evals_off"):
            o = z[off]
            if o.shape != (n + 1,) or o[0] != 0 or np.any(np.diff(o) < 0):
                return {}
        if z["evals"].dtype != np.float64 or z["evals_off"][-1] != len(z["evals"]):
            return {}
        rows = {}
        for i in range(n):
            evals = z["evals"][z["evals_off"][i]: z["evals_off"][i + 1]]
            rows[_text(z["key"], z["key_off"], i)] = {"evals": evals, "reason": _text(z["reason"], z["reason_off"], i)}
        return rows
