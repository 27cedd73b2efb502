"""What every command shares: refused input becomes one `error:` line and exit status 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from core.errors import CheckpointError

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
