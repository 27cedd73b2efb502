"""What each tensor is for, from its name, shape and dtype.

Kind answers "what sort of number is this": a learned weight, a bias, an
embedding vector table, a buffer (non-learned state of the model), or training
state (optimizer moments, scheduler state, EMA copies: kept to resume training,
not part of the model). Role answers "which part of the network uses it":
attention q/k/v/o, MLP up/gate/down, norm, embedding, head, convolution,
recurrent. Naming schemes covered: Llama/Mistral/Qwen/Gemma (Hugging Face),
Meta's original Llama, Phi, GPT-2, BERT, T5, GGUF ``blk.N``, torchvision CNNs
and torch.nn LSTM/GRU.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from core import dtypes
from core.training_state import TRAINER_SCALARS, is_training_state

if TYPE_CHECKING:
    from core.checkpoint import TensorInfo

KINDS = ("weight", "bias", "embedding", "buffer", "state")
PARAMETER_KINDS = frozenset({"weight", "bias", "embedding"})  # what counts as the model's parameters
ROLES = (
    "attention.q", "attention.k", "attention.v", "attention.o", "attention.qkv", "attention",
    "mlp.up", "mlp.gate", "mlp.down", "mlp.gate_up", "mlp",
    "norm", "embedding", "head", "convolution", "recurrent", "other",
)

KIND_HELP = {
    "weight": "Weights are connection strengths: the learned numbers that multiply a layer's inputs.",
    "bias": "Biases are baseline offsets: learned numbers added after the multiplication, one per output.",
    "embedding": "Embeddings are the learned vectors that represent tokens (or positions): one row per token.",
    "buffer": "Buffers are stored state that is not learned, such as position ids, masks or running averages.",
    "state": "Training state is the values the optimizer or trainer keeps to resume training (Adam moments, "
             "momentum, EMA copies); not part of the model.",
}
KIND_LABELS = {"weight": "Weights", "bias": "Biases", "embedding": "Embeddings", "buffer": "Buffers",
               "state": "Training state"}

_EMBEDDING_MODULES = {
    "embed_tokens", "wte", "wpe", "word_embeddings", "position_embeddings", "token_type_embeddings",
    "token_embd", "tok_embeddings", "embed_positions", "embed_in", "shared", "position_embd", "token_types",
    "embedding", "embeddings", "tok_embd", "pos_embd", "rel_pos_embd", "relative_attention_bias", "embed",
}
_BUFFER_LEAVES = {
    "position_ids", "num_batches_tracked", "running_mean", "running_var", "inv_freq", "masked_bias",
    "causal_mask", "attn_mask", "attention_mask", "mask", "token_type_ids", "_float_tensor", "freqs_cis",
    "cos_cached", "sin_cached", "rope_freqs", "rope_factors_long", "rope_factors_short",
}
_INT_WEIGHT_LEAVES = {"weight", "qweight", "weight_packed", "weight_q"}

# (pattern on the module path, role); first match wins. Patterns see the lower-cased name
# without its final parameter component, with dots as separators.
_ROLE_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), role)
    for p, role in [
        (r"(norm|(^|[._])ln(_?\d+|_f)?($|\.)|layernorm|layer_norm|rms|(^|\.)bn\d*$|batchnorm)", "norm"),
        (r"(qkv|c_attn$|query_key_value|attn_qkv|in_proj)", "attention.qkv"),
        (r"(q_proj|(^|\.)query$|attn_q$|(^|\.)wq$|q_lin$|selfattention\.q$|encdecattention\.q$|(^|\.)q$)",
         "attention.q"),
        (r"(k_proj|(^|\.)key$|attn_k$|(^|\.)wk$|k_lin$|attention\.k$|(^|\.)k$)", "attention.k"),
        (r"(v_proj|(^|\.)value$|attn_v$|(^|\.)wv$|v_lin$|attention\.v$|(^|\.)v$)", "attention.v"),
        (r"(o_proj|out_proj|attn_output|attention\.output\.dense|attention\.wo$|out_lin$|attention\.o$|"
         r"(attn|attention)\.(c_proj|dense|proj)$|(^|\.)o$)", "attention.o"),
        (r"(gate_up_proj|gate_up)", "mlp.gate_up"),
        (r"(gate_proj|ffn_gate|feed_forward\.w1$|(^|\.)w1$|wi_0$|(^|\.)gate$)", "mlp.gate"),
        (r"(up_proj|ffn_up|c_fc$|(^|\.)fc1$|intermediate\.dense|feed_forward\.w3$|(^|\.)w3$|(^|\.)wi$|wi_1$|"
         r"dense_h_to_4h|fc_in$)", "mlp.up"),
        (r"(down_proj|ffn_down|mlp\.c_proj$|(^|\.)fc2$|(^|\.)output\.dense$|feed_forward\.w2$|(^|\.)w2$|"
         r"(^|\.)wo$|dense_4h_to_h|fc_out$)", "mlp.down"),
        (r"(attn|attention)", "attention"),
        (r"(mlp|ffn|feed_forward|densereludense|intermediate)", "mlp"),
        (r"conv", "convolution"),
        (r"(^|\.)(lstm|gru|rnn)s?\d*($|\.)", "recurrent"),
    ]
]
# Every text a role rule matches holds one of these letters or words (q/k/v/o: query, proj, norm, conv, out ...;
# n: ln, bn, attn, lin, ffn, dense, rnn; m: rms, mlp, lstm; g: gate, gru; w: w1, wi, wo): a name of hex digits
# is ruled out by one character-class scan instead of fourteen rule searches. Extend it with every new rule.
_ROLE_LETTERS = re.compile(r"[gkmnoqvw]")
# All role rules as one alternation: it matches exactly when some rule does, so one search replaces fourteen.
_ANY_ROLE_RULE = re.compile("|".join(f"(?:{pattern.pattern})" for pattern, _ in _ROLE_RULES))
_ROLE_F_WORDS = re.compile(r"feed|c_fc|fc[12]")


def may_match_a_role_rule(path: str) -> bool:
    """False only when no role rule can match ``path`` (a sound, cheap pre-check; tests hold it to that)."""
    return _ROLE_LETTERS.search(path) is not None or ("f" in path and _ROLE_F_WORDS.search(path) is not None)


_RECURRENT_LEAF = re.compile(r"^(weight|bias)_(ih|hh|hr)(_l[0-9]+)?(_reverse)?$")


def split_name(name: str) -> tuple[str, str]:
    """('model.layers.0.mlp.up_proj', 'weight') from a full tensor name."""
    module, _, leaf = name.rpartition(".")
    return module, leaf


def classify(name: str, shape: tuple[int, ...], dtype: str) -> tuple[str, str]:
    """Return (kind, role) for one tensor, memoised by its name pattern (see classification_key).

    A million-tensor header repeats a few patterns (``layers.N.mlp.up_proj.weight``); classifying each
    name afresh took ~40 us, a dictionary lookup takes well under one.
    """
    if "." not in name:  # a bare name (hostile headers list a million unique ones): direct, no memo key to build
        if name and not name.strip(_HEX_DIGITS) and "fc" not in name and "feed" not in name:  # is_harmless_bare,
            return _HARMLESS_BARE[_is_integer_dtype(dtype), len(shape) >= 3]  # inlined: a million calls fewer
        return _classify_bare(name, len(shape), dtype)
    key = classification_key(name, shape, dtype)
    found = _MEMO.get(key)
    if found is None:
        found = classify_uncached(name, shape, dtype)
        if len(_MEMO) >= MEMO_LIMIT:  # distinct hostile names must not grow it without bound
            _MEMO.clear()
        _MEMO[key] = found
    return found


def classify_uncached(name: str, shape: tuple[int, ...], dtype: str) -> tuple[str, str]:
    """(kind, role) computed from the name itself: the definition that ``classify`` memoises."""
    kind = tensor_kind(name, shape, dtype)
    return kind, tensor_role(name, shape, kind)


def _classify_bare(name: str, ndim: int, dtype: str) -> tuple[str, str]:
    """classify_uncached for a name without dots, every rule specialised to one component (no module path);
    tests hold the two equal on every word the rules know."""
    if is_harmless_bare(name):  # a hex id: no word of any rule can occur in it (tests check the word sets)
        return "buffer" if _is_integer_dtype(dtype) else "weight", "convolution" if ndim >= 3 else "other"
    low = name.lower()
    if low in TRAINER_SCALARS:
        return "state", "other"
    if low in _BUFFER_LEAVES or (_is_integer_dtype(dtype) and not (low in _INT_WEIGHT_LEAVES and ndim >= 2)):
        kind = "buffer"
    elif low.endswith("bias") or _BIAS_LEAF.match(low):
        kind = "bias"
    elif low in _EMBEDDING_MODULES:
        return "embedding", "embedding"
    else:
        kind = "weight"
    if _RECURRENT_LEAF.match(low):
        return kind, "recurrent"
    if "norm" not in low and (low in _BARE_HEADS or low in _HEAD_MODULES):
        return kind, "head"
    if may_match_a_role_rule(low) and _ANY_ROLE_RULE.search(low):
        for pattern, role in _ROLE_RULES:
            if pattern.search(low):
                return kind, role
    return kind, "convolution" if ndim >= 3 else "other"


_HEX_DIGITS = "0123456789abcdef"


def is_harmless_bare(name: str) -> bool:
    """A bare name of lower-case hex digits without "fc" or "feed": every role rule needs one of g k m n o q v w
    or an f word (may_match_a_role_rule), and every other word the rules know (bias, weight, mask, embed ...) a
    letter outside a-f, except "fc". A header of a million ids ("3e8f1") is classified by three C-level string
    operations each."""
    return bool(name) and not name.strip(_HEX_DIGITS) and "fc" not in name and "feed" not in name


# _classify_bare of a harmless bare name, by (integer dtype, three or more dimensions)
_HARMLESS_BARE = {(integer, conv): ("buffer" if integer else "weight", "convolution" if conv else "other")
                  for integer in (False, True) for conv in (False, True)}
_BARE_HEADS = frozenset({"lm_head", "cls", "score", "qa_outputs", "classifier", "pooler", "output"})


@functools.lru_cache(maxsize=256)
def _is_integer_dtype(dtype: str) -> bool:
    """Known and not floating point: tensor_kind's buffer test."""
    dt = dtypes.lookup(dtype)
    return dt is not None and not dt.is_float


