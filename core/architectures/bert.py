"""BERT encoder (BertModel): word, position and token-type embeddings, post-norm layers, pooler.

Task heads (masked-LM, next-sentence) differ by checkpoint and are not listed: the count is the encoder's,
the figure model cards publish (bert-base-uncased: 109,482,240).
"""

from __future__ import annotations

from core.architectures.layout import ConfigView, Layout

MODEL_TYPES = ("bert",)


def layout(cfg: ConfigView) -> Layout:
    out = Layout(notes=["BertModel: task heads (masked-LM, next-sentence, classifier) are not listed"],
                 partial=True)
    dtype, hidden, inner = cfg.dtype("F32"), cfg.size("hidden_size"), cfg.size("intermediate_size")
    out.add("embeddings.word_embeddings.weight", (cfg.size("vocab_size"), hidden), dtype)
    out.add("embeddings.position_embeddings.weight", (cfg.size("max_position_embeddings"), hidden), dtype)
    out.add("embeddings.token_type_embeddings.weight", (cfg.size("type_vocab_size", 2), hidden), dtype)
    _linear_norm(out, "embeddings.LayerNorm", (hidden,), dtype)
    for i in range(cfg.layers()):
        p = f"encoder.layer.{i}"
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            _linear_norm(out, f"{p}.{name}", (hidden, hidden), dtype)
        _linear_norm(out, f"{p}.attention.output.LayerNorm", (hidden,), dtype)
        _linear_norm(out, f"{p}.intermediate.dense", (inner, hidden), dtype)
        _linear_norm(out, f"{p}.output.dense", (hidden, inner), dtype)
        _linear_norm(out, f"{p}.output.LayerNorm", (hidden,), dtype)
    _linear_norm(out, "pooler.dense", (hidden, hidden), dtype)
    return out


def _linear_norm(out: Layout, prefix: str, shape: tuple[int, ...], dtype: str) -> None:
    """A Linear (rows out, columns in) or a LayerNorm: a weight and a bias of the output width."""
    out.add(f"{prefix}.weight", shape, dtype)
    out.add(f"{prefix}.bias", (shape[0],), dtype)
