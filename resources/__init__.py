"""Where the app's bundled files are, both from a source checkout and from the frozen app.

PyInstaller unpacks data next to the executable under ``sys._MEIPASS`` (the
spec copies ``resources/icons`` and ``resources/samples`` there with the same
relative paths), so one lookup serves both. No Qt here: core code may use it.
"""

from __future__ import annotations

import os
import sys

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
SAMPLE_FORMATS = ("safetensors", "gguf", "pytorch")


def resource_root() -> str:
    """The folder that holds ``icons/`` and ``samples/``."""
    meipass = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and meipass:
        return os.path.join(meipass, "resources")
    return os.path.dirname(os.path.abspath(__file__))


def resource_path(*parts: str) -> str:
    """Absolute path of a bundled file, e.g. ``resource_path("icons", "weightscope-256.png")``.

    The path is returned whether or not it exists; callers check when it matters.
    """
    return os.path.join(resource_root(), *parts)


def icon_paths() -> list[str]:
    """Every PNG size of the app icon that is present, smallest first (for QIcon.addFile)."""
    paths = [resource_path("icons", f"weightscope-{size}.png") for size in ICON_SIZES]
    return [p for p in paths if os.path.isfile(p)]


def sample_model_path(fmt: str = "safetensors") -> str:
    """The bundled sample model: the Hugging Face folder, the Q8_0 GGUF file or the PyTorch file."""
    names = {"safetensors": "tiny-llama", "gguf": "tiny-llama.Q8_0.gguf", "pytorch": "tiny-llama.pt"}
    if fmt not in names:
        raise ValueError(f"unknown sample format {fmt!r}; expected one of {', '.join(SAMPLE_FORMATS)}")
    return resource_path("samples", names[fmt])