MEMO_LIMIT = 1 << 16
_MEMO: dict[tuple[str, int, str], tuple[str, str]] = {}
# A dotted component of 1-9 ASCII digits. Every rule sees such a component only through its length class
# (layer_index takes 1-9 digits, a param id 1-12, and no rule names a number as a component), so all of them
# classify alike; longer runs and digits inside a component ("fc1", "w3", "4h") stay as they are.
_SHORT_NUMBER_COMPONENT = re.compile(r"(?<![^.])[0-9]{1,9}(?![^.])")


def classification_key(name: str, shape: tuple[int, ...], dtype: str) -> tuple[str, int, str]:
    """What (kind, role) depends on: the name with its block numbers made alike, the shape's rank, the dtype."""
    return _SHORT_NUMBER_COMPONENT.sub("0", name), len(shape), dtype


def tensor_kind(name: str, shape: tuple[int, ...], dtype: str) -> str:
    module, leaf = split_name(name)
    leaf_l = leaf.lower()
    module_last = module.rpartition(".")[2].lower()
    dt = dtypes.lookup(dtype)
    if is_training_state(name):
        return "state"  # Adam moments, scheduler state and EMA copies (buffers included) are not the model
    if leaf_l in _BUFFER_LEAVES or module_last in _BUFFER_LEAVES:
        return "buffer"
    if leaf_l == "bias" and len(shape) == 4 and re.search(r"(^|\.)(attn|attention)$", module.lower()):
        return "buffer"  # GPT-2's causal mask is stored as "attn.bias"
    if dt is not None and not dt.is_float and not (leaf_l in _INT_WEIGHT_LEAVES and len(shape) >= 2):
        return "buffer"  # integer and bool state; packed integer weight matrices stay weights
    if leaf_l.endswith("bias") or _BIAS_LEAF.match(leaf_l):
        return "bias"  # also torch.nn.LSTM/GRU's bias_ih_l0, bias_hh_l1_reverse
    if _is_embedding(module, leaf_l):
        return "embedding"
    return "weight"


