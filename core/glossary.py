"""Plain words for the facts the window shows, shared by tooltips and the Legend so the two never disagree."""

from __future__ import annotations

ARCH_HELP: dict[str, str] = {
    "family": "The model family the file names (its config model_type or GGUF architecture).",
    "layers": "How many identical transformer blocks are stacked; each has attention, an MLP and norms.",
    "hidden_size": "The width of the vector that carries each token through the model (d): every block reads and "
                   "writes vectors of this many numbers.",
    "heads": "Attention is split into this many heads, each looking at the tokens in its own way.",
    "kv_heads": "Heads that have their own keys and values. Fewer than the attention heads means grouped-query "
                "attention: several query heads share one key/value head, which shrinks the KV cache.",
    "head_dim": "Numbers per head for queries, keys and values (usually hidden size ÷ heads).",
    "intermediate_size": "The MLP's inner width: each block widens the token vector to this many numbers and back.",
    "vocab_size": "How many distinct tokens the model knows: rows of the embedding table and of the output head.",
    "context_length": "The longest sequence of tokens the model was built to attend over at once.",
    "tied_embeddings": "Yes when the output head reuses the input embedding table, so its parameters count once.",
    "source": "Where these facts were read: config.json, GGUF metadata, or inferred from tensor names and shapes.",
}
NORM_HELP = ("Norms (LayerNorm, RMSNorm) hold scales, not connection strengths: one number per channel that "
             "multiplies the normalised activations, so their values sit near 1 and their counts are tiny.")
NO_BIAS_HELP = ("Zero biases is normal here: Llama-family models use no biases, only weight matrices and norm "
                "scales.")
BITS_PER_WEIGHT_HELP = ("Bits per weight: the bytes the tensor data takes, times 8, over the number of parameters, "
                        "scales and minimums of the quantised blocks included.")
