"""A model without weights: a Hugging Face config.json becomes the tensor list its real checkpoint has.

The tensors come from the family rules in core.architectures (names, shapes, stored dtypes; no file, no
offset), so the tree, kinds, roles, summary and memory figures work as for real weights; there are no
values to read. Only JSON is parsed, through the same bounded reader as every other config.
"""

from __future__ import annotations

import os

from core.architectures import layout_from_config, tensors_of
from core.checkpoint import Checkpoint, FileEntry
from core.errors import CheckpointError, MalformedFileError

SAFETY = "data only: config.json read as JSON; no weights, nothing run"


def open_config(config_path: str, shown_path: str, config: object | None = None) -> Checkpoint:
    """The Checkpoint a config describes; ``config`` is the already-parsed JSON when the caller read it."""
    from core.formats import MAX_CONFIG_BYTES, read_small_json

    if config is None:
        config = read_small_json(config_path, MAX_CONFIG_BYTES)
    if not isinstance(config, dict):
        raise MalformedFileError("config.json is not a JSON object", path=shown_path)
    try:
        layout = layout_from_config(config)
    except CheckpointError as exc:
        raise exc.with_path(shown_path) from None
    size = os.stat(config_path).st_size
    return Checkpoint(format="config", path=shown_path, files=[FileEntry(config_path, size)],
                      tensors=tensors_of(layout), metadata={"config.json": config}, warnings=list(layout.notes),
                      safety=SAFETY)


def looks_like_config(data: object) -> bool:
    """A model config rather than a shard index: names a model type or architectures, and maps no weights."""
    return isinstance(data, dict) and "weight_map" not in data and ("model_type" in data or "architectures" in data)
