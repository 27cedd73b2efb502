"""Train the bundled sample model: a tiny Llama-style byte-level language model.

The sample exists so that every format and every panel of Weightscope can be
tried on real trained weights (their distributions are the point), without a
download. Run ``python resources/samples/train_sample.py`` to regenerate:

- ``tiny-llama/model.safetensors`` + ``tiny-llama/config.json`` (Hugging Face Llama layout)
- ``tiny-llama.Q8_0.gguf`` (llama.cpp layout, matrices quantised to Q8_0, norms F32)
- ``tiny-llama.pt`` (a ``torch.save`` state dict; we write it, Weightscope never unpickles it)

Plain torch on the CPU (2 threads, fixed seed, about a minute and a half); no transformers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Config:
    """The Hugging Face Llama config fields that fix every tensor's shape."""

    vocab_size: int = 256  # bytes
    hidden_size: int = 128
    intermediate_size: int = 352  # a multiple of 32, so down_proj's rows split into whole Q8_0 blocks
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 128
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 20
    weight_decay: float = 0.1
    seed: int = 1234
    eval_batches: int = 8


# --- the model -----------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def rope_tables(cfg: Config, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for Hugging Face's rotate-half rotary embedding."""
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float32), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        kv_dim = cfg.num_key_value_heads * cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, kv_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, kv_dim, bias=False)
        self.o_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        c = self.cfg
        q = self.q_proj(x).view(b, t, c.num_attention_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        repeat = c.num_attention_heads // c.num_key_value_heads
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, c.hidden_size))


class MLP(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """``model.*`` of a Hugging Face LlamaForCausalLM."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class TinyLlama(nn.Module):
    """Same parameter names as LlamaForCausalLM, so ``state_dict()`` is the HF layout."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        cos, sin = rope_tables(cfg, cfg.max_position_embeddings)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2 style: scale residual projections by depth
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.num_hidden_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.model.norm(x))


# --- training ------------------------------------------------------------------------------


def load_corpus(path: str) -> torch.Tensor:
    """Byte-level tokens: token id = byte value, so the vocabulary is exactly 256."""
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()