_BIAS_LEAF = re.compile(r"^bias(_[a-z0-9]+)*$")


def _is_embedding(module: str, leaf: str) -> bool:
    parts = module.lower().split(".") if module else []
    last = parts[-1] if parts else leaf
    if last in _EMBEDDING_MODULES and leaf in ("weight", "embedding", "embeddings", "") and "norm" not in last:
        return True
    return not module and leaf in _EMBEDDING_MODULES  # bare names such as GPT-2 "wte"


def tensor_role(name: str, shape: tuple[int, ...], kind: str) -> str:
    if kind == "embedding":
        return "embedding"
    if kind == "state":
        return "other"  # not part of the model, so no part of the network uses it
    module, leaf = split_name(name)
    if _RECURRENT_LEAF.match(leaf.lower()):
        return "recurrent"  # torch.nn.LSTM/GRU/RNN gate matrices and biases
    path = module.lower()
    if not path:
        path = leaf.lower()
    if _is_head(path, name):
        return "head"
    if may_match_a_role_rule(path) and _ANY_ROLE_RULE.search(path):  # two C-level searches rule out most names
        for pattern, role in _ROLE_RULES:
            if pattern.search(path):
                return role
    if len(shape) >= 3:
        return "convolution"
    return "other"


_HEAD_MODULES = {"lm_head", "output", "classifier", "score", "head", "qa_outputs", "pooler", "predictions",
                 "cls", "fc", "logits", "proj_out"}


