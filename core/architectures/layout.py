"""What a family rule produces: tensor specs grouped by what they count towards, read from a checked config.

A config.json is a file from a user: every size is checked to be a whole number in a sane range before a
single tensor is listed, so a hostile config can neither build millions of records nor make a count up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from core.errors import MalformedFileError

MAX_DIMENSION = 1 << 22  # widths, vocabularies, head sizes: the largest real ones are near 2**18
MAX_LAYERS = 1024
MAX_EXPERTS = 1024
MAX_EXPERT_MATRICES = 1_000_000  # layers x experts: DeepSeek-V3 has 15,000
_TORCH_DTYPES = {"float32": "F32", "float": "F32", "float16": "F16", "half": "F16", "bfloat16": "BF16",
                 "float64": "F64"}


class Spec(NamedTuple):
    """One tensor of the real checkpoint. ``routed``: a routed expert's; ``mtp``: a multi-token-prediction
    layer's (not part of the published count); ``scale``: a quantisation scale, not a parameter of the model.
    A tuple, since DeepSeek-V3 alone lists 90,000 of them."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    routed: bool = False
    mtp: bool = False
    scale: bool = False


@dataclass
class Layout:
    """A model's tensors as its family writes them, plus what the active count needs (MoE routing)."""

    specs: list[Spec] = field(default_factory=list)
    routed_experts: int = 0
    experts_per_token: int = 0
    notes: list[str] = field(default_factory=list)  # plain lines a reader of the count should know
    partial: bool = False  # lists part of what real files hold (a multimodal model's language model, no heads)

    def add(self, name: str, shape: tuple[int, ...], dtype: str, routed: bool = False, mtp: bool = False,
            scale: bool = False) -> None:
        self.specs.append(Spec(name, shape, dtype, routed, mtp, scale))

    def repeat_expert(self, start: int, prefix: str, count: int) -> None:
        """Copy the tensors added since ``start`` (expert 0 under ``prefix``.0) for experts 1 .. count-1:
        one expert's rules, applied once, instead of rebuilding identical shapes a quarter-million times."""
        template = self.specs[start:]
        head = f"{prefix}.0."
        cut = len(head)
        for e in range(1, count):
            new = f"{prefix}.{e}."
            self.specs.extend([Spec(new + s.name[cut:], s.shape, s.dtype, s.routed, s.mtp, s.scale)
                               for s in template])


class ConfigView:
    """Typed, bounded access to a config dict; every refusal is one line naming the key."""

    def __init__(self, config: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
        self.config = config
        self.defaults = defaults or {}

    def _raw(self, key: str) -> Any:
        return self.config[key] if self.config.get(key) is not None else self.defaults.get(key)

    def has(self, key: str) -> bool:
        return self._raw(key) is not None

    def size(self, key: str, default: int | None = None, *, limit: int = MAX_DIMENSION, minimum: int = 1) -> int:
        value = self._raw(key)
        if value is None:
            if default is None:
                raise MalformedFileError(f"config.json has no {key!r}: the tensor list cannot be built")
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= limit:
            raise MalformedFileError(f"config.json {key!r} must be a whole number from {minimum:,} to {limit:,}, "
                                     f"not {str(value)[:40]!r}")
        return value

    def layers(self, key: str = "num_hidden_layers") -> int:
        return self.size(key, limit=MAX_LAYERS)

    def flag(self, key: str, default: bool) -> bool:
        value = self._raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise MalformedFileError(f"config.json {key!r} must be true or false, not {str(value)[:40]!r}")
        return value

    def dtype(self, default: str = "BF16") -> str:
        """The stored element type: ``torch_dtype`` (or the newer ``dtype``); ``default`` when unstated
        (bf16 for today's models; configs older than torch_dtype, GPT-2 and BERT, were saved in fp32)."""
        for key in ("torch_dtype", "dtype"):
            value = self.config.get(key)
            if isinstance(value, str) and value.removeprefix("torch.") in _TORCH_DTYPES:
                return _TORCH_DTYPES[value.removeprefix("torch.")]
        return default

    def head_dim(self) -> int:
        """``head_dim`` when the config states it (Gemma: 256 whatever the width), else hidden / heads."""
        if self.has("head_dim"):
            return self.size("head_dim")
        hidden, heads = self.size("hidden_size"), self.size("num_attention_heads")
        if hidden % heads:
            raise MalformedFileError(f"config.json hidden_size {hidden:,} is not a multiple of "
                                     f"num_attention_heads {heads:,}")
        return hidden // heads


def check_expert_matrices(layers: int, experts: int) -> None:
    if layers * experts > MAX_EXPERT_MATRICES:
        raise MalformedFileError(f"config.json describes {layers * experts:,} expert blocks; at most "
                                 f"{MAX_EXPERT_MATRICES:,} are listed")


def attention(layout: Layout, prefix: str, cfg: ConfigView, dtype: str, *, qkv_bias: bool = False,
              o_bias: bool = False, qk_norm: bool = False) -> None:
    """q/k/v/o projections (nn.Linear: rows out, columns in), grouped-query aware, optional biases and q/k norms."""
    hidden, heads = cfg.size("hidden_size"), cfg.size("num_attention_heads")
    kv_heads, head_dim = cfg.size("num_key_value_heads", heads), cfg.head_dim()
    q_rows, kv_rows = heads * head_dim, kv_heads * head_dim
    for name, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
        layout.add(f"{prefix}.{name}.weight", (rows, hidden), dtype)
        if qkv_bias:
            layout.add(f"{prefix}.{name}.bias", (rows,), dtype)
    layout.add(f"{prefix}.o_proj.weight", (hidden, q_rows), dtype)
    if o_bias:
        layout.add(f"{prefix}.o_proj.bias", (hidden,), dtype)
    if qk_norm:
        layout.add(f"{prefix}.q_norm.weight", (head_dim,), dtype)
        layout.add(f"{prefix}.k_norm.weight", (head_dim,), dtype)


def gated_mlp(layout: Layout, prefix: str, hidden: int, inner: int, dtype: str, *, bias: bool = False,
              names: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj"), **flags: bool) -> None:
    """A SwiGLU/GeGLU feed-forward block: gate and up (inner x hidden), down (hidden x inner)."""
    gate, up, down = names
    for name, shape in ((gate, (inner, hidden)), (up, (inner, hidden)), (down, (hidden, inner))):
        layout.add(f"{prefix}.{name}.weight", shape, dtype, **flags)
        if bias:
            layout.add(f"{prefix}.{name}.bias", (shape[0],), dtype, **flags)


def block_norms(layout: Layout, prefix: str, hidden: int, dtype: str) -> None:
    """The two RMSNorm scales of a Llama-style block: before attention and before the MLP."""
    layout.add(f"{prefix}.input_layernorm.weight", (hidden,), dtype)
    layout.add(f"{prefix}.post_attention_layernorm.weight", (hidden,), dtype)


def final_norm_and_head(layout: Layout, cfg: ConfigView, vocab: int, hidden: int, dtype: str) -> Layout:
    """The final norm, and the output head unless the config ties it to the embedding."""
    layout.add("model.norm.weight", (hidden,), dtype)
    if not cfg.flag("tie_word_embeddings", False):
        layout.add("lm_head.weight", (vocab, hidden), dtype)
    return layout
