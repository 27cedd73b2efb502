"""What every command shares: refused input becomes one `error:` line and exit status 2."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from core.errors import CheckpointError
from core.numbers import human_bytes

EXIT_REFUSED = 2


def fail(reason: str) -> int:
    """Print the one-line reason the way every command does, and return the refusal status."""
    sys.stderr.write(f"error: {' '.join(reason.split())}\n")
    return EXIT_REFUSED


def refuse_on_error(run: Callable[..., int]) -> Callable[..., int]:
    """Turn CheckpointError (and a vanished stdout) into a clean exit; anything else is a bug."""

    @functools.wraps(run)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return run(*args, **kwargs)
        except CheckpointError as exc:
            return fail(str(exc))
        except BrokenPipeError:
            return 0
        except KeyboardInterrupt:
            return fail("interrupted")

    return wrapper


def analyze_with_progress(checkpoint: Any, tensors: Any = None, *, device: str = "auto", use_cache: bool = True) -> Any:
    """Run the whole analysis for a command, with one line of progress on stderr when it is a terminal."""
    from core.stats import analyze

    progress = TerminalProgress() if sys.stderr.isatty() else None
    gen = analyze(checkpoint, tensors, device=device, use_cache=use_cache)
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
        text = f"{pct:5.1f}%  {human_bytes(done)} / {human_bytes(total)}  {tensor}"[: self.columns - 1]
        sys.stderr.write("\r" + text.ljust(self.width))
        sys.stderr.flush()
        self.width = len(text)

    def clear(self) -> None:
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()

