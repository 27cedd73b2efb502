"""What every command shares: refused input becomes one `error:` line and exit status 2; one of our bugs
becomes one `error: internal error ...` line naming an incident log, and exit status 1. No traceback reaches
the terminal, and file-derived text in these lines is escaped (core.text.terminal_safe)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from core.errors import CheckpointError
from core.numbers import human_bytes
from core.text import terminal_safe

EXIT_REFUSED = 2
EXIT_BUG = 1
ERROR_LINE_LIMIT = 2000

# What the command is doing now, innermost last; left in place when an exception escapes a stage,
# so the boundary can say what was going on. A CLI process runs one command at a time.
_stages: list[str] = []


def fail(reason: str) -> int:
    """Print the one-line reason the way every command does, and return the refusal status."""
    sys.stderr.write(f"error: {terminal_safe(' '.join(str(reason).split()), ERROR_LINE_LIMIT)}\n")
    return EXIT_REFUSED


@contextlib.contextmanager
def stage(what: str) -> Iterator[None]:
    """Name what a command is doing ("reading the metadata of 'x.ckpt'") for the internal-error line."""
    _stages.append(what)
    yield  # no finally: an escaping exception leaves the stage for the boundary to read
    _stages.pop()


def report_internal_error(exc: BaseException, context: str) -> int:
    """Log a bug's traceback to an incident file and print the one line that points to it."""
    from core.logs import describe_internal_error, write_incident

    log_path = write_incident(exc, context)
    sys.stderr.write(f"error: {describe_internal_error(exc, context, log_path)}\n")
    return EXIT_BUG


def run_guarded(run: Callable[[], int], context: str) -> int:
    """Run a command body at the boundary: refusals exit 2, a closed stdout exits quietly, bugs exit 1."""
    _stages.clear()
    try:
        return run()
    except CheckpointError as exc:
        return fail(str(exc))
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return fail("interrupted")
    except Exception as exc:  # the boundary: anything else is our bug, reported once and logged
        return report_internal_error(exc, _stages[-1] if _stages else context)
    finally:
        _stages.clear()


def refuse_on_error(run: Callable[..., int]) -> Callable[..., int]:
    """Decorate a command's run(args) with the error boundary (see run_guarded)."""
    command = run.__module__.rsplit(".", 1)[-1].removesuffix("_command")

    @functools.wraps(run)
    def wrapper(*args: object, **kwargs: object) -> int:
        path = getattr(args[0], "path", None) if args else None
        context = f"running {command} on {path!r}" if path is not None else f"running {command}"
        return run_guarded(lambda: run(*args, **kwargs), context)

    return wrapper


def _silence_stdout() -> None:
    """After the reader of our output went away, send what is left nowhere (no second error at exit)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def analyze_with_progress(checkpoint: Any, tensors: Any = None, *, device: str = "auto", use_cache: bool = True,
                          impl: str = "auto") -> Any:
    """Run the whole analysis for a command, with one line of progress on stderr when it is a terminal.

    ``impl`` other than "auto" names the CPU implementation (core.compute.IMPLS) for ``--impl``."""
    from core.stats import analyze

    if impl == "auto":
        return drain_with_progress(analyze(checkpoint, tensors, device=device, use_cache=use_cache))
    from core.compute import make_backend

    backend = make_backend(device, impl=impl)
    try:
        return drain_with_progress(analyze(checkpoint, tensors, device=device, use_cache=use_cache,
                                           backend=backend))
    finally:
        backend.close()


def drain_with_progress(gen: Any) -> Any:
    """Run a progress generator (items with bytes_done, bytes_total, tensor) to its return value, showing one
    line of progress on stderr when it is a terminal."""
    progress = TerminalProgress() if sys.stderr.isatty() else None
    try:
        while True:
            item = next(gen)
            if progress is not None:
                progress.show(item.bytes_done, item.bytes_total, item.tensor)
    except StopIteration as stop:
        return stop.value
    finally:
        if progress is not None:
            progress.clear()


class TerminalProgress:
    """A one-line progress display on stderr (only when stderr is a terminal)."""

    def __init__(self) -> None:
        self.width = 0
        try:
            self.columns = os.get_terminal_size(sys.stderr.fileno()).columns
        except OSError:
            self.columns = 80

    def show(self, done: int, total: int, tensor: str) -> None:
        pct = 100.0 * done / total if total else 100.0
        name = terminal_safe(tensor, max(self.columns, 20))
        text = f"{pct:5.1f}%  {human_bytes(done)} / {human_bytes(total)}  {name}"[: self.columns - 1]
        sys.stderr.write("\r" + text.ljust(self.width))
        sys.stderr.flush()
        self.width = len(text)

    def clear(self) -> None:
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()

