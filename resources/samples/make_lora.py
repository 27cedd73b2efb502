"""Fine-tune a LoRA adapter for the bundled sample model, so Weightscope's LoRA view has a real adapter to show.

``python resources/samples/make_lora.py`` loads ``tiny-llama/model.safetensors`` (safetensors: no unpickling),
freezes it, adds rank-8 LoRA factors (lora_alpha 16) to every ``q_proj`` and ``v_proj`` the way PEFT does
(A Kaiming-uniform, B zero, update = alpha/r * B @ A), trains only the factors on one chapter of
``corpus.txt`` and writes a PEFT-layout adapter:

- ``tiny-llama-lora/adapter_model.safetensors`` (``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight``)
- ``tiny-llama-lora/adapter_config.json``
- ``lora_training.json`` (losses before and after)

Plain torch on the CPU, 2 threads, fixed seed and deterministic algorithms: a few seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from train_sample import Config, TinyLlama, batch, load_corpus  # noqa: E402

RANK = 8
ALPHA = 16
TARGETS = ("q_proj", "v_proj")
STEPS = 80
BATCH = 16
LR = 3e-3
SEED = 4321
CHAPTER = "Chapter 22"  # the fine-tuning text: one chapter, so the adapter learns something the base saw little of


class LoraLinear(nn.Module):
    """A frozen nn.Linear plus PEFT's LoRA branch: y = W x + (alpha / r) * B (A x)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # PEFT's default init
        nn.init.zeros_(self.lora_B.weight)
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.lora_B(self.lora_A(x))


def chapter_text(data: torch.Tensor, corpus: str) -> torch.Tensor:
    """The bytes of CHAPTER (up to the next chapter heading)."""
    with open(corpus, "rb") as f:
        text = f.read()
    start = text.index(CHAPTER.encode())
    end = text.index(b"\nChapter ", start + 1)
    return data[start:end]


@torch.no_grad()
def mean_loss(model: TinyLlama, data: torch.Tensor, seed: int, batches: int = 6) -> float:
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(batches):
        x, y = batch(data, BATCH, model.cfg.max_position_embeddings, gen)
        losses.append(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item())
    return sum(losses) / len(losses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=HERE, help="folder to write into (default: beside this script)")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args(argv)
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    model = TinyLlama(Config())
    model.load_state_dict(load_file(os.path.join(HERE, "tiny-llama", "model.safetensors")), strict=True)
    for p in model.parameters():
        p.requires_grad_(False)
    adapted: dict[str, LoraLinear] = {}
    for i, layer in enumerate(model.model.layers):
        for target in TARGETS:
            wrapped = LoraLinear(getattr(layer.self_attn, target), RANK, ALPHA)
            setattr(layer.self_attn, target, wrapped)
            adapted[f"model.layers.{i}.self_attn.{target}"] = wrapped
    corpus = os.path.join(HERE, "corpus.txt")
    data = load_corpus(corpus)
    chapter = chapter_text(data, corpus)
    held_out = data[int(len(data) * 0.95):]
    before = {"chapter": mean_loss(model, chapter, SEED + 1), "held_out": mean_loss(model, held_out, SEED + 2)}
    params = [p for m in adapted.values() for p in (m.lora_A.weight, m.lora_B.weight)]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    gen = torch.Generator().manual_seed(SEED)
    start = time.perf_counter()
    model.train()
    for step in range(args.steps):
        x, y = batch(chapter, BATCH, model.cfg.max_position_embeddings, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 20 == 0:
            print(f"step {step + 1:4d}  train loss {loss.item():.3f}  {time.perf_counter() - start:5.1f} s", flush=True)
    model.eval()
    after = {"chapter": mean_loss(model, chapter, SEED + 1), "held_out": mean_loss(model, held_out, SEED + 2)}
    folder = os.path.join(args.out, "tiny-llama-lora")
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for name, m in adapted.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = m.lora_A.weight.detach().contiguous().clone()
        tensors[f"base_model.model.{name}.lora_B.weight"] = m.lora_B.weight.detach().contiguous().clone()
    save_file(tensors, os.path.join(folder, "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-llama",
              "r": RANK, "lora_alpha": ALPHA, "lora_dropout": 0.0, "target_modules": list(TARGETS), "bias": "none",
              "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {}, "fan_in_fan_out": False,
              "inference_mode": True}
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    report = {"chapter": CHAPTER, "steps": args.steps, "batch_size": BATCH, "lr": LR, "seed": SEED,
              "loss_before": {k: round(v, 4) for k, v in before.items()},
              "loss_after": {k: round(v, 4) for k, v in after.items()},
              "seconds": round(time.perf_counter() - start, 1)}
    with open(os.path.join(args.out, "lora_training.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
