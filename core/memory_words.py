"""The memory plan told in plain words for someone who has never sized a model: what a parameter is, what
a precision costs, what the KV cache is, what training adds, and whether it fits. Every figure comes from
the plan, so the words cannot drift from the numbers."""

from __future__ import annotations

from core.memory_plan import MemoryPlan
from core.numbers import three_digits
from core.weight_bytes import GGUF_MIXES, PLAIN_PRECISIONS, bits_per_weight

_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))


def decimal_size(n: int) -> str:
    """Bytes in decimal units, as drives and model cards count: 141 GB."""
    for scale, unit in ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB")):
        if n >= scale:
            return f"{three_digits(n / scale)} {unit}"
    return f"{n:,} bytes"


def binary_size(n: int) -> str:
    """Bytes in binary units, as GPU memory is sold and tools report it: 131 GiB, 320 KiB."""
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return f"{three_digits(n / (1 << shift))} {unit}"
    return f"{n:,} bytes"


def both_sizes(n: int) -> str:
    return f"{decimal_size(n)} ({binary_size(n)})"


def count_words(n: int) -> str:
    """'70.6 billion', '124 million'."""
    for scale, word in _SCALES:
        if n >= scale:
            return f"{three_digits(n / scale)} {word}"
    return f"{n:,}"


def explain(plan: MemoryPlan, gpu_name: str | None = None) -> str:
    """A few short paragraphs about ``plan``, one idea each."""
    paragraphs = [_weights(plan)]
    kv = _kv(plan)
    if kv:
        paragraphs.append(kv)
    if plan.active_parameters < plan.parameters:
        paragraphs.append(f"It is a mixture of experts: each token passes through only "
                          f"{count_words(plan.active_parameters)} of the {count_words(plan.parameters)} parameters, "
                          "but all of them must be in memory, because the next token may need other experts.")
    training = _training(plan)
    if training:
        paragraphs.append(training)
    paragraphs.append(_verdict(plan, gpu_name))
    return "\n\n".join(paragraphs) + "\n"


def _weights(plan: MemoryPlan) -> str:
    weights = plan.item("weights").bytes
    params = count_words(plan.parameters)
    if plan.weights in PLAIN_PRECISIONS:
        per = PLAIN_PRECISIONS[plan.weights]
        cost = "half a byte" if per < 1 else ("1 byte" if per == 1 else f"{int(per)} bytes")
        how = f"In {plan.weights} a number takes {cost}"
    elif plan.weights in GGUF_MIXES:
        how = (f"{plan.weights} stores most numbers in blocks that share a scale, mixing "
               f"{' and '.join(GGUF_MIXES[plan.weights])} blocks: about "
               f"{three_digits(weights * 8 / max(plan.parameters, 1))} bits a number")
    elif plan.weights == "stored":
        per = weights / max(plan.parameters, 1)
        size = f"{three_digits(per)} bytes on average"
        if per.is_integer():
            size = f"{per:.0f} byte{'s' if per > 1 else ''}"
        how = f"As stored, a number takes {size}"
    else:
        how = (f"{plan.weights} stores numbers in blocks that share a scale: "
               f"{float(bits_per_weight(plan.weights)):g} bits a number")
    return (f"Each parameter is one number. {how}, so {params} parameters take {both_sizes(weights)} before the "
            "model has read a single word.")


def _kv(plan: MemoryPlan) -> str:
    if plan.kv_bytes_per_token is None or plan.mode != "inference":
        return ""
    if plan.kv_bytes_per_token == 0:
        return "This model reads its whole input at once (an encoder), so it keeps no KV cache."
    cache = plan.item("KV cache").bytes
    sequences = "" if plan.batch == 1 else f" for each of {plan.batch} sequences"
    text = (f"To write each new token, every layer looks back at the keys and values of all earlier tokens; keeping "
            f"them is the KV cache. Each token of context adds {binary_size(plan.kv_bytes_per_token)} in {plan.kv}"
            f"{sequences}, so {plan.context:,} tokens take {both_sizes(cache)}.")
    if any("sliding window" in note for note in plan.notes):
        text += " Some layers look back only over a sliding window, so their share stops growing at its length."
    return text


def _training(plan: MemoryPlan) -> str:
    if plan.mode == "full":
        grads = plan.item("gradients").bytes
        states = plan.item("optimizer states").bytes
        return (f"Training changes every number, so each needs a gradient ({both_sizes(grads)} in all), and the "
                f"optimizer keeps its own running averages and copies ({both_sizes(states)}). The activations, "
                "what each layer computed on the way forward, are kept for the way back.")
    if plan.mode == "lora":
        adapters = plan.item("LoRA adapters").bytes // 4
        return (f"LoRA freezes the model and trains small adapter matrices beside it ({count_words(adapters)} "
                "parameters), so gradients and optimizer states stay small; the activations kept for the backward "
                "pass take most of the extra memory.")
    return ""


def _verdict(plan: MemoryPlan, gpu_name: str | None) -> str:
    total = f"Altogether about {both_sizes(plan.total_bytes)}, counting estimated activations and overhead."
    if plan.gpu_bytes is None:
        return total
    card = gpu_name or f"a {binary_size(plan.gpu_bytes)} GPU"
    gpus = f"One {card}" if plan.gpus == 1 else f"{plan.gpus} x {card}"
    held = both_sizes(plan.capacity_bytes or 0)
    if plan.fits:
        room = f" Up to {plan.max_context:,} tokens of context would fit." if plan.max_context else ""
        return f"{total} {gpus} holds {held}: it fits.{room}"
    need = f"at least {plan.min_gpus} of them" if plan.min_gpus else "more GPUs than any plan here counts"
    return f"{total} {gpus} holds {held}: it does not fit; it needs {need}."
