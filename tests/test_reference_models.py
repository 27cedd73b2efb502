"""Reference models: every bundled config is listed, titled, counted exactly, and reachable by name only."""

from __future__ import annotations

import json
from pathlib import Path

from core.architectures import parameter_counts
from core.reference_models import reference_models, resolve_reference
from tests.test_architectures import PUBLISHED

MODELS = Path(__file__).resolve().parents[1] / "resources" / "models"


def test_every_bundled_config_is_listed_with_its_published_count() -> None:
    listed = {r.name: r for r in reference_models()}
    assert set(listed) == {p.stem for p in MODELS.glob("*.json")} == set(PUBLISHED)
    for name, (total, active) in PUBLISHED.items():
        assert (listed[name].parameters, listed[name].active_parameters) == (total, active)
        assert Path(listed[name].path) == MODELS / f"{name}.json"


def test_menu_order_starts_with_the_three_llama_sizes() -> None:
    first = reference_models()[:3]
    assert [r.title for r in first] == ["Llama 3.1 8B", "Llama 3.1 70B", "Llama 3.1 405B"]
    assert [r.parameters for r in first] == sorted(r.parameters for r in first)


def test_each_config_is_a_plain_hugging_face_config() -> None:
    for path in MODELS.glob("*.json"):
        config = json.loads(path.read_text())
        assert isinstance(config["model_type"], str) and config["architectures"], path.name
        assert parameter_counts(config)["total"] == PUBLISHED[path.stem][0]


def test_resolve_reference() -> None:
    assert resolve_reference("Qwen3-30B-A3B") == str(MODELS / "qwen3-30b-a3b.json")
    assert resolve_reference("gpt2.json") == str(MODELS / "gpt2.json")
    for name in ("", "llama", "../models/gpt2", "resources/models/gpt2", "gpt2/", "llama-3.1-405b\x00"):
        assert resolve_reference(name) is None, name
