"""Align the tensors of two models by name, so a comparison pairs what corresponds.

Identical names pair first. What is left pairs through llama.cpp's Hugging Face -> GGUF names
(model.layers.N.self_attn.q_proj.weight <-> blk.N.attn_q.weight and so on), so a GGUF file can be
compared with the safetensors it was converted from. llama.cpp's converter also permutes the rows of
q_proj and k_proj of llama-family models (its rotary embedding pairs neighbouring rows, Hugging Face's
pairs the two halves of each head): such a pair carries the row order that undoes it, so an unchanged
conversion compares as unchanged. Shapes are row-major on both sides (the GGUF reader already reversed
the ne order).

Mixture-of-experts: llama.cpp stores all experts of a layer in one 3-D tensor (blk.N.ffn_gate_exps.weight,
experts x rows x cols, expert e = slice e), Hugging Face one tensor per expert
(model.layers.N.mlp.experts.E.gate_proj.weight, or Mixtral's block_sparse_moe.experts.E.w1). When every
expert of a merged tensor has its per-expert partner of the slice's shape, each slice pairs with its expert
(the slice is named ``blk.N.ffn_gate_exps.weight[E]``); otherwise none pairs and a note says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from core.checkpoint import Checkpoint, TensorInfo

# Architectures whose llama.cpp converter permutes q/k rows (LlamaModel and its subclasses).
PERMUTED_ARCHITECTURES = frozenset({"llama", "deci", "granite", "granitemoe"})

_GLOBAL_NAMES = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
}
_BLOCK_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate": "ffn_gate_inp",  # a mixture-of-experts router (Qwen-MoE, OLMoE, DeepSeek)
    "block_sparse_moe.gate": "ffn_gate_inp",  # ... Mixtral's
    "mlp.shared_expert.gate_proj": "ffn_gate_shexp",
    "mlp.shared_expert.up_proj": "ffn_up_shexp",
    "mlp.shared_expert.down_proj": "ffn_down_shexp",
}
_HF_BLOCK = re.compile(r"model\.layers\.([0-9]{1,9})\.(.+)\.(weight|bias)")
_HF_GLOBAL = re.compile(r"(.+)\.(weight|bias)")
_PERMUTED_GGUF = re.compile(r"blk\.[0-9]{1,9}\.attn_(q|k)\.weight")
_MERGED_EXPERTS = re.compile(r"blk\.([0-9]{1,9})\.ffn_(gate|up|down)_exps\.weight")
_HF_EXPERT = re.compile(r"model\.layers\.([0-9]{1,9})\.(?:mlp|block_sparse_moe)\.experts\.([0-9]{1,9})\."
                        r"(gate_proj|up_proj|down_proj|w1|w3|w2)\.weight")
_EXPERT_ROLE = {"gate_proj": "gate", "w1": "gate", "up_proj": "up", "w3": "up", "down_proj": "down", "w2": "down"}
MAX_EXPERTS = 1 << 16


@dataclass(frozen=True)
class AlignedPair:
    """Tensor ``a`` of model A and ``b`` of model B that hold the same parameter.

    ``b_rows``: when not None, B's rows are in another order: within every block of ``len(b_rows)`` rows,
    row ``i`` in A's order is B's row ``b_rows[i]`` of that block (the block is one attention head).
    """

    a: TensorInfo
    b: TensorInfo
    b_rows: tuple[int, ...] | None = None


@dataclass
class Alignment:
    """Every pair, and the names without a partner, in each model's own order."""

    pairs: list[AlignedPair]
    only_in_a: list[str]
    only_in_b: list[str]
    notes: list[str] = field(default_factory=list)  # plain-text lines: what could not be paired, and why


def gguf_name(hf_name: str) -> str | None:
    """llama.cpp's GGUF name of a Hugging Face llama-layout tensor name, or None if it has none."""
    block = _HF_BLOCK.fullmatch(hf_name)
    if block:
        short = _BLOCK_NAMES.get(block.group(2))
        return None if short is None else f"blk.{int(block.group(1))}.{short}.{block.group(3)}"
    plain = _HF_GLOBAL.fullmatch(hf_name)
    if plain:
        short = _GLOBAL_NAMES.get(plain.group(1))
        return None if short is None else f"{short}.{plain.group(2)}"
    return None


