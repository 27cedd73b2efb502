"""How a transformer's parameter count adds up, from its architecture, with this model's own numbers.

"405 billion" means little until it is seen to be V×d for the embedding, plus N identical blocks of attention,
MLP and norms, plus the output head. The derivation is exact integer arithmetic, checked against the count of
the tensors in the file: when the two differ the story says by how much instead of pretending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from core.checkpoint import Checkpoint
from core.number_words import count_in_words

_GATED_ROLES = ("mlp.gate", "mlp.gate_up")


@dataclass(frozen=True, slots=True)
class Term:
    """One addend: what it is, how it is computed (with the numbers), and its value."""

    label: str
    formula: str
    value: int


@dataclass(frozen=True, slots=True)
class CountStory:
    embedding: Term
    block_parts: list[Term]  # attention, MLP, norms of one block
    layers: int
    final_norm: Term
    head: Term | None  # None when the output head reuses the embedding (tied)
    actual: int  # the parameters the tensors in the file hold
    notes: list[str] = field(default_factory=list)

    @property
    def block(self) -> int:
        return sum(t.value for t in self.block_parts)

    @property
    def total(self) -> int:
        head = self.head.value if self.head else 0
        return self.embedding.value + self.layers * self.block + self.final_norm.value + head

    @property
    def matches(self) -> bool:
        return self.total == self.actual

    def equation(self) -> str:
        """One line: "embedding 2,101,346,304 + 126 × 3,187,703,808 + norm 16,384 + head ... = 405,853,388,800"."""
        parts = [f"embedding {self.embedding.value:,}", f"{self.layers} × {self.block:,}",
                 f"final norm {self.final_norm.value:,}"]
        if self.head:
            parts.append(f"head {self.head.value:,}")
        return " + ".join(parts) + f" = {self.total:,}"

    def lines(self) -> list[str]:
        """The derivation step by step, in plain text, ending with how it compares with the file."""
        out = [f"Embedding: {self.embedding.formula} = {self.embedding.value:,}"]
        out.append(f"One block = {self.block:,} ({count_in_words(self.block)}):")
        out.extend(f"    {t.label}: {t.formula} = {t.value:,}" for t in self.block_parts)
        out.append(f"Blocks: {self.layers} × {self.block:,} = {self.layers * self.block:,}")
        out.append(f"Final norm: {self.final_norm.formula} = {self.final_norm.value:,}")
        if self.head:
            out.append(f"Output head: {self.head.formula} = {self.head.value:,}")
        else:
            out.append("Output head: tied to the embedding, so it adds nothing")
        out.append(f"Total: {self.equation()}")
        if self.matches:
            out.append(f"This is exactly the {self.actual:,} parameters the file holds.")
        else:
            diff = self.actual - self.total
            out.append(f"The file holds {self.actual:,} parameters: {abs(diff):,} {'more' if diff > 0 else 'fewer'} "
                       "than this formula (biases, extra norms or tensors it does not describe).")
        out.extend(self.notes)
        return out


def count_story(checkpoint: Checkpoint) -> CountStory | BlockStory | None:
    """The derivation from the architecture for a decoder transformer whose facts are all known and whose
    tensors it describes exactly; else the count added up block by block from the tensors themselves (MoE,
    latent attention, extra norms ...); None when neither applies."""
    story = story_from_facts(checkpoint.architecture, checkpoint.parameter_count, _is_gated(checkpoint))
    if story is not None and story.matches:
        return story
    return block_story(checkpoint) or story


_ROLE_GROUPS = (("attention", "attention"), ("mlp", "MLP"), ("norm", "norms"), ("embedding", "embeddings"),
                ("recurrent", "recurrent"), ("convolution", "convolution"))
MAX_SHAPES_SHOWN = 4


@dataclass(frozen=True, slots=True)
class BlockGroup:
    """Consecutive blocks with the same tensors: ``count`` blocks of ``per_block`` parameters each."""

    first: int
    last: int
    parts: list[Term]

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    @property
    def per_block(self) -> int:
        return sum(t.value for t in self.parts)


@dataclass(frozen=True, slots=True)
class BlockStory:
    """The count added up from the tensors: what sits outside the blocks, plus each run of alike blocks."""

    outside: list[Term]
    groups: list[BlockGroup]
    actual: int

    @property
    def total(self) -> int:
        return sum(t.value for t in self.outside) + sum(g.count * g.per_block for g in self.groups)

    @property
    def matches(self) -> bool:
        return self.total == self.actual

    def equation(self) -> str:
        parts = [f"{t.label} {t.value:,}" for t in self.outside[:1]]
        parts += [f"{g.count} × {g.per_block:,}" for g in self.groups]
        parts += [f"{t.label} {t.value:,}" for t in self.outside[1:]]
        return " + ".join(parts) + f" = {self.total:,}"

    def lines(self) -> list[str]:
        out = ["Added up from the tensors, block by block:"]
        for t in self.outside[:1]:
            out.append(f"{t.label.capitalize()}: {t.formula} = {t.value:,}")
        for g in self.groups:
            span = f"block {g.first}" if g.count == 1 else f"blocks {g.first}-{g.last}"
            out.append(f"One of {span} = {g.per_block:,} ({count_in_words(g.per_block)}), × {g.count} = "
                       f"{g.count * g.per_block:,}:")
            out.extend(f"    {t.label}: {t.formula} = {t.value:,}" for t in g.parts)
        for t in self.outside[1:]:
            out.append(f"{t.label.capitalize()}: {t.formula} = {t.value:,}")
        out.append(f"Total: {self.equation()}")
        if self.matches:
            out.append(f"This is exactly the {self.actual:,} parameters the file holds.")
        return out


def block_story(checkpoint: Checkpoint) -> BlockStory | None:
    """The count of the parameters as blocks and the rest; None for a model without numbered blocks."""
    from core.taxonomy import layer_block

    per_layer: dict[int, list[Any]] = {}
    outside: list[Any] = []
    for t in checkpoint.tensors:
        if not t.is_parameter:
            continue
        found = layer_block(t.name)
        if found is None:
            outside.append(t)
        else:
            per_layer.setdefault(found[0], []).append((found[1], t))
    if not per_layer:
        return None
    groups: list[BlockGroup] = []
    previous: tuple | None = None
    for index in sorted(per_layer):
        members = per_layer[index]
        signature = tuple(sorted((suffix, t.shape, t.role) for suffix, t in members))
        if groups and signature == previous and index == groups[-1].last + 1:
            groups[-1] = BlockGroup(groups[-1].first, index, groups[-1].parts)
        else:
            groups.append(BlockGroup(index, index, _terms([t for _, t in members])))
        previous = signature
    terms = _terms(outside)
    embedding = [t for t in terms if t.label == "embeddings"]
    rest = [t for t in terms if t.label != "embeddings"]
    return BlockStory(embedding + rest, groups, checkpoint.parameter_count)


def _terms(tensors: list[Any]) -> list[Term]:
    """One term per kind of part (attention, MLP, norms ...), its formula the shapes that make it up."""
    by_group: dict[str, list[Any]] = {}
    for t in tensors:
        label = next((name for prefix, name in _ROLE_GROUPS if t.role.startswith(prefix)),
                     "output head" if t.role == "head" else "other")
        by_group.setdefault(label, []).append(t)
    out = []
    order = [name for _, name in _ROLE_GROUPS] + ["output head", "other"]
    for label in sorted(by_group, key=order.index):  # canonical: a shuffled or resharded file tells the same story
        members = by_group[label]
        shapes: dict[tuple[int, ...], int] = {}
        for t in members:
            shapes[t.shape] = shapes.get(t.shape, 0) + 1
        ranked = sorted(shapes.items(), key=lambda item: (-math.prod(item[0]) * item[1], item[0]))
        shown = [f"{n}×{'×'.join(f'{d:,}' for d in shape) or '1'}" if n > 1 else '×'.join(f'{d:,}' for d in shape)
                 or "1" for shape, n in ranked[:MAX_SHAPES_SHOWN]]
        more = len(shapes) - MAX_SHAPES_SHOWN
        formula = " + ".join(shown) + (f" + {more} more shape{'s' if more > 1 else ''}" if more > 0 else "")
        out.append(Term(label, formula, sum(t.elements for t in members)))
    return out


def story_from_facts(facts: dict[str, Any], actual: int, gated: bool = True) -> CountStory | None:
    """The same from the facts alone (vocab_size, hidden_size, layers, heads, kv_heads, head_dim, MLP width)."""
    need = ("vocab_size", "hidden_size", "layers", "heads", "intermediate_size")
    values = {k: facts.get(k) for k in need}
    if any(type(v) is not int or v <= 0 for v in values.values()) or facts.get("encoder_only"):
        return None
    vocab, d, layers, heads, width = (values[k] for k in need)
    kv = facts.get("kv_heads") if type(facts.get("kv_heads")) is int and facts["kv_heads"] > 0 else heads
    head_dim = facts.get("head_dim") if type(facts.get("head_dim")) is int and facts["head_dim"] > 0 else d // heads
    q = heads * head_dim
    kv_width = kv * head_dim
    attention = Term("attention", f"query {d:,}×{q:,} + key and value 2×{d:,}×{kv_width:,} + output {q:,}×{d:,}",
                     d * q + 2 * d * kv_width + q * d)
    matrices = 3 if gated else 2
    names = "gate, up and down" if gated else "up and down"
    mlp = Term("MLP", f"{names}: {matrices}×{d:,}×{width:,}", matrices * d * width)
    norms = Term("norms", f"2×{d:,}", 2 * d)
    embedding = Term("embedding", f"vocabulary × hidden size = {vocab:,}×{d:,}", vocab * d)
    tied = facts.get("tied_embeddings") is True
    head = None if tied else Term("head", f"{vocab:,}×{d:,}", vocab * d)
    return CountStory(embedding, [attention, mlp, norms], layers, Term("final norm", f"{d:,}", d), head, actual)


def _is_gated(checkpoint: Checkpoint) -> bool:
    """Llama-style MLPs have a gate projection (three matrices); GPT-2 style have two."""
    roles = checkpoint.by_role()
    return any(roles.get(r) for r in _GATED_ROLES) or not any(k.startswith("mlp") for k in roles)
