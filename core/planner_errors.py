"""The one error the memory planner raises for a choice it cannot honour (unknown GPU or dtype, a negative
context, zero GPUs), so the command can turn exactly that into one `error:` line and the app into a message."""

from __future__ import annotations


class PlannerInputError(ValueError):
    """A planner input that cannot be used; ``str(err)`` is the one-line reason."""