def align(a: Checkpoint, b: Checkpoint) -> Alignment:
    """Pair A's tensors with B's: identical names first, then names without training code's wrapper keys
    ("state_dict.", "module." ...) and llama.cpp's GGUF names."""
    b_by_name = {t.name: t for t in b.tensors}
    a_names = {t.name for t in a.tensors}
    pairs: list[AlignedPair] = []
    paired_b: set[str] = set()
    rest_a: list[TensorInfo] = []
    for t in a.tensors:
        partner = b_by_name.get(t.name)
        if partner is not None and t.name not in paired_b:
            pairs.append(AlignedPair(t, partner))
            paired_b.add(t.name)
        else:
            rest_a.append(t)
    rest_b: dict[str, TensorInfo] = {}
    for t in b.tensors:
        if t.name not in paired_b and t.name not in a_names:
            key = _canonical(t.name)
            if key not in rest_b or t.name == key:  # a bare name wins over a wrapped one, in any file order
                rest_b[key] = t
    unpaired_a: list[TensorInfo] = []
    for t in rest_a:
        partner = rest_b.pop(_canonical(t.name), None) if t.name not in paired_b else None
        if partner is None:
            unpaired_a.append(t)
            continue
        paired_b.add(partner.name)
        pairs.append(AlignedPair(t, partner, _row_order(a, t, b, partner)))
    notes: list[str] = []
    for t, partner in _pair_by_prefix(unpaired_a, rest_b, notes):
        paired_b.add(partner.name)
        pairs.append(AlignedPair(t, partner, _row_order(a, t, b, partner)))
    paired_a = {p.a.name for p in pairs}
    only_in_a = [t.name for t in unpaired_a if t.name not in paired_a]
    only_in_b = [t.name for t in b.tensors if t.name not in paired_b]
    for merged_is_a in (True, False):
        merged_side, per_side = (only_in_a, only_in_b) if merged_is_a else (only_in_b, only_in_a)
        merged_model, per_model = (a, b) if merged_is_a else (b, a)
        expert_pairs, used = _pair_experts(merged_model, merged_side, per_model, per_side, merged_is_a, notes)
        if expert_pairs:
            pairs += expert_pairs
            only_in_a = [n for n in only_in_a if n not in used]
            only_in_b = [n for n in only_in_b if n not in used]
    return Alignment(pairs, only_in_a, only_in_b, notes)


MAX_PREFIX_PARTS = 3  # "model.", "base_model.model.", "transformer.h." ...: a prefix of at most this many names


def _pair_by_prefix(unpaired_a: list[TensorInfo], rest_b: dict[str, TensorInfo],
                    notes: list[str]) -> list[tuple[TensorInfo, TensorInfo]]:
    """Pairs found by setting aside one leading prefix that one side's names carry and the other's do not: a
    Lightning module's ``self.model`` ("model.emb.weight" against the exported "emb.weight"), PEFT's
    "base_model.model.". The prefix that pairs the most tensors of equal shape wins; pairs use up ``rest_b``."""
    if not unpaired_a or not rest_b:
        return []
    a_names = {unwrapped(t.name): t for t in unpaired_a}
    best: tuple[int, str, bool] = (0, "", True)
    for a_has_prefix in (True, False):
        longer, shorter = (a_names, rest_b) if a_has_prefix else (rest_b, a_names)
        for prefix in _prefixes(longer):
            count = sum(1 for name, t in longer.items() if name.startswith(prefix)
                        and (u := shorter.get(_canonical(name[len(prefix):]))) is not None and u.shape == t.shape)
            if count > best[0]:
                best = (count, prefix, a_has_prefix)
    count, prefix, a_has_prefix = best
    if not count:
        return []
    pairs: list[tuple[TensorInfo, TensorInfo]] = []
    if a_has_prefix:
        for name, t in a_names.items():
            if name.startswith(prefix) and (u := rest_b.get(_canonical(name[len(prefix):]))) is not None \
                    and u.shape == t.shape:
                pairs.append((t, rest_b.pop(_canonical(name[len(prefix):]))))
    else:
        by_bare = {_canonical(name): t for name, t in a_names.items()}
        for key, u in list(rest_b.items()):
            t = by_bare.get(_canonical(key[len(prefix):])) if key.startswith(prefix) else None
            if t is not None and t.shape == u.shape:
                pairs.append((t, rest_b.pop(key)))
                del by_bare[_canonical(key[len(prefix):])]
    side = "A" if a_has_prefix else "B"
    notes.append(f"{len(pairs):,} tensors paired by setting aside the prefix {prefix[:200]!r} of {side}'s names")
    return pairs


