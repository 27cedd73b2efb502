"""The eigensolver (core.eigen): MKL's dsyevd (from torch's library) and LAPACK's two-stage solver, each called on
the matrix in place, agree with numpy's eigvalsh on random, low-rank, clustered and tiny matrices, read only the
lower triangle, copy no matrix, and the numpy fallback gives the same answers where a library is missing or
LAPACK fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import core.eigen
from core.blas import openblas
from core.eigen import solver_name, symmetric_eigenvalues

HAS_LAPACK = core.eigen._two_stage() is not None
needs_lapack = pytest.mark.skipif(not HAS_LAPACK, reason="numpy without its bundled OpenBLAS's dsyevd_2stage")
MKL = core.eigen._SOLVER_THREAD.submit(core.eigen._mkl).result()  # set up on the thread that solves, as in use
needs_mkl = pytest.mark.skipif(MKL is None, reason="no torch with MKL here (x86-64 Linux wheels have it)")
TOL = 1e-10  # relative to the largest |eigenvalue|


def random_gram(n: int, k: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, k))
    return x @ x.T


def low_rank(n: int, seed: int) -> np.ndarray:
    return random_gram(n, 5, seed)  # rank 5: n - 5 eigenvalues at rounding level


def clustered(n: int, seed: int) -> np.ndarray:
    """Eigenvalues in three tight clusters (1, 1 + 1e-12 apart; 2; 1000), in a random orthogonal basis."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    values = np.concatenate([1 + 1e-12 * np.arange(n // 2), np.full(n - n // 2, 2.0)])
    values[-min(3, n):] = 1000.0
    return (q * values) @ q.T


def indefinite(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a + a.T


MATRICES = {"random": lambda n: random_gram(n, n + 13, 1), "low_rank": lambda n: low_rank(n, 2),
            "clustered": lambda n: clustered(n, 3), "indefinite": lambda n: indefinite(n, 4)}


def assert_agrees(got: np.ndarray, g: np.ndarray) -> None:
    want = np.linalg.eigvalsh(g)
    assert got.shape == want.shape and got.dtype == np.float64
    assert np.all(np.diff(got) >= 0), "ascending"
    scale = max(np.abs(want).max(), np.finfo(float).tiny)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * scale)