def batch(data: torch.Tensor, size: int, length: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(0, len(data) - length - 1, (size,), generator=gen)
    x = torch.stack([data[s : s + length] for s in starts.tolist()])
    y = torch.stack([data[s + 1 : s + length + 1] for s in starts.tolist()])
    return x, y


@torch.no_grad()
def evaluate(model: TinyLlama, data: torch.Tensor, st: TrainSettings) -> float:
    """Mean loss on fixed held-out batches (same batches every call)."""
    gen = torch.Generator().manual_seed(st.seed + 1)
    model.eval()
    losses = []
    for _ in range(st.eval_batches):
        x, y = batch(data, st.batch_size, model.cfg.max_position_embeddings, gen)
        losses.append(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item())
    model.train()
    return sum(losses) / len(losses)


def train(cfg: Config, st: TrainSettings, corpus: str) -> tuple[TinyLlama, dict]:
    torch.manual_seed(st.seed)
    data = load_corpus(corpus)
    split = int(len(data) * 0.95)
    train_data, val_data = data[:split], data[split:]
    model = TinyLlama(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": st.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=st.lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < st.warmup:
            return st.lr * (step + 1) / st.warmup
        progress = (step - st.warmup) / max(1, st.steps - st.warmup)
        return st.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(st.seed)
    start = time.perf_counter()
    initial_val = evaluate(model, val_data, st)
    print(f"step    0  val loss {initial_val:.3f}  (uniform over 256 bytes would be {math.log(256):.3f})")
    first_train = last_train = float("nan")
    for step in range(st.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x, y = batch(train_data, st.batch_size, cfg.max_position_embeddings, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        last_train = loss.item()
        if step == 0:
            first_train = last_train
        if (step + 1) % 25 == 0:
            print(f"step {step + 1:4d}  train loss {last_train:.3f}  {time.perf_counter() - start:5.1f} s", flush=True)
    final_val = evaluate(model, val_data, st)
    seconds = time.perf_counter() - start
    print(f"step {st.steps:4d}  val loss {final_val:.3f}  ({seconds:.1f} s)")
    model.eval()
    report = {"initial_val_loss": round(initial_val, 4), "final_val_loss": round(final_val, 4),
              "first_train_loss": round(first_train, 4), "last_train_loss": round(last_train, 4),
              "seconds": round(seconds, 1), "steps": st.steps, "batch_size": st.batch_size,
              "tokens_seen": st.steps * st.batch_size * cfg.max_position_embeddings}
    return model, report


@torch.no_grad()
def sample_text(model: TinyLlama, prompt: str, n: int = 160, seed: int = 7) -> str:
    """Greedy-ish sampling, only to show in the log that the model learnt English-like text."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.tensor([list(prompt.encode())], dtype=torch.long)
    for _ in range(n):
        logits = model(ids[:, -model.cfg.max_position_embeddings:])[0, -1] / 0.7
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
        ids = torch.cat([ids, nxt[None]], dim=1)
    return bytes(ids[0].tolist()).decode("utf-8", "replace")


# --- writing the three formats -------------------------------------------------------------


def hf_state_dict(model: TinyLlama) -> dict[str, torch.Tensor]:
    """Contiguous float32 copies, Hugging Face names, lm_head dropped when tied."""
    sd = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    if model.cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def hf_config(cfg: Config) -> dict:
    out = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **asdict(cfg),
           "hidden_act": "silu", "head_dim": cfg.head_dim, "attention_bias": False, "mlp_bias": False,
           "bos_token_id": None, "eos_token_id": None, "torch_dtype": "float32",
           "weightscope_sample": {"tokenizer": "bytes (token id = byte value)", "corpus": "corpus.txt"}}
    return out


def write_safetensors(sd: dict[str, torch.Tensor], cfg: Config, folder: str) -> None:
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    save_file(sd, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf_config(cfg), f, indent=2)
        f.write("\n")


def gguf_name(hf_name: str) -> str:
    """llama.cpp's tensor names for the Hugging Face ones."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf_name in fixed:
        return fixed[hf_name]
    parts = hf_name.split(".")  # model.layers.N.<module>.<proj>.weight
    block, rest = parts[2], ".".join(parts[3:])
    per_block = {"self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                 "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                 "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                 "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
                 "post_attention_layernorm.weight": "ffn_norm.weight"}
    return f"blk.{block}.{per_block[rest]}"


def rope_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The row order llama.cpp's converter gives q/k: rotate-half pairs become interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(sd: dict[str, torch.Tensor], cfg: Config, path: str) -> None:
    import gguf
    from gguf.quants import quantize

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("Weightscope tiny-llama sample")
    writer.add_description("A tiny byte-level Llama trained by resources/samples/train_sample.py")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_tokenizer_model("llama")  # every token is a byte token (SentencePiece byte fallback)
    writer.add_token_list([f"<0x{b:02X}>" for b in range(cfg.vocab_size)])
    writer.add_token_scores([0.0] * cfg.vocab_size)
    writer.add_token_types([int(gguf.TokenType.BYTE)] * cfg.vocab_size)
    for name, tensor in sd.items():
        data = tensor.numpy()
        if name.endswith("q_proj.weight"):
            data = rope_permute(data, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            data = rope_permute(data, cfg.num_key_value_heads)
        if data.ndim == 2:
            q8 = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(gguf_name(name), quantize(data, q8), raw_dtype=q8)
        else:
            writer.add_tensor(gguf_name(name), data.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TrainSettings.steps)
    parser.add_argument("--out", default=HERE, help="folder to write the sample into (default: beside this script)")
    parser.add_argument("--corpus", default=os.path.join(HERE, "corpus.txt"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    cfg, st = Config(), TrainSettings(steps=args.steps)
    model, report = train(cfg, st, args.corpus)
    print("sample:", sample_text(model, "Anne Elliot was ").replace("\n", " "))
    sd = hf_state_dict(model)
    write_safetensors(sd, cfg, os.path.join(args.out, "tiny-llama"))
    write_gguf(sd, cfg, os.path.join(args.out, "tiny-llama.Q8_0.gguf"))
    torch.save(sd, os.path.join(args.out, "tiny-llama.pt"))
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