def _is_head(path: str, name: str) -> bool:
    """Output heads sit outside the repeated blocks: lm_head, GGUF's output.weight, classifiers."""
    if layer_index(name) is not None:
        return False
    parts = path.split(".")
    if "norm" in parts[-1]:
        return False
    return parts[0] in ("lm_head", "cls", "score", "qa_outputs") or parts[-1] in _HEAD_MODULES \
        or any(p in ("classifier", "pooler") for p in parts) or (parts[0] == "output" and len(parts) == 1)


# ASCII digits only, at most 9 of them: "layers.²" or a 5,000-digit index is a name, not a block number.
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers?|h|blk|blocks?|block|encoder\.layer|decoder\.layer|transformer\.h)"
                          r"\.([0-9]{1,9})(?:\.|$)")


def layer_block(name: str) -> tuple[int, str] | None:
    """(block index, the name after the block's number) for a tensor inside a repeated block, else None."""
    if "." not in name:
        return None
    match = _LAYER_INDEX.search(name)
    return (int(match.group(1)), name[match.end(1):]) if match else None


def layer_index(name: str) -> int | None:
    """The repeated block a tensor belongs to (``layers.7`` / ``h.7`` / ``blk.7`` -> 7), if any."""
    if "." not in name:  # every block pattern has a dot before its number: skip the search
        return None
    match = _LAYER_INDEX.search(name)
    return int(match.group(1)) if match else None


NO_LAYER = "outside layers"


def group_key(t: TensorInfo, by: str) -> str:
    """The group a tensor belongs to when figures are merged "by role" or "by layer" ("layer 7", "outside layers")."""
    if by == "role":
        return t.role
    index = layer_index(t.name)
    return NO_LAYER if index is None else f"layer {index}"


def group_order(key: str) -> tuple[bool, int]:
    """Layer groups in layer order, the tensors outside layers last."""
    return key == NO_LAYER, int(key.split()[-1]) if key != NO_LAYER else 0
