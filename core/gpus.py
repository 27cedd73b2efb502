"""GPUs people plan for, with the memory each has, so "will it fit on my card?" has a card to ask about.

Capacities are as sold. GPU makers' "GB" on a card is binary (an "80GB" H100 has 80 GiB of HBM), and so is
Apple's unified memory; the driver keeps a little of it, which the planner's runtime-overhead estimate covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.planner_errors import PlannerInputError

GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class GPU:
    name: str  # as people say it, with its memory: "H100 80GB"
    memory_bytes: int
    kind: str  # "consumer" | "workstation" | "data centre" | "apple"
    note: str = ""


_APPLE_NOTE = "unified memory shared with the CPU; macOS lets the GPU use about 65-75% of it by default"


def _card(name: str, gib: int, kind: str, note: str = "") -> GPU:
    return GPU(name, gib * GIB, kind, note)


CATALOG: tuple[GPU, ...] = (
    _card("RTX 3060 12GB", 12, "consumer"),
    _card("RTX 3070 8GB", 8, "consumer"),
    _card("RTX 3080 10GB", 10, "consumer"),
    _card("RTX 3090 24GB", 24, "consumer"),
    _card("RTX 4060 8GB", 8, "consumer"),
    _card("RTX 4060 Ti 16GB", 16, "consumer"),
    _card("RTX 4070 12GB", 12, "consumer"),
    _card("RTX 4080 16GB", 16, "consumer"),
    _card("RTX 4090 24GB", 24, "consumer"),
    _card("RTX 5060 Ti 16GB", 16, "consumer"),
    _card("RTX 5070 12GB", 12, "consumer"),
    _card("RTX 5080 16GB", 16, "consumer"),
    _card("RTX 5090 32GB", 32, "consumer"),
    _card("RX 7900 XTX 24GB", 24, "consumer"),
    _card("RTX A6000 48GB", 48, "workstation"),
    _card("RTX 6000 Ada 48GB", 48, "workstation"),
    _card("RTX PRO 6000 96GB", 96, "workstation"),
    _card("T4 16GB", 16, "data centre"),
    _card("V100 32GB", 32, "data centre"),
    _card("A10 24GB", 24, "data centre"),
    _card("L4 24GB", 24, "data centre"),
    _card("L40S 48GB", 48, "data centre"),
    _card("A100 40GB", 40, "data centre"),
    _card("A100 80GB", 80, "data centre"),
    _card("H100 80GB", 80, "data centre"),
    _card("H100 NVL 94GB", 94, "data centre"),
    _card("H200 141GB", 141, "data centre"),
    _card("B200 192GB", 192, "data centre"),
    _card("MI250X 128GB", 128, "data centre"),
    _card("MI300X 192GB", 192, "data centre"),
    _card("MI325X 256GB", 256, "data centre"),
    *(_card(f"Apple {gib}GB", gib, "apple", _APPLE_NOTE) for gib in (16, 24, 32, 48, 64, 96, 128, 192)),
)


def _key(name: str) -> str:
    return "".join(name.lower().split())


def find_gpu(name: str) -> GPU:
    """The catalog GPU called ``name``, ignoring case and spaces; a part that names one card is enough
    ("4090", "h200"). Unknown or ambiguous names raise PlannerInputError naming candidates."""
    key = _key(name)
    if not key:
        raise PlannerInputError("no GPU named; try one of " + _examples(CATALOG))
    for gpu in CATALOG:
        if _key(gpu.name) == key:
            return gpu
    partial = [gpu for gpu in CATALOG if key in _key(gpu.name)]
    if len(partial) == 1:
        return partial[0]
    if partial:
        raise PlannerInputError(f"GPU {name[:80]!r} could be any of " + ", ".join(g.name for g in partial[:12]))
    raise PlannerInputError(f"unknown GPU {name[:80]!r}; known ones include {_examples(CATALOG)} "
                            "(or give the memory in GiB)")


def _examples(gpus: tuple[GPU, ...]) -> str:
    picks = ("RTX 3090 24GB", "RTX 4090 24GB", "RTX 5090 32GB", "A100 80GB", "H100 80GB", "H200 141GB",
             "MI300X 192GB", "Apple 64GB")
    return ", ".join(g.name for g in gpus if g.name in picks)