def _prefixes(names: dict[str, TensorInfo], candidates: int = 4) -> list[str]:
    """The most common leading prefixes (of 1 to MAX_PREFIX_PARTS dotted names) among ``names``."""
    counts: dict[str, int] = {}
    for name in names:
        parts = name.split(".", MAX_PREFIX_PARTS)
        for k in range(1, min(MAX_PREFIX_PARTS, len(parts) - 1) + 1):
            prefix = ".".join(parts[:k]) + "."
            counts[prefix] = counts.get(prefix, 0) + 1
    return sorted(counts, key=lambda p: -counts[p])[:candidates * MAX_PREFIX_PARTS]


def _pair_experts(merged_model: Checkpoint, merged_names: list[str], per_model: Checkpoint, per_names: list[str],
                  merged_is_a: bool, notes: list[str]) -> tuple[list[AlignedPair], set[str]]:
    """Pairs of each slice of an unpaired merged-experts GGUF tensor with its unpaired per-expert tensor; the
    names used up; a note for each merged tensor whose experts are there but do not line up."""
    if merged_model.format != "gguf" or not merged_names or not per_names:
        return [], set()
    per_left = set(per_names)
    experts: dict[tuple[int, str, int], TensorInfo] = {}
    for t in per_model.tensors:
        match = _HF_EXPERT.fullmatch(unwrapped(t.name)) if t.name in per_left else None
        if match:
            experts[(int(match.group(1)), _EXPERT_ROLE[match.group(3)], int(match.group(2)))] = t
    if not experts:
        return [], set()
    merged_left = set(merged_names)
    pairs: list[AlignedPair] = []
    used: set[str] = set()
    for m in merged_model.tensors:
        match = _MERGED_EXPERTS.fullmatch(m.name) if m.name in merged_left else None
        if not match:
            continue
        layer, role = int(match.group(1)), match.group(2)
        found = [t for (n, r, _), t in experts.items() if n == layer and r == role]
        if not found:
            continue
        why = _why_experts_differ(m, layer, role, experts, len(found))
        if why is not None:
            notes.append(f"{m.name} not compared with the per-expert tensors of layer {layer}: {why}")
            continue
        count = m.shape[0]
        for e in range(count):
            view, expert = _expert_slice(m, e), experts[(layer, role, e)]
            pairs.append(AlignedPair(view, expert) if merged_is_a else AlignedPair(expert, view))
            used.add(expert.name)
        used.add(m.name)
    return pairs, used


def _why_experts_differ(m: TensorInfo, layer: int, role: str, experts: dict[tuple[int, str, int], TensorInfo],
                        found: int) -> str | None:
    if len(m.shape) != 3 or not 0 < m.shape[0] <= MAX_EXPERTS or m.strides is not None \
            or m.nbytes % m.shape[0] != 0:
        return f"not a stack of experts (shape {list(m.shape)})"
    count, shape = m.shape[0], tuple(m.shape[1:])
    if found != count or any((layer, role, e) not in experts for e in range(count)):
        return f"it holds {count} experts, {found} per-expert {role} tensors were found"
    odd = next((t for e in range(count) if (t := experts[(layer, role, e)]).shape != shape), None)
    if odd is not None:
        return f"an expert slice is {list(shape)}, {odd.name} is {list(odd.shape)}"
    return None


