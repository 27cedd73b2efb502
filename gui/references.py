"""The reference models (bundled config.json of well-known models) as the window lists and names them."""

from __future__ import annotations

import os

from core.numbers import human_count
from core.reference_models import ReferenceModel, reference_models, resolve_reference


def reference_list() -> list[ReferenceModel]:
    """Menu order: the three Llama 3.1 sizes first, as core lists them."""
    return reference_models()


def reference_label(ref: ReferenceModel) -> str:
    """"Llama 3.1 405B · 406 B": the name a learner knows and its parameter count (active ones for MoE)."""
    text = f"{ref.title} · {human_count(ref.parameters)}"
    if ref.active_parameters and ref.active_parameters != ref.parameters:
        text += f" ({human_count(ref.active_parameters)} active)"
    return text


def model_path(arg: str) -> str:
    """A command-line model for the window: a path as given, or the bundled config of the reference model of that
    name (the window's open path makes paths absolute, so a bare name would not reach core's own lookup)."""
    if os.path.exists(arg):
        return arg
    return resolve_reference(arg) or arg


def reference_title(path: str) -> str | None:
    """"Llama 3.1 70B" when ``path`` is a bundled reference config (tab titles), else None."""
    wanted = os.path.abspath(path)
    for ref in reference_list():
        if os.path.abspath(ref.path) == wanted:
            return ref.title
    return None
