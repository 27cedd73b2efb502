"""How long opening takes for a 405B-shaped model (191 sparse shards) against a tiny model.

Opening reads headers only, so its time must not grow with the model's size.
The tiny model has the same layout (191 shards, 126 layers, same tensor names)
but a 85,000x smaller size, so the ratio isolates the cost of size.
Targets: under 1 s, and under 1.5x the tiny model's time; exits 1 if missed.
A config-only row opens the bundled Llama 3.1 405B config.json (no weights): target under 100 ms.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.formats import open_checkpoint
from core.reference_models import resolve_reference
from tests.llama_shapes import (
    LLAMA_31_405B,
    LLAMA_31_405B_PARAMETERS,
    write_sparse_sharded_model,
)

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 126, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "tie_word_embeddings": False}


def best_of(path: str, repeats: int = 5) -> tuple[float, int, int]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with open_checkpoint(path) as checkpoint:
            params = checkpoint.parameter_count
            size = checkpoint.file_bytes
        times.append(time.perf_counter() - start)
    return statistics.median(times), params, size


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "llama-405b"
        tiny = Path(tmp) / "tiny"
        write_sparse_sharded_model(str(big), LLAMA_31_405B, shards=191)
        write_sparse_sharded_model(str(tiny), TINY, shards=191)
        big_s, params, size = best_of(str(big))
        tiny_s, tiny_params, tiny_size = best_of(str(tiny))
    assert params == LLAMA_31_405B_PARAMETERS
    print(f"405B-shaped model: {params:,} parameters, {size / 1e9:,.1f} GB in 191 shards, opened in {big_s:.3f} s")
    print(f"tiny model (same layout, {tiny_params:,} parameters, {tiny_size / 1e6:.1f} MB): {tiny_s:.3f} s")
    print(f"ratio 405B/tiny = {big_s / tiny_s:.2f}x (target < 1.5x); size ratio {size / tiny_size:,.0f}x")
    config_s, config_params, _ = best_of(resolve_reference("llama-3.1-405b") or "")
    assert config_params == LLAMA_31_405B_PARAMETERS
    print(f"405B config.json only (no weights): {config_params:,} parameters, opened in {config_s * 1000:.1f} ms "
          "(target < 100 ms)")
    return 0 if big_s < 1.0 and big_s / tiny_s < 1.5 and config_s < 0.1 else 1


if __name__ == "__main__":
    sys.exit(main())
