"""A PEFT adapter_config.json read as hostile data: sizes capped, every field type-checked, nothing evaluated.

PEFT picks a module's rank and alpha from ``rank_pattern`` / ``alpha_pattern`` by matching each key as a
regular expression against the end of the module name (peft.utils.other.get_pattern_key:
``re.match(rf"(.*\\.)?({key})$", name)``, first key in file order wins, rank and alpha looked up apart).
A key is text written by whoever made the file, so a key with more than one repetition operator is not run
(nested or stacked repeats can backtrack for hours); it is named in a warning instead.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field

from core.errors import MalformedFileError

CONFIG_NAME = "adapter_config.json"
MAX_ADAPTER_CONFIG_BYTES = 1 << 20  # real ones are under 2 KB; rank patterns of a huge model a few hundred KB
MAX_PATTERN_KEYS = 10_000
MAX_PATTERN_KEY_CHARS = 512
MAX_MATCHED_NAME_CHARS = 1024  # a longer module name is not matched against patterns (bounded regex time)
MAX_RANK = 1 << 20
_REPEATS = re.compile(r"(?<!\\)[*+?{]")


@dataclass(frozen=True)
class LoraConfig:
    """What adapter_config.json says about a LoRA adapter (None where it is silent)."""

    r: int | None = None
    lora_alpha: float | None = None
    use_rslora: bool = False
    target_modules: list[str] | str | None = None
    base_model: str | None = None
    peft_type: str | None = None
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def rank_for(self, module: str) -> int | None:
        """The module's rank by PEFT's rule: its rank_pattern entry, else r."""
        key = pattern_key(self.rank_pattern, module)
        return self.rank_pattern[key] if key is not None else self.r

    def alpha_for(self, module: str) -> float | None:
        """The module's lora_alpha by PEFT's rule: its alpha_pattern entry, else lora_alpha."""
        key = pattern_key(self.alpha_pattern, module)
        return self.alpha_pattern[key] if key is not None else self.lora_alpha


def pattern_key(patterns: dict[str, object], module: str) -> str | None:
    """The first key of ``patterns`` that matches the end of ``module`` at a dot boundary, PEFT's way."""
    if len(module) > MAX_MATCHED_NAME_CHARS:
        return None
    for key in patterns:
        if _compiled(key).match(module):
            return key
    return None


@functools.lru_cache(maxsize=4096)
def _compiled(key: str) -> re.Pattern[str]:
    return re.compile(rf"(.*\.)?({key})$")


def config_beside(path: str) -> str | None:
    """adapter_config.json in the folder of ``path`` (or in ``path`` itself when it is a folder), if present."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    candidate = os.path.join(folder, CONFIG_NAME)
    return candidate if os.path.lexists(candidate) else None


def read_lora_config(path: str) -> LoraConfig:
    """Parse adapter_config.json at ``path``; a bad value raises one MalformedFileError line naming it."""
    from core.formats import read_small_json

    data = read_small_json(path, MAX_ADAPTER_CONFIG_BYTES)
    return parse_lora_config(data, path)


def parse_lora_config(data: object, path: str | None = None) -> LoraConfig:
    """The checked fields of an adapter_config.json value; unknown fields are ignored."""
    if not isinstance(data, dict):
        raise MalformedFileError(f"{CONFIG_NAME} is not a JSON object", path=path)
    peft_type = _optional_text(data, "peft_type", path)
    r = _optional_rank(data.get("r"), "r", path)
    alpha = _optional_alpha(data.get("lora_alpha"), "lora_alpha", path)
    rslora = data.get("use_rslora", False)
    if rslora is None:
        rslora = False
    if not isinstance(rslora, bool):
        raise _bad("use_rslora", rslora, "true or false", path)
    warnings: list[str] = []
    rank_pattern = _patterns(data, "rank_pattern", path, warnings, lambda v, k: _rank(v, f"rank_pattern[{k!r}]", path))
    alpha_pattern = _patterns(data, "alpha_pattern", path, warnings,
                              lambda v, k: _alpha(v, f"alpha_pattern[{k!r}]", path))
    return LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora, target_modules=_targets(data, path),
                      base_model=_optional_text(data, "base_model_name_or_path", path), peft_type=peft_type,
                      rank_pattern=rank_pattern, alpha_pattern=alpha_pattern, warnings=tuple(warnings))


def _bad(key: str, value: object, expected: str, path: str | None) -> MalformedFileError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return MalformedFileError(f"{CONFIG_NAME}: {key} is {shown}; expected {expected}", path=path)


def _optional_text(data: dict, key: str, path: str | None) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 4096:
        raise _bad(key, value, "a string of at most 4096 characters", path)
    return value


def _optional_rank(value: object, key: str, path: str | None) -> int | None:
    return None if value is None else _rank(value, key, path)


def _rank(value: object, key: str, path: str | None) -> int:
    if type(value) is not int or not 0 < value <= MAX_RANK:
        raise _bad(key, value, f"a whole number from 1 to {MAX_RANK:,}", path)
    return value


def _optional_alpha(value: object, key: str, path: str | None) -> float | None:
    return None if value is None else _alpha(value, key, path)


def _alpha(value: object, key: str, path: str | None) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0 or value > 1e12:
        raise _bad(key, value, "a finite number from 0 to 1e12", path)
    return value


def _patterns(data: dict, key: str, path: str | None, warnings: list[str], check: object) -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(key, value, "an object of module-name patterns", path)
    if len(value) > MAX_PATTERN_KEYS:
        raise MalformedFileError(f"{CONFIG_NAME}: {key} has {len(value):,} entries (at most "
                                 f"{MAX_PATTERN_KEYS:,})", path=path)
    out = {}
    for pattern, setting in value.items():
        checked = check(setting, pattern)  # type: ignore[operator]
        if len(pattern) > MAX_PATTERN_KEY_CHARS or len(_REPEATS.findall(pattern)) > 1:
            warnings.append(f"{CONFIG_NAME}: {key} entry {pattern[:80]!r} not applied: a pattern with more than "
                            f"one repetition or over {MAX_PATTERN_KEY_CHARS} characters is not run as a regular "
                            "expression (it could take unbounded time)")
            continue
        try:
            _compiled(pattern)
        except (re.error, RecursionError, OverflowError):
            raise MalformedFileError(f"{CONFIG_NAME}: {key} entry {pattern[:80]!r} is not a valid regular "
                                     "expression", path=path) from None
        out[pattern] = checked
    return out


def _targets(data: dict, path: str | None) -> list[str] | str | None:
    value = data.get("target_modules")
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > 4096:
            raise _bad("target_modules", value, "a string of at most 4096 characters", path)
        return value
    if not isinstance(value, list) or len(value) > 10_000 \
            or not all(isinstance(v, str) and len(v) <= 1024 for v in value):
        raise _bad("target_modules", value, "a list of module names or one pattern string", path)
    return list(value)