@pytest.fixture
def lapack_for_every_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The LAPACK path also for the small orders that normally go to numpy."""
    monkeypatch.setattr(core.eigen, "TWO_STAGE_FROM", 1)


@pytest.fixture
def only(monkeypatch: pytest.MonkeyPatch):
    """only(solvers): symmetric_eigenvalues tries exactly these (name, function, thread setter) solvers."""
    def use(*solvers: object) -> None:
        monkeypatch.setattr(core.eigen, "_solvers", lambda n=0: tuple(solvers))
    return use


def run_on_solver_thread(solver: object, g: np.ndarray) -> np.ndarray | None:
    return core.eigen._SOLVER_THREAD.submit(core.eigen._run_dsyevd, solver, g).result()


@needs_lapack
@pytest.mark.usefixtures("lapack_for_every_order")
@pytest.mark.parametrize("kind", sorted(MATRICES))
@pytest.mark.parametrize("n", [1, 2, 3, 17, 300])
def test_two_stage_agrees_with_numpy(kind: str, n: int) -> None:
    g = MATRICES[kind](n)
    work = g.copy()
    got = core.eigen._run_dsyevd(core.eigen._two_stage(), work)
    assert got is not None
    assert_agrees(got, g)
    assert_agrees(symmetric_eigenvalues(g.copy()), g)


@needs_mkl
@pytest.mark.usefixtures("lapack_for_every_order")
@pytest.mark.parametrize("kind", sorted(MATRICES))
@pytest.mark.parametrize("n", [1, 2, 3, 17, 300])
def test_mkl_agrees_with_numpy(kind: str, n: int) -> None:
    assert MKL is not None
    g = MATRICES[kind](n)
    got = run_on_solver_thread(MKL[0], g.copy())
    assert got is not None
    assert_agrees(got, g)
    poisoned = np.tril(g) + np.triu(np.full((n, n), np.nan), 1)  # only the lower triangle is read
    assert_agrees(run_on_solver_thread(MKL[0], poisoned), g)


@needs_mkl
def test_mkl_is_the_first_choice_and_runs_on_one_thread_when_asked() -> None:
    assert core.eigen._solvers(4096)[0][0] == solver_name(4096) == "MKL dsyevd (torch's library)"
    assert solver_name(core.eigen.MKL_FROM - 1) == "LAPACK dsyevd_2stage"  # not worth loading MKL for
    g = random_gram(600, 650, 12)
    assert_agrees(symmetric_eigenvalues(g.copy(), threaded=False), g)
    assert_agrees(symmetric_eigenvalues(g.copy(), threaded=True), g)


@needs_mkl
def test_loading_mkl_imports_no_torch_and_can_be_switched_off() -> None:
    """MKL comes from torch's library without ``import torch`` (1.6 s); WEIGHTSCOPE_MKL=0 leaves it out."""
    code = ("import sys; from core.eigen import solver_name; print(solver_name(4096)); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    for env, want in (({}, "MKL dsyevd (torch's library)"), ({"WEIGHTSCOPE_MKL": "0"}, "LAPACK dsyevd_2stage")):
        assert run_python(code, **env).stdout.strip() == want


@needs_lapack
@pytest.mark.usefixtures("lapack_for_every_order")
def test_tiny_matrices_have_their_known_eigenvalues() -> None:
    np.testing.assert_array_equal(symmetric_eigenvalues(np.array([[3.5]])), [3.5])
    got = symmetric_eigenvalues(np.array([[2.0, 1.0], [1.0, 2.0]]))  # eigenvalues 1 and 3
    np.testing.assert_allclose(got, [1.0, 3.0], rtol=0, atol=4 * np.finfo(float).eps)
    np.testing.assert_array_equal(symmetric_eigenvalues(np.zeros((2, 2))), [0.0, 0.0])


@needs_lapack
def test_only_the_lower_triangle_is_read() -> None:
    n = 400
    g = random_gram(n, 450, 5)
    poisoned = np.tril(g) + np.triu(np.full((n, n), np.nan), 1)
    assert_agrees(symmetric_eigenvalues(poisoned), g)


PEAK_RSS_GROWTH = """
import sys
import numpy as np
from core.eigen import symmetric_eigenvalues


def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


solve = np.linalg.eigvalsh if sys.argv[1] == "numpy" else symmetric_eigenvalues
n = 2048
x = np.random.default_rng(0).standard_normal((n, 64))
g = np.empty((n, n))
np.matmul(x, x.T, out=g)
g.flat[:: n + 1] += 1.0
symmetric_eigenvalues(np.eye(1024))  # the solvers' one-time setup (MKL's library too: order 1024 uses it)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from the present resident size
before = kib("VmRSS")
evals = solve(g)
peak = kib("VmHWM")
assert abs(evals[-1] - np.linalg.norm(x, 2) ** 2 - 1) < 1e-9 * evals[-1]
print((peak - before) * 1024 / g.nbytes)
"""


def peak_rss_growth(solver: str) -> float:
    """Peak resident memory added by one order-2048 eigensolve, in units of the matrix's size (fresh process)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", PEAK_RSS_GROWTH, solver], cwd=root, capture_output=True,
                          text=True, timeout=300, check=True)
    return float(done.stdout.strip())


@needs_lapack
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc peak reset")
def test_the_matrix_is_not_copied() -> None:
    """LAPACKE's row-major wrapper and numpy's eigvalsh each copy the whole matrix (measured: 0.83 and 0.98 of
    it); this solver works in place, its workspace and libraries 0.15-0.2 of it."""
    assert peak_rss_growth("numpy") > 0.5, "the measurement sees a copy where one is made"
    assert peak_rss_growth("ours") < 0.4


@needs_lapack
def test_solver_name_follows_the_order(only) -> None:
    only(("LAPACK dsyevd_2stage", core.eigen._two_stage(), core.eigen._unchanged_threads))
    assert solver_name(4096) == "LAPACK dsyevd_2stage"
    assert solver_name(core.eigen.TWO_STAGE_FROM - 1) == "numpy eigvalsh"


@needs_lapack
def test_non_contiguous_or_float32_input_is_handled() -> None:
    g = random_gram(300, 310, 7)
    assert_agrees(symmetric_eigenvalues(np.asfortranarray(g)), g)  # symmetric: same matrix in either order
    g32 = g.astype(np.float32)
    assert_agrees(symmetric_eigenvalues(g32), g32.astype(np.float64))


def test_fallback_without_any_library(only) -> None:
    """A numpy without the bundled OpenBLAS and no torch: numpy's eigvalsh, same answers."""
    only()
    g = random_gram(300, 320, 8)
    assert solver_name(300) == "numpy eigvalsh"
    assert_agrees(symmetric_eigenvalues(g.copy()), g)


def test_missing_libraries_give_no_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.eigen, "openblas", lambda: None)
    monkeypatch.setattr(core.eigen.importlib.util, "find_spec", lambda name: None)
    assert core.eigen._two_stage() is None
    assert core.eigen._mkl() is None
    assert core.eigen._find_solvers() == ()


@needs_lapack
def test_lapack_failure_falls_back_to_numpy(only) -> None:
    """INFO != 0 in the workspace query (here: an illegal argument reported by a solver that always fails) sends
    the matrix, untouched, to the next solver: never a wrong answer."""
    calls = []

    def failing(*args: object) -> None:
        calls.append(args)
        args[10]._obj.value = -3  # INFO, passed by reference

    only(("failing", failing, core.eigen._unchanged_threads))
    g = random_gram(300, 320, 10)
    assert core.eigen._run_dsyevd(failing, g.copy()) is None
    assert_agrees(symmetric_eigenvalues(g.copy()), g)
    assert calls


def test_a_failed_solve_is_an_error_not_an_answer(only) -> None:
    """A solve that fails after the workspace query has overwritten the matrix: LinAlgError (the spectra give the
    matrix a reason), never eigenvalues of what is left."""

    def fails_to_converge(*args: object) -> None:
        lwork = args[7]._obj.value
        args[10]._obj.value = 0 if lwork == -1 else 7  # the query succeeds, the solve reports INFO 7
        if lwork == -1:
            args[6]._obj.value = 1.0
            args[8]._obj.value = 1

    only(("not converging", fails_to_converge, core.eigen._unchanged_threads))
    with pytest.raises(np.linalg.LinAlgError, match="did not converge"):
        symmetric_eigenvalues(random_gram(300, 320, 11))


@needs_lapack
def test_a_failing_check_disables_the_solvers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A library whose solver gives wrong eigenvalues is never used."""
    monkeypatch.setattr(core.eigen, "_run_dsyevd", lambda solver, g: np.zeros(g.shape[0]))
    assert core.eigen._two_stage() is None
    assert core.eigen._mkl() is None
    monkeypatch.undo()
    assert core.eigen._two_stage() is not None
    assert openblas() is not None


def run_python(code: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter at the repository root (its own libraries and exit); it must succeed."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done


def test_a_running_solve_does_not_hold_up_the_exit() -> None:
    """Quitting during a long solve (minutes for the largest matrices) must not wait for it: the solver thread is a
    daemon. Here a call that would sleep for 10 minutes is running when the interpreter exits."""
    code = ("import time; from core import eigen\n"
            "started = eigen._SOLVER_THREAD.submit(time.sleep, 0)\n"
            "started.result()\n"
            "eigen._SOLVER_THREAD.submit(time.sleep, 600)\n"
            "time.sleep(0.2)\n"
            "print('leaving')\n")
    assert run_python(code, timeout=60).stdout.strip() == "leaving"


def test_an_error_on_the_solver_thread_reaches_the_caller() -> None:
    def fails() -> None:
        raise np.linalg.LinAlgError("no convergence here")

    with pytest.raises(np.linalg.LinAlgError, match="no convergence here"):
        core.eigen._SOLVER_THREAD.submit(fails).result()
    assert core.eigen._SOLVER_THREAD.submit(lambda: 42).result() == 42  # the thread lives on


@needs_mkl
def test_mkl_is_loaded_only_for_orders_where_it_pays() -> None:
    """Below MKL_FROM OpenBLAS's solver serves alone: a model of small matrices never maps torch's 400 MB library
    (0.3-0.4 s of CPU and 120 MB of memory for a few milliseconds of gain)."""
    code = ("import numpy as np; from core import eigen\n"
            "def mapped(): return 'libtorch_cpu' in open('/proc/self/maps').read()\n"
            "x = np.random.default_rng(0).standard_normal((1100, 1200)); g = x @ x.T\n"
            "eigen.symmetric_eigenvalues(g[:600, :600].copy()); small = mapped()\n"
            "eigen.symmetric_eigenvalues(g.copy()); print(small, mapped())\n")
    assert run_python(code).stdout.split() == ["False", "True"]
