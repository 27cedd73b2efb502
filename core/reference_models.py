"""Well-known models by name: the config.json of each, bundled in resources/models, opened without weights.

Nobody downloads 810 GB to learn what Llama 3.1 405B needs: its config alone gives the exact tensor list,
so `main.py info llama-3.1-405b` and File > Open Reference Model work offline. Titles live here, not in the
configs, so each file stays the model's own config.json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from resources import resource_path

TITLES = {
    "llama-3.1-8b": "Llama 3.1 8B",
    "llama-3.1-70b": "Llama 3.1 70B",
    "llama-3.1-405b": "Llama 3.1 405B",
    "mistral-7b-v0.1": "Mistral 7B v0.1",
    "mixtral-8x7b": "Mixtral 8x7B",
    "qwen2.5-0.5b": "Qwen2.5 0.5B",
    "qwen2.5-7b": "Qwen2.5 7B",
    "qwen3-8b": "Qwen3 8B",
    "qwen3-30b-a3b": "Qwen3 30B-A3B",
    "gemma-2b": "Gemma 2B",
    "gemma-2-9b": "Gemma 2 9B",
    "gemma-3-1b": "Gemma 3 1B",
    "phi-3-mini-4k": "Phi-3 mini 4k",
    "deepseek-v3": "DeepSeek-V3",
    "gpt2": "GPT-2 (124M)",
    "bert-base-uncased": "BERT base uncased",
}


@dataclass(frozen=True, slots=True)
class ReferenceModel:
    name: str  # what the command line accepts, e.g. "llama-3.1-405b"
    title: str  # what a menu shows, e.g. "Llama 3.1 405B"
    path: str  # the bundled config.json
    parameters: int
    active_parameters: int | None  # per token, for mixture-of-experts models


def reference_models() -> list[ReferenceModel]:
    """Every bundled reference model with its exact parameter count, in menu order."""
    return list(_load_all())


@cache
def _load_all() -> tuple[ReferenceModel, ...]:
    from core.architectures import parameter_counts
    from core.formats import MAX_CONFIG_BYTES, read_small_json

    out = []
    for name, title in TITLES.items():
        path = _config_path(name)
        if not os.path.isfile(path):
            continue
        config = read_small_json(path, MAX_CONFIG_BYTES)
        counts = parameter_counts(config)  # type: ignore[arg-type]
        out.append(ReferenceModel(name, title, path, counts["total"], counts.get("active")))
    return tuple(out)


def resolve_reference(name: str) -> str | None:
    """The bundled config of the reference model called ``name`` (any case), or None."""
    key = os.fspath(name).strip().lower().removesuffix(".json")
    if key not in TITLES:
        return None
    path = _config_path(key)
    return path if os.path.isfile(path) else None


def _config_path(name: str) -> str:
    return resource_path("models", f"{name}.json")