def _expert_slice(m: TensorInfo, e: int) -> TensorInfo:
    """Expert ``e`` of a merged-experts tensor, as a tensor record of its own (slice e of the first axis)."""
    per = m.nbytes // m.shape[0]
    return TensorInfo(f"{m.name}[{e}]", tuple(m.shape[1:]), m.dtype, m.elements // m.shape[0], per, m.file,
                      m.offset + e * per, m.kind, m.role)


# Keys that training code wraps a state dict in: Lightning's "state_dict", torch's DistributedDataParallel
# "module", torch.compile's "_orig_mod", hand-written loops' "model_state_dict". A Lightning checkpoint and the
# weights exported from it name the same tensor with and without them.
_WRAPPERS = ("state_dict.", "model_state_dict.", "model_state.", "module.", "_orig_mod.")


def unwrapped(name: str) -> str:
    """``name`` without the container keys training code puts in front of a model's own names."""
    while name.startswith(_WRAPPERS):
        name = name.split(".", 1)[1]
    return name


def _canonical(name: str) -> str:
    name = unwrapped(name)
    return gguf_name(name) or name


def _row_order(a: Checkpoint, ta: TensorInfo, b: Checkpoint, tb: TensorInfo) -> tuple[int, ...] | None:
    """The row order within a head that maps B's rows onto A's, for a q/k pair across llama.cpp's conversion."""
    if _PERMUTED_GGUF.fullmatch(tb.name) and b.format == "gguf" and ta.name != tb.name:
        heads = _heads(b, tb.name)
        if heads is None or not _permutable(ta, heads):
            return None
        return tuple(int(i) for i in gguf_rows_of_hf(ta.shape[0] // heads))  # A is HF: take B's GGUF rows back
    if _PERMUTED_GGUF.fullmatch(ta.name) and a.format == "gguf" and ta.name != tb.name:
        heads = _heads(a, ta.name)
        if heads is None or not _permutable(tb, heads):
            return None
        return tuple(int(i) for i in hf_rows_of_gguf(tb.shape[0] // heads))
    return None


def _permutable(t: TensorInfo, heads: int) -> bool:
    return len(t.shape) >= 1 and heads > 0 and t.shape[0] > 0 and t.shape[0] % (2 * heads) == 0


def _heads(gguf: Checkpoint, name: str) -> int | None:
    """Heads the converter used for this q or k tensor, from the GGUF metadata; None if not a permuting arch."""
    arch = gguf.metadata.get("general.architecture")
    if not isinstance(arch, str) or arch not in PERMUTED_ARCHITECTURES:
        return None
    key = f"{arch}.attention.head_count" + ("_kv" if ".attn_k." in name else "")
    heads = gguf.metadata.get(key)
    if isinstance(heads, list):  # per-layer head counts (some GGUFs): take this block's
        index = int(name.split(".")[1])
        heads = heads[index] if index < len(heads) else None
    if heads is None and key.endswith("_kv"):
        heads = gguf.metadata.get(f"{arch}.attention.head_count")
    return heads if isinstance(heads, int) and not isinstance(heads, bool) and heads > 0 else None


@cache
def _gguf_from_hf(head_dim: int) -> np.ndarray:
    """perm with gguf_head = hf_head[perm]: llama.cpp's reshape(2, head_dim/2).swapaxes -> neighbouring rows."""
    return np.arange(head_dim).reshape(2, head_dim // 2).T.reshape(-1)


def gguf_rows_of_hf(head_dim: int) -> np.ndarray:
    """For each row of a head in Hugging Face order, the row of the GGUF head that holds it."""
    return np.argsort(_gguf_from_hf(head_dim))


def hf_rows_of_gguf(head_dim: int) -> np.ndarray:
    """For each row of a head in GGUF order, the row of the Hugging Face head that holds it."""
    return _gguf_from_hf(head_dim).copy()
