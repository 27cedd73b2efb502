"""One exception family for input we refuse, so every caller can catch exactly that.

Each error carries a one-line, human-readable reason; the CLI prints it as
``error: <reason>`` and the GUI shows it in a dialog. Anything else escaping
the core is a bug.
"""

from __future__ import annotations


class CheckpointError(Exception):
    """The input cannot be opened or read; ``str(err)`` is the one-line reason."""

    def __init__(self, reason: str, *, path: str | None = None) -> None:
        reason = " ".join(str(reason).split())  # always one line
        if path:
            reason = f"{path}: {reason}"
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def with_path(self, path: str) -> CheckpointError:
        """The same error (same class and details) naming ``path``; for readers that learn the path late."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        CheckpointError.__init__(copy, self.reason, path=path)
        return copy


class UnsupportedFormatError(CheckpointError):
    """The file is something we recognise but do not open (TorchScript, GGML, HTML ...)."""


class MalformedFileError(CheckpointError):
    """The file claims a supported format but breaks its rules (truncated, overlapping ...)."""


class UnsafeFileError(CheckpointError):
    """The file would run code if loaded by its native library (pickle globals).

    ``call`` names what the pickle would call ("os.system") and ``arguments`` shows its arguments as inert,
    bounded repr text ("('echo pwned',)"), so the GUI can show both in a details box; either may be "".
    """

    def __init__(self, reason: str, *, path: str | None = None, call: str = "", arguments: str = "") -> None:
        super().__init__(reason, path=path)
        self.call = call
        self.arguments = arguments


class MissingFilesError(CheckpointError):
    """Shards named by an index are absent or are Git LFS pointers instead of weights."""


class ReadError(CheckpointError):
    """Reading tensor data failed: the file changed, shrank or vanished while open."""


class CancelledError(Exception):
    """A long computation was asked to stop; not an input problem."""
