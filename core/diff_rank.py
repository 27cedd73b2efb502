"""The low-rank structure of a difference B - A, streamed with the comparison: its top singular values and
rank90, the fewest singular directions that hold 90% of its energy ("this fine-tune is a rank-16 update").

Only 2-D tensors are treated as matrices here (conv kernels and other N-D tensors get null and a reason).
The Gram matrix of D = B - A (in A's coordinates, after any q/k row permutation is undone) is built in float64
over the SMALLER side, in one pass over both files together with the comparison's sums:

* tall D (rows >= cols): the comparison reads whole rows; every chunk adds D_chunk^T D_chunk (cols x cols);
* wide D (rows < cols): the comparison reads column bands (every row's segment of the band); every band adds
  D_band D_band^T (rows x rows).

So at most one Gram matrix and one chunk are in memory, never a whole tensor. Its eigenvalues (core.eigen, or
torch's on an accelerator) are the squared singular values: exact to rounding for the leading ones (1e-9
relative against numpy's SVD in the tests); a singular value far below the largest is known to about
1e-8 of the largest (the Gram squares the spread), which is below what rank90 can notice. The Gram
arithmetic runs on the engine of core.gram: numpy on the CPU (torch is not imported), torch on CUDA or MPS
when present.

Budget: a Gram matrix of order above MAX_GRAM_ORDER (8192: 512 MiB of float64, and an eigensolve of minutes
on a laptop) is refused with a reason; so are pairs with NaN or infinite values (their difference has no
finite singular values).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.checkpoint import TensorInfo
from core.gram import NumpyGram, TorchGram, make_gram_engine

TOP_VALUES = 16  # singular values reported per pair, largest first
ENERGY_SHARE = 0.9  # rank90: the top-k squared singular values hold at least this share of ||D||_F^2
MAX_GRAM_ORDER = 8192  # float64 Gram of 8192^2 = 512 MiB: larger ones are refused, per pair, with a reason


def make_engine(device: str = "auto", impl: str | None = None) -> NumpyGram | TorchGram:
    """The Gram engine for ``--device`` (core.gram's choice); ``impl="torch"`` runs torch's code on the CPU."""
    return make_gram_engine(device, impl)


def why_no_rank(t: TensorInfo) -> str | None:
    """None if the difference of ``t``'s pair gets singular values, else why not (plain text)."""
    if len(t.shape) != 2:
        return f"not a 2-D matrix ({len(t.shape)}-D)"
    rows, cols = t.shape
    if min(rows, cols) == 0:
        return "an empty matrix"
    if min(rows, cols) > MAX_GRAM_ORDER:
        return f"its smaller side ({min(rows, cols):,}) is above the Gram budget of {MAX_GRAM_ORDER:,}"
    return None


def is_wide(t: TensorInfo) -> bool:
    """Wide matrices (fewer rows than columns) are read in column bands, so their rows x rows Gram is one pass."""
    return len(t.shape) == 2 and t.shape[0] < t.shape[1]


class DiffGram:
    """The float64 Gram matrix of one pair's difference, built chunk by chunk on ``engine``."""

    def __init__(self, engine: NumpyGram | TorchGram, t: TensorInfo) -> None:
        self.engine = engine
        self.rows, self.cols = t.shape
        self.wide = self.rows < self.cols
        self.g: Any = engine.zeros(min(self.rows, self.cols), 1)

    def add(self, d: np.ndarray) -> None:
        """Add a chunk of D (float64, 2-D): whole rows of a tall D, or a column band (every row) of a wide D."""
        x = d.reshape(d.shape[0], d.shape[1], 1)
        if not isinstance(self.engine, NumpyGram):
            x = self.engine.upload(x)
        if self.wide and hasattr(self.engine, "add_columns"):  # the lower triangle of G += C C^T, as core.gram
            self.engine.add_columns(self.g, x)
        elif self.wide:
            every = slice(0, self.rows)
            self.engine.add_cross(self.g, x, x, every, every)
        else:
            self.engine.add_tall(self.g, x)

    def finish(self) -> tuple[list[float], int]:
        """The top singular values (largest first, at most TOP_VALUES) and rank90; a zero difference has rank90 0."""
        evals = np.asarray(self.engine.eigenvalues(self.g, 0), dtype=np.float64)
        self.g = None
        return singular_summary(evals)


def singular_summary(evals: np.ndarray) -> tuple[list[float], int]:
    """(top singular values, rank90) from the Gram's eigenvalues (any order; rounding negatives count as 0)."""
    energy = np.sort(np.clip(evals, 0.0, None))[::-1]
    top = [float(np.sqrt(e)) for e in energy[:TOP_VALUES]]
    total = float(energy.sum())
    if total == 0.0:
        return top, 0
    held = np.cumsum(energy)
    return top, int(np.searchsorted(held, ENERGY_SHARE * total * (1 - 1e-12)) + 1)
