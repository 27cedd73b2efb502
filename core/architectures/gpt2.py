"""GPT-2: Conv1D weights stored (in, out), learned positions, LayerNorms with biases, head tied to ``wte``.

Names and tensors follow the published ``model.safetensors`` (no ``transformer.`` prefix); the causal-mask
buffers ``attn.bias`` / ``attn.masked_bias`` of old .bin files are not in it, so they are not listed.
"""

from __future__ import annotations

from core.architectures.layout import ConfigView, Layout

MODEL_TYPES = ("gpt2",)


def layout(cfg: ConfigView) -> Layout:
    out = Layout()
    dtype, hidden, vocab = cfg.dtype("F32"), cfg.size("n_embd"), cfg.size("vocab_size")
    inner = cfg.size("n_inner", 4 * hidden)
    out.add("wte.weight", (vocab, hidden), dtype)
    out.add("wpe.weight", (cfg.size("n_positions"), hidden), dtype)
    for i in range(cfg.layers("n_layer")):
        p = f"h.{i}"
        for name, shape in (("ln_1", (hidden,)), ("attn.c_attn", (hidden, 3 * hidden)),
                            ("attn.c_proj", (hidden, hidden)), ("ln_2", (hidden,)),
                            ("mlp.c_fc", (hidden, inner)), ("mlp.c_proj", (inner, hidden))):
            out.add(f"{p}.{name}.weight", shape, dtype)
            out.add(f"{p}.{name}.bias", (shape[-1],), dtype)
    out.add("ln_f.weight", (hidden,), dtype)
    out.add("ln_f.bias", (hidden,), dtype)
    return out
