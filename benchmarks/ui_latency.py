"""How responsive the window stays while the whole-model analysis of a ~1 GB checkpoint runs.

Writes a Llama-shaped bf16 safetensors file (about 1 GB, in a temporary folder
unless --path is given), opens it in the real MainWindow offscreen with an
empty statistics cache, and while the analysis runs a 5 ms QTimer records how
late each of its ticks arrives. Lateness beyond the 5 ms interval is a stall:
time in which the UI thread could not react. The last line is
``max_stall_ms=<float> p99_stall_ms=<float>`` (targets: max < 50, p99 < 20).

    .venv/bin/python benchmarks/ui_latency.py [--select] [--keep] [--path DIR] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HIDDEN, INTER, LAYERS, VOCAB = 2048, 5632, 8, 32000
BLOCK = 8 << 20  # elements of random data reused (with a twist) for every tensor


def llama_shapes() -> list[tuple[str, tuple[int, ...]]]:
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        out += [(f"{p}.self_attn.{m}_proj.weight", (HIDDEN, HIDDEN)) for m in "qkvo"]
        out += [(f"{p}.mlp.gate_proj.weight", (INTER, HIDDEN)), (f"{p}.mlp.up_proj.weight", (INTER, HIDDEN)),
                (f"{p}.mlp.down_proj.weight", (HIDDEN, INTER)),
                (f"{p}.input_layernorm.weight", (HIDDEN,)), (f"{p}.post_attention_layernorm.weight", (HIDDEN,))]
    return [*out, ("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]


def write_checkpoint(path: str) -> int:
    """A bf16 safetensors file written in streaming fashion; returns its size."""
    shapes = llama_shapes()
    header, offset = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + 2 * n]}
        offset += 2 * n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    base = (rng.standard_normal(BLOCK, dtype=np.float32) * 0.02).view(np.uint32) >> 16
    base = base.astype(np.uint16)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for k, (_name, shape) in enumerate(shapes):
            n = int(np.prod(shape))
            if len(shape) == 1:
                f.write(np.full(n, 0x3F80, dtype=np.uint16).tobytes())  # norms: 1.0
                continue
            twist = np.uint16(k & 0x7)  # vary the low mantissa bits per tensor
            for start in range(0, n, BLOCK):
                count = min(BLOCK, n - start)
                f.write((base[:count] ^ twist).tobytes())
    return os.path.getsize(path)


def measure(path: str, select: bool, device: str) -> tuple[list[float], list[float], float]:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QSettings, Qt, QTimer

    from gui.app import get_app
    from gui.main_window import MainWindow

    app = get_app()
    QSettings().setValue("analysis/device", device)
    window = MainWindow(interactive=False)
    window.resize(1400, 900)
    window.show()
    app.processEvents()

    stalls: list[float] = []
    phase = {"name": "open"}
    open_stalls: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        stall = max(0.0, (now - last[0]) * 1000 - 5.0)
        (stalls if phase["name"] == "analysis" else open_stalls).append(stall)
        if stall > 20 and os.environ.get("UI_LATENCY_DEBUG"):
            print(f"  stall {stall:.0f} ms at {now - t_start:.2f} s ({phase['name']})")
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(5)
    timer.timeout.connect(tick)
    t_start = time.perf_counter()
    timer.start()
    window.open_paths([path])
    while window.current_view() is None:
        app.processEvents()
        time.sleep(0.001)
        if window.errors:
            raise SystemExit(f"error: {window.errors[0][1]}")
    view = window.current_view()
    for _ in range(3):  # the new tab's first layout and paint belong to opening, not to the analysis
        app.processEvents()
    phase["name"] = "analysis"
    last[0] = time.perf_counter()
    start = time.perf_counter()
    if select:
        QTimer.singleShot(300, lambda: view.select_tensor("model.layers.3.mlp.down_proj.weight"))
    while view.analysis_state == "running" or not window.is_idle():
        app.processEvents()
        time.sleep(0.0005)
    seconds = time.perf_counter() - start
    timer.stop()
    if view.analysis_state != "done":
        raise SystemExit(f"error: analysis {view.analysis_state}: {view.analysis_error}")
    print(f"analysis: {len(view.result.summaries)} tensors, {view.result.bytes_read / 2**30:.2f} GiB read in "
          f"{seconds:.1f} s on {view.result.device}")
    window.close()
    return stalls, open_stalls, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="folder for the checkpoint (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    parser.add_argument("--select", action="store_true", help="also select a tensor while the analysis runs")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    args = parser.parse_args()
    folder = args.path or tempfile.mkdtemp(prefix="weightscope-ui-latency-")
    os.makedirs(folder, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="weightscope-ui-latency-cache-")
    os.environ["WEIGHTSCOPE_CACHE_DIR"] = cache  # a cold cache: every byte is really analysed
    path = os.path.join(folder, "model.safetensors")
    try:
        t0 = time.perf_counter()
        size = write_checkpoint(path)
        print(f"wrote {size / 2**30:.2f} GiB bf16 checkpoint in {time.perf_counter() - t0:.1f} s")
        stalls, open_stalls, _ = measure(path, args.select, args.device)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True) if not args.path else os.remove(path)
    arr = np.array(stalls) if stalls else np.zeros(1)
    if open_stalls:
        print(f"while opening (header parse, building and first paint of the tab): "
              f"max_stall_ms={max(open_stalls):.1f}")
    print(f"ticks={len(stalls)} mean_stall_ms={arr.mean():.2f}")
    print(f"max_stall_ms={arr.max():.1f} p99_stall_ms={np.percentile(arr, 99):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
