"""How responsive the window stays while it opens a ~1 GB checkpoint and analyses it.

Writes a Llama-shaped bf16 safetensors file (about 1 GB, in a temporary folder
unless --path is given). Each scenario opens it in a fresh MainWindow
offscreen with an empty statistics cache while a 5 ms QTimer records how late
each of its ticks arrives. Lateness beyond the 5 ms interval is a stall: time
in which the UI thread could not react. Scenarios:

* open: from ``open_paths`` until the new tab is built and painted (header parse, tree, Summary);
* analysis: the whole-model analysis running, nothing touched;
* select: a tensor selected while the analysis runs (the Distribution panel built and filled);
* switch: every panel tab shown in turn while the analysis runs (each built on first show), then selections.

One line per scenario, ``scenario=<name> ticks=<n> max_stall_ms=<float> p99_stall_ms=<float> <ok|SLOW>``,
then the worst over all scenarios as ``max_stall_ms=<float> p99_stall_ms=<float>`` (targets: max < 50,
p99 < 20). Exit status 1 when a scenario misses a target.

    .venv/bin/python benchmarks/ui_latency.py [--scenario NAME ...] [--keep] [--path DIR] [--reuse] [--device cpu]

busy_ms is the UI thread's own CPU time between two ticks: on a machine shared with other work a stall can be
much longer (the UI thread waited for a core), busy_ms is what the window's code controls. To find what ran in a
slow turn: UI_LATENCY_DEBUG=1 prints every tick late by 20 ms or busy 12 ms; UI_LATENCY_PROFILE=<ms> profiles
the UI thread and prints the functions of every interval whose busy time (profiler included) passed <ms>.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HIDDEN, INTER, LAYERS, VOCAB = 2048, 5632, 8, 32000
SCENARIOS = ("open", "analysis", "select", "switch")
# tabs the switch scenario shows; Spectra starts its own engine over the whole model when shown (benchmarks/spectra.py)
SWITCHED_TABS = ("tab_distribution", "tab_depth", "tab_heatmap", "tab_findings", "tab_memory")
MAX_TARGET_MS, P99_TARGET_MS = 50.0, 20.0
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


def header_bytes() -> tuple[bytes, int]:
    """The safetensors header (padded to 8 bytes) and the size of the tensor data after it."""
    header, offset = {}, 0
    for name, shape in llama_shapes():
        n = int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + 2 * n]}
        offset += 2 * n
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8), offset


def expected_size() -> int:
    raw, data = header_bytes()
    return 8 + len(raw) + data


def write_checkpoint(path: str) -> int:
    """A bf16 safetensors file written in streaming fashion; returns its size."""
    shapes = llama_shapes()
    raw, _ = header_bytes()
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


class StallMeter:
    """A 5 ms precise timer whose lateness, beyond its interval, is recorded into the current phase."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.phases: dict[str, list[float]] = {}
        self.busy: dict[str, list[float]] = {}  # CPU time the UI thread itself spent between two ticks
        self.phase = "open"
        self.last = time.perf_counter()
        self.last_cpu = time.thread_time()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        # UI_LATENCY_PROFILE=<ms>: name what ran between two ticks whose UI thread time (profiler included) passed it
        self.profile_ms = float(os.environ.get("UI_LATENCY_PROFILE", "0") or 0)
        self.profiler = None

    def _restart_profiler(self) -> None:
        """A fresh cProfile of the UI thread for the next interval between two ticks (debugging only)."""
        import cProfile

        self.profiler = cProfile.Profile(time.thread_time)  # the UI thread's own time, not the shared machine's waits
        self.profiler.enable()

    def _report_profile(self, stall: float, busy: float) -> None:
        """The functions that took most of a slow interval, cumulative, with the calls they made."""
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(self.profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(r"^(?!.*ui_latency).*", 14)
        lines = [ln for ln in out.getvalue().splitlines() if re.match(r"\s*\d", ln)]
        print(f"  -- {stall:.0f} ms stall, {busy:.0f} ms busy (profiled) ({self.phase}):")
        for line in lines:
            print("    " + line.strip()[:160])

    def start(self, phase: str) -> None:
        self.phase = phase
        self.last = time.perf_counter()
        self.last_cpu = time.thread_time()
        self.timer.start()

    def switch(self, phase: str) -> None:
        self.phase = phase

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        stall = max(0.0, (now - self.last) * 1000 - 5.0)
        busy = (cpu - self.last_cpu) * 1000
        self.phases.setdefault(self.phase, []).append(stall)
        self.busy.setdefault(self.phase, []).append(busy)
        if (stall > 20 or busy > 12) and os.environ.get("UI_LATENCY_DEBUG"):
            print(f"  stall {stall:.0f} ms, UI thread busy {busy:.0f} ms of it ({self.phase})")
        if self.profile_ms:
            if self.profiler is not None:
                self.profiler.disable()
                if busy > self.profile_ms:  # the UI thread's own time: what a shared machine cannot inflate
                    self._report_profile(stall, busy)
            self._restart_profiler()
            now, cpu = time.perf_counter(), time.thread_time()  # the profile's report is not the window's stall
        self.last, self.last_cpu = now, cpu


def pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.0005)


def run_scenario(app, path: str, scenario: str, device: str) -> StallMeter:
    """Open ``path`` in a fresh window with a cold cache and run one scenario; the meter holds stalls by phase."""
    from PySide6.QtCore import QSettings, QTimer

    from gui.main_window import MainWindow

    cache = tempfile.mkdtemp(prefix="weightscope-ui-latency-cache-")
    os.environ["WEIGHTSCOPE_CACHE_DIR"] = cache  # a cold cache: every byte is really analysed
    QSettings().setValue("analysis/device", device)
    window = MainWindow(interactive=False)
    window.resize(1400, 900)
    window.show()
    pump(app, 0.3)
    meter = StallMeter()
    try:
        meter.start("open")
        window.open_paths([path])
        while window.current_view() is None:
            app.processEvents()
            time.sleep(0.0005)
            if window.errors:
                raise SystemExit(f"error: {window.errors[0][1]}")
        view = window.current_view()
        page = view.tabs.currentWidget()
        while getattr(page, "panel", True) is None:  # the first panel is built when shown: part of opening
            app.processEvents()
            time.sleep(0.0005)
        pump(app, 0.15)  # the new tab's first layout and paint belong to opening
        meter.switch(scenario)
        start = time.perf_counter()
        if scenario == "select":
            QTimer.singleShot(300, lambda: view.select_tensor("model.layers.3.mlp.down_proj.weight"))
        if scenario == "switch":
            tabs = view.tabs
            shown = [i for i in range(1, tabs.count()) if tabs.widget(i).objectName() in SWITCHED_TABS]
            order = [*shown, 0, *shown]
            for k, index in enumerate(order):
                QTimer.singleShot(150 + 120 * k, lambda i=index: tabs.setCurrentIndex(i))
            for k, name in enumerate(("model.layers.5.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight")):
                QTimer.singleShot(150 + 120 * len(order) + 200 * k, lambda n=name: view.select_tensor(n))
            pump(app, (150 + 120 * len(order) + 400) / 1000)
        while view.analysis_state == "running" or not window.is_idle():
            app.processEvents()
            time.sleep(0.0005)
        seconds = time.perf_counter() - start
        meter.stop()
        if view.analysis_state != "done":
            raise SystemExit(f"error: analysis {view.analysis_state}: {view.analysis_error}")
        print(f"  {scenario}: {len(view.result.summaries)} tensors, {view.result.bytes_read / 2**30:.2f} GiB read, "
              f"{seconds:.1f} s on {view.result.device}")
    finally:
        window.close()
        window.deleteLater()
        pump(app, 0.2)
        shutil.rmtree(cache, ignore_errors=True)
    return meter


def summarise(name: str, stalls: list[float], busy: list[float]) -> tuple[float, float, bool]:
    """One scenario's line. busy_ms is the UI thread's own CPU time between two ticks: on a machine shared with
    other work a stall can be much longer than the work the UI thread did (it waited for a core or the GIL)."""
    arr = np.array(stalls) if stalls else np.zeros(1)
    own = np.array(busy) if busy else np.zeros(1)
    worst, p99 = float(arr.max()), float(np.percentile(arr, 99))
    ok = worst < MAX_TARGET_MS and p99 < P99_TARGET_MS
    print(f"scenario={name} ticks={len(stalls)} max_stall_ms={worst:.1f} p99_stall_ms={p99:.1f} "
          f"max_busy_ms={own.max():.1f} p99_busy_ms={np.percentile(own, 99):.1f} {'ok' if ok else 'SLOW'}")
    return worst, p99, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="folder for the checkpoint (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse a checkpoint this benchmark kept in --path (its size checked), not write it again")
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS),
                        help="which scenarios to run (default: all; 'open' is measured in every one)")
    parser.add_argument("--select", action="store_true", help="the same as --scenario select (kept for scripts)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    args = parser.parse_args()
    scenarios = ["select"] if args.select else [s for s in args.scenario if s != "open"] or ["analysis"]
    folder = args.path or tempfile.mkdtemp(prefix="weightscope-ui-latency-")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.safetensors")
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from gui.app import get_app

    app = get_app()
    stalls: dict[str, list[float]] = {}
    busy: dict[str, list[float]] = {}
    try:
        if args.reuse and os.path.exists(path) and os.path.getsize(path) == expected_size():
            print(f"reusing {path}")
        else:
            t0 = time.perf_counter()
            size = write_checkpoint(path)
            print(f"wrote {size / 2**30:.2f} GiB bf16 checkpoint in {time.perf_counter() - t0:.1f} s")
        for scenario in scenarios:
            meter = run_scenario(app, path, scenario, args.device)
            for phase, values in meter.phases.items():
                stalls.setdefault(phase, []).extend(values)
                busy.setdefault(phase, []).extend(meter.busy[phase])
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True) if not args.path else os.remove(path)
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results = [summarise(name, stalls.get(name, []), busy.get(name, [])) for name in ("open", *scenarios)]
    print(f"max_stall_ms={max(r[0] for r in results):.1f} p99_stall_ms={max(r[1] for r in results):.1f}")
    return 0 if all(r[2] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
