"""Every class of hostile input from the security review, run through Weightscope's commands and measured.

Run:  .venv/bin/python benchmarks/hostile.py              (all inputs, a few minutes)
      .venv/bin/python benchmarks/hostile.py --only fifo  (inputs whose name contains "fifo")
      .venv/bin/python benchmarks/hostile.py --list       (the inputs, without running anything)
      --timeout S (per command, default 30), --keep DIR (keep the generated inputs there), --json (rows as JSON),
      --jobs N (inputs at once, default 2: hangs overlap; --jobs 1 for the cleanest timings)

Inputs are generated in a temporary folder (small files; big ones are sparse). Each command runs in its own
child process, forked by a lean launcher so that its peak RSS (os.wait4) is its own, not the harness's, with
WEIGHTSCOPE_CACHE_DIR pointing at a fresh cache that also holds files of "another program" (they must
survive), WEIGHTSCOPE_LOG_DIR at a temporary folder (a new incident log is noted), HOME, XDG_CACHE_HOME and
XDG_STATE_HOME at watched decoys, and the working directory in a watched decoy folder.

Targets per row: under 10 s, exit 0 or 2 (0 where the input is valid), peak RSS under 1 GB, no "Traceback" or
"Warning" on stderr, no raw ESC/CR/NUL/bidi control characters on stdout (nor ESC/NUL/bidi on stderr), no
stdout line over 10,000 characters (for --json: no string over 64 Ki, core.text.bounded_json's bound), and
nothing created, changed or deleted outside the cache folder. A hang is killed at the timeout and the input's
remaining commands are skipped. Timings are wall-clock on a possibly shared machine: the load average is printed,
and the baseline row (an honest file) shows the floor. Exit status: 0 when every row passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostile_inputs as gen

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
MAIN = REPO / "main.py"
MAX_SECONDS = 10.0
MAX_RSS_MB = 1024.0
MAX_LINE = 10_000
# --json keeps a metadata string whole up to core.text's bound (a GGUF chat template runs to 10-20 K characters and
# is data a reader of the JSON may need); past it the string is cut with a "... (N more characters)" marker.
MAX_JSON_STRING = 65_536 + 64
KEEP_STDOUT = 32 << 20  # bytes of stdout kept for JSON checks; the rest is scanned and dropped
CONTROL = {b"\x1b": "ESC", b"\r": "CR", b"\x00": "NUL"}
CONTROL.update({chr(c).encode(): f"U+{c:04X}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]})
STANDARD = ("info", "info --json", "stats --json")
FOREIGN = {"README-other-program.txt": b"belongs to another program\n",
           "ab/0123456789abcdef.npz": b"PK\x05\x06" + b"\0" * 18, ".lock": b"",
           "other-program/state.json": b'{"keep": true}\n'}


# --- one child process, measured ------------------------------------------------------------------------------------
class StreamScan:
    """Reads a pipe to the end: keeps the first bytes, tracks the longest line and raw control characters."""

    def __init__(self, pipe, controls: dict[bytes, str]) -> None:
        self.kept = bytearray()
        self.total = 0
        self.longest = 0
        self.found: set[str] = set()
        self._line = 0
        self._tail = b""
        self._controls = controls
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        """At C speed per chunk (split, substring search): a slow reader would stall the child on a full pipe and
        charge the harness's own time to the command (a 230 MB, 10-million-line `info --json` took seconds)."""
        multibyte = {raw: label for raw, label in self._controls.items() if len(raw) > 1}
        single = {raw: label for raw, label in self._controls.items() if len(raw) == 1}
        while chunk := pipe.read1(1 << 20) if hasattr(pipe, "read1") else pipe.read(1 << 20):
            self.total += len(chunk)
            if len(self.kept) < KEEP_STDOUT:
                self.kept += chunk[: KEEP_STDOUT - len(self.kept)]
            window = self._tail + chunk  # a multi-byte character may straddle two reads
            self.found.update(label for raw, label in single.items() if raw in chunk)
            if b"\xe2" in window:  # every bidi control's UTF-8 starts with E2
                self.found.update(label for raw, label in multibyte.items() if raw in window)
            self._tail = chunk[-3:]
            lines = chunk.split(b"\n")
            if len(lines) == 1:
                self._line += len(chunk)
            else:
                self.longest = max(self.longest, self._line + len(lines[0]), max(map(len, lines[1:-1]), default=0))
                self._line = len(lines[-1])
            self.longest = max(self.longest, self._line)
        pipe.close()

    def join(self) -> None:
        self._thread.join(timeout=5)


@dataclass
class Outcome:
    status: int | None  # None: killed at the timeout
    seconds: float
    rss_mb: float
    stdout: bytes
    cpu_seconds: float  # user + system: on a shared machine, the part of the wall time that is the command's
    stdout_bytes: int
    stderr: str
    longest_line: int
    controls: list[str]


# A lean launcher (python -S, no imports beyond the standard library's core): it forks the command, applies the
# file limit, enforces the timeout and reports the command's own rusage. Forking the command from this harness
# instead would charge the harness's memory to it: Linux keeps the pre-exec peak RSS in ru_maxrss.
LAUNCHER = """
import json, os, resource, signal, sys, time
timeout, nofile, report_fd, argv = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.close(report_fd)
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
hung = False
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    if time.perf_counter() - start > timeout:
        hung = True
        os.kill(pid, signal.SIGKILL)
        done, status, usage = os.wait4(pid, 0)
        break
    time.sleep(0.01)
seconds = time.perf_counter() - start
code = None if hung else os.waitstatus_to_exitcode(status)
os.write(report_fd, json.dumps({"status": code, "seconds": seconds, "maxrss_kb": usage.ru_maxrss,
                                "cpu_seconds": usage.ru_utime + usage.ru_stime}).encode())
os.close(report_fd)
if hung:
    os.killpg(os.getpgrp(), signal.SIGKILL)  # whatever the command started, and this launcher
"""


def run_child(argv: list[str], env: dict[str, str], cwd: Path, timeout: float, nofile: int | None) -> Outcome:
    """Run ``main.py argv`` under the launcher; its time, exit status and peak RSS are its own."""
    report_r, report_w = os.pipe()
    command = [str(PYTHON), "-S", "-c", LAUNCHER, str(timeout), str(nofile or 0), str(report_w), str(PYTHON),
               str(MAIN), *argv]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=cwd, env=env, start_new_session=True, pass_fds=(report_w,))
    os.close(report_w)
    out = StreamScan(proc.stdout, CONTROL)
    err = StreamScan(proc.stderr, {k: v for k, v in CONTROL.items() if v != "CR"})  # progress may use CR
    try:
        proc.wait(timeout=timeout + 30)
    except subprocess.TimeoutExpired:  # the launcher itself is stuck: should not happen
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with os.fdopen(report_r, "rb") as f:
        report = json_or_none(f.read(), {})
    out.join()
    err.join()
    stderr = bytes(err.kept).decode("utf-8", "backslashreplace")
    if not report:
        stderr = f"(launcher failed, exit {proc.returncode})\n" + stderr
    return Outcome(report.get("status"), report.get("seconds", float(timeout)), report.get("maxrss_kb", 0) / 1024,
                   bytes(out.kept), report.get("cpu_seconds", 0.0), out.total, stderr, out.longest,
                   sorted(out.found) + [f"{c}(stderr)" for c in sorted(err.found)])


# --- what must not change -------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (not following links): kind, size, mtime, mode. Contents of large files are
    not read (some are sparse terabytes); size and mtime show a write."""
    found: dict[str, tuple] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            found[str(folder) + "/"] = ("unlistable", exc.errno)
            continue
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            found[entry.path] = (st.st_mode, st.st_size, st.st_mtime_ns)
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return found


def differences(before: dict[str, tuple], after: dict[str, tuple], allowed: set[str]) -> list[str]:
    out = [f"created {p}" for p in sorted(after.keys() - before.keys()) if p not in allowed]
    out += [f"deleted {p}" for p in sorted(before.keys() - after.keys())]
    out += [f"changed {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p] and p not in allowed]
    return out


def foreign_state(cache: Path) -> dict[str, tuple]:
    """The other program's files in the cache folder, with a hash of each small one."""
    state = {}
    for rel in [*FOREIGN, "other-program/big.bin"]:
        path = cache / rel
        try:
            st = path.stat()
        except OSError:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if st.st_size < 1 << 20 else ""
        state[rel] = (st.st_size, st.st_mtime_ns, digest)
    return state


# --- rows -----------------------------------------------------------------------------------------------------------
@dataclass
class Row:
    case: str
    command: str
    seconds: float = 0.0
    rss_mb: float = 0.0
    status: int | None = None
    cpu_seconds: float = 0.0
    traceback: bool = False
    warning: bool = False
    controls: list[str] = field(default_factory=list)
    longest_line: int = 0
    fs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stderr_first: str = ""
    skipped: bool = False

    @property
    def passed(self) -> bool:
        return not self.failures and not self.skipped


@dataclass
class Case:
    name: str
    make: Callable[[Path], Path]  # writes the input under the folder given, returns the path to open
    commands: tuple[str, ...] = STANDARD
    report: bool = False
    must_open: bool = False  # a valid file: exit 0, not 2
    tensors: int | None = None  # tensor count the file really holds (checked when it opens)
    nofile: int | None = None
    check: Callable[[Harness, Row, Outcome], None] | None = None
    scenario: Callable[[Harness, Case, Path], None] | None = None  # replaces the standard commands
    big_foreign: bool = False  # 600 MB of another program's (allocated, unwritten) data in the cache folder
    note: str = ""  # what a reader of the table should know about this input


class Harness:
    """Generates inputs, runs commands with everything around them watched, and collects rows."""

    def __init__(self, root: Path, timeout: float, echo: bool) -> None:
        self.root = root
        self.timeout = timeout
        self.echo = echo
        self.by_case: dict[str, list[Row]] = {}
        self.targets: dict[str, Path] = {}
        self._print_lock = threading.Lock()
        self.decoy = root / "decoy"
        self.home = root / "home"
        self.xdg = root / "xdg-cache"
        self.xdg_state = root / "xdg-state"
        for folder in (self.decoy, self.home, self.xdg, self.xdg_state, *(root / k for k in ("inputs", "caches",
                                                                                          "logs", "out"))):
            folder.mkdir(parents=True, exist_ok=True)
        (self.decoy / "notes.txt").write_text("the user's own file\n")
        gen.small_model(self.decoy / "model.safetensors")
        (self.decoy / "model.safetensors.index.json").write_text('{"weight_map": {}}')

    # --- per case folders ----------------------------------------------------------------------------------------
    def folders(self, case: Case) -> tuple[Path, Path, Path, Path]:
        inputs, cache, logs, out = (self.root / kind / case.name for kind in ("inputs", "caches", "logs", "out"))
        for folder in (inputs, cache, logs, out):
            folder.mkdir(parents=True, exist_ok=True)
        old = 1_000_000_000_000_000_000  # 2001: the foreign files are the oldest, pruned first if anything is
        for rel, data in FOREIGN.items():
            path = cache / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.utime(path, ns=(old, old))
        if case.big_foreign:
            big = cache / "other-program" / "big.bin"
            allocate(big, 600 << 20)
            os.utime(big, ns=(old, old))
        return inputs, cache, logs, out

    def env(self, case: Case) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTSCOPE_")}
        env.update(WEIGHTSCOPE_CACHE_DIR=str(self.root / "caches" / case.name),
                   WEIGHTSCOPE_LOG_DIR=str(self.root / "logs" / case.name), HOME=str(self.home),
                   XDG_CACHE_HOME=str(self.xdg), XDG_STATE_HOME=str(self.xdg_state), QT_QPA_PLATFORM="offscreen",
                   PYTHONDONTWRITEBYTECODE="1")
        return env

    # --- one command --------------------------------------------------------------------------------------------
    def run(self, case: Case, label: str, argv: list[str], allowed: set[str] | None = None) -> tuple[Row, Outcome]:
        inputs, cache, logs, out = (self.root / kind / case.name for kind in ("inputs", "caches", "logs", "out"))
        watched = [inputs, self.decoy, self.home, self.xdg, self.xdg_state, out]
        before = [snapshot(folder) for folder in watched]
        logs_before = set(os.listdir(logs)) if logs.is_dir() else set()
        foreign_before = foreign_state(cache)
        result = run_child(argv, self.env(case), self.decoy, self.timeout, case.nofile)
        row = Row(case.name, label, seconds=result.seconds, rss_mb=result.rss_mb, status=result.status,
                  cpu_seconds=result.cpu_seconds,
                  traceback="Traceback" in result.stderr, warning="Warning" in result.stderr,
                  controls=result.controls, longest_line=result.longest_line)
        row.stderr_first = next((line for line in result.stderr.splitlines() if line.strip()), "")[:200]
        for folder, old in zip(watched, before, strict=True):
            row.fs += differences(old, snapshot(folder), allowed or set())
        foreign_after = foreign_state(cache)
        row.fs += [f"foreign cache file {rel} {'deleted' if rel not in foreign_after else 'changed'}"
                   for rel in foreign_before if foreign_after.get(rel) != foreign_before[rel]]
        self._judge(case, row, result)
        for name in sorted((set(os.listdir(logs)) if logs.is_dir() else set()) - logs_before):
            row.notes.append("incident log (an internal error): " + last_line(logs / name))
        if result.status not in (0, None) and row.stderr_first:
            row.notes.append("said: " + ascii(row.stderr_first.replace(str(self.root), "$TMP")[:160]))
        self.by_case[case.name].append(row)
        return row, result

    def _judge(self, case: Case, row: Row, result: Outcome) -> None:
        fail = row.failures
        if result.status is None:
            fail.append(f"hung: killed at {self.timeout:.0f} s")
        elif result.seconds >= MAX_SECONDS:
            fail.append(f"took {result.seconds:.1f} s")
        if result.status is not None and result.status not in ((0,) if case.must_open else (0, 2)):
            fail.append(f"exit {result.status}" + (" (a valid input must open)" if case.must_open else ""))
        if result.rss_mb >= MAX_RSS_MB:
            fail.append(f"peak RSS {result.rss_mb:,.0f} MB")
        if row.traceback:
            fail.append("Traceback on stderr")
        if row.warning:
            fail.append("Warning on stderr")
        if row.controls:
            fail.append("raw control characters: " + ",".join(row.controls))
        if "--json" in row.command:  # one-line JSON is fine; file-derived text inside it must still be bounded
            row.longest_line = longest_string(json_or_none(result.stdout, None))
            what = "JSON string"
        else:
            what = "stdout line"
        if row.longest_line > (MAX_JSON_STRING if what == "JSON string" else MAX_LINE):
            fail.append(f"{what} of {row.longest_line:,} chars")
        if row.fs:
            fail.append(f"{len(row.fs)} change(s) outside the cache: " + "; ".join(row.fs[:3]))
        if result.status == 0 and case.tensors is not None and row.command.startswith("info --json"):
            count = json_or_none(result.stdout, {}).get("tensor_count")
            if count is None and result.stdout_bytes > len(result.stdout):  # kept only the head: read it there
                found = re.search(rb'^ "tensor_count": (\d+),$', result.stdout, re.MULTILINE)
                count = int(found[1]) if found else None
                row.notes.append(f"output {result.stdout_bytes:,} bytes: tensor_count read from its head")
            if count != case.tensors:
                fail.append(f"tensor_count {count} (the file holds {case.tensors})")
        if case.check is not None and result.status is not None:
            case.check(self, row, result)

    def skip(self, case: Case, label: str, why: str) -> None:
        self.by_case[case.name].append(Row(case.name, label, skipped=True, notes=[why]))

    # --- a whole case -------------------------------------------------------------------------------------------
    def run_case(self, case: Case) -> None:
        """Generate the input, run its commands, then print its rows (checks that compare runs come last)."""
        self.by_case[case.name] = []
        try:
            self._run_case(case)
        finally:
            if self.echo:
                with self._print_lock:
                    for row in self.by_case[case.name]:
                        print(format_row(row), flush=True)

    def _run_case(self, case: Case) -> None:
        inputs, _cache, _logs, out = self.folders(case)
        try:
            target = case.make(inputs)
        except Exception as exc:  # a generator that cannot run here (no mkfifo, no sparse files) is a row, not a crash
            self.by_case[case.name].append(Row(case.name, "(generate)",
                                               failures=[f"generator failed: {type(exc).__name__}: {exc}"]))
            return
        self.targets[case.name] = target
        size_note = "input " + describe_size(target) + (f" [{case.note}]" if case.note else "")
        if case.scenario is not None:
            case.scenario(self, case, target)
            self.by_case[case.name][0].notes.insert(0, size_note)
            return
        commands = [(cmd, [*cmd.split()[:1], str(target), *cmd.split()[1:]], None) for cmd in case.commands]
        if case.report:
            pdf = out / f"{case.name}.pdf"
            commands.append(("report -o OUT.pdf", ["report", str(target), "-o", str(pdf)], pdf))
        hung = False
        first = True
        for label, argv, pdf in commands:
            if hung:
                self.skip(case, label, "skipped: an earlier command on this input hung")
                continue
            allowed = {str(pdf)} if pdf is not None else set()
            row, result = self.run(case, label, argv, allowed)
            if first:
                row.notes.insert(0, size_note)
                first = False
            hung = result.status is None
            if pdf is not None and result.status == 0:
                if not pdf.is_file() or pdf.read_bytes()[:5] != b"%PDF-":
                    row.failures.append("exit 0 but no PDF written")
                else:
                    row.notes.append(f"PDF {pdf.stat().st_size:,} bytes")


def last_line(path: Path) -> str:
    """The exception line at the end of an incident log."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(unreadable)"
    return ascii(lines[-1][:160]) if lines else "(empty)"


def describe_size(path: Path) -> str:
    """Apparent and allocated size of a file or a folder's files (sparse inputs say how little they hold)."""
    try:
        files = [path] if not path.is_dir() else [p for p in path.rglob("*") if p.is_file()]
        stats = [p.stat() for p in files]
    except OSError:
        return "(size unknown)"
    if not stats or not all(stat.S_ISREG(s.st_mode) for s in stats):
        return "(not a regular file)"
    apparent = sum(s.st_size for s in stats)
    allocated = sum(s.st_blocks * 512 for s in stats)
    count = f"{len(stats):,} files, " if path.is_dir() else ""
    text = f"{count}{human(apparent)}"
    return text + (f" (sparse: {human(allocated)} on disk)" if apparent > 2 * allocated + (1 << 20) else "")


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def longest_string(doc: object) -> int:
    """The longest string (key or value) anywhere in a parsed JSON document, walked without recursion."""
    longest, stack = 0, [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            longest = max(longest, len(item))
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return longest


def json_or_none(data: bytes, default):
    try:
        return json.loads(data)
    except ValueError:
        return default


# --- checks that need to know the input -----------------------------------------------------------------------------
def check_polyglot(h: Harness, row: Row, result: Outcome) -> None:
    """``info`` must say the file also parses as another container."""
    if row.command == "info --json" and result.status == 0:
        warnings = json_or_none(result.stdout, {}).get("warnings")
        row.notes.append(f"JSON warnings: {ascii(warnings)[:150]}")
    if row.command != "info" or result.status != 0:
        return
    target = h.targets[row.case]
    text = result.stdout.decode("utf-8", "replace").replace(str(target), "FILE").replace(target.name, "FILE")
    said = [line.strip() for line in text.splitlines() if POLYGLOT_WORDS.search(line)]
    if said:
        row.notes.append("said: " + ascii(said[0][:150]))
    else:
        row.failures.append("no polyglot warning in info")


POLYGLOT_WORDS = re.compile(r"\b(polyglot|also parses|also a|zip|tar|archive)\b", re.IGNORECASE)


def check_percentiles(h: Harness, row: Row, result: Outcome) -> None:
    """Every tensor's percentiles are numbers, non-decreasing in percentile order."""
    if not row.command.startswith("stats") or result.status != 0:
        return
    doc = json_or_none(result.stdout, None)
    if not isinstance(doc, dict) or not doc.get("tensors"):
        row.failures.append("stats --json printed no tensors")
        return
    for t in doc["tensors"]:
        pct = t.get("percentiles", {})
        values = [pct[k] for k in sorted(pct, key=float)]
        if not values or not all(isinstance(v, (int, float)) for v in values):
            row.failures.append(f"{t.get('name')}: percentiles not all numbers: {values}")
        elif any(b < a for a, b in itertools.pairwise(values)):
            row.failures.append(f"{t.get('name')}: percentiles not monotonic: {values}")
    row.notes.append("percentiles checked")


def stats_figures(stdout: bytes) -> dict[str, float] | None:
    doc = json_or_none(stdout, None)
    if not isinstance(doc, dict) or not doc.get("tensors"):
        return None
    t = doc["tensors"][0]
    return {k: t.get(k) for k in ("count", "nan", "min", "max", "mean")}


def truth_of(data: bytes) -> dict[str, float]:
    """The figures computed here, independently, from the bytes the file holds."""
    v = np.frombuffer(data, dtype="<f4").astype(np.float64)
    finite = v[~np.isnan(v)]
    return {"count": int(finite.size), "nan": int(np.isnan(v).sum()), "min": float(finite.min()),
            "max": float(finite.max()), "mean": float(finite.mean())}


def compare(row: Row, got: dict | None, truth: dict, what: str) -> None:
    if got is None:
        row.failures.append(f"{what}: no figures in stats --json")
        return
    wrong = [f"{k}={got.get(k)!r} (truth {truth[k]!r})" for k in truth
             if not isinstance(got.get(k), (int, float)) or abs(got[k] - truth[k]) > 1e-5 * max(1.0, abs(truth[k]))]
    if wrong:
        row.failures.append(f"{what}: " + ", ".join(wrong))
    else:
        row.notes.append(f"{what}: figures match the file")


# --- cache scenarios ------------------------------------------------------------------------------------------------
def scenario_same_size_mtime(h: Harness, case: Case, target: Path) -> None:
    """A's figures are cached; B (same size, same mtime in ns) is copied over A; stats must show B's figures."""
    row, res = h.run(case, "stats --json (A, fills cache)", ["stats", str(target), "--json"])
    compare(row, stats_figures(res.stdout), truth_of(gen.cache_model_values(nan=True)), "A")
    st = target.stat()
    scratch = h.root / "scratch" / case.name
    scratch.mkdir(parents=True)
    b_path = gen.make_cache_model(scratch, nan=False)  # same header, other values: the same size
    shutil.copyfile(b_path, target)  # over A: same inode, same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    truth_b = truth_of(gen.cache_model_values(nan=False))
    row, res = h.run(case, "stats --json (B over A)", ["stats", str(target), "--json"])
    compare(row, stats_figures(res.stdout), truth_b, "B")
    row, res = h.run(case, "stats --json --no-cache (B)", ["stats", str(target), "--json", "--no-cache"])
    compare(row, stats_figures(res.stdout), truth_b, "B uncached")


def scenario_planted_entry(h: Harness, case: Case, target: Path) -> None:
    """Every float stored in the cache entries is altered in place; the figures must not change."""
    cache = h.root / "caches" / case.name
    truth = truth_of(gen.cache_model_values(nan=True))
    row, res = h.run(case, "stats --json (fills cache)", ["stats", str(target), "--json"])
    compare(row, stats_figures(res.stdout), truth, "first run")
    foreign = {str(cache / rel) for rel in FOREIGN}
    entries = [p for p in cache.rglob("*.npz") if p.is_file() and str(p) not in foreign]
    planted = [p for p in entries if plant(p)]
    row, res = h.run(case, "stats --json (planted entry)", ["stats", str(target), "--json"])
    if not planted:
        row.failures.append(f"no cache entry found to plant ({len(entries)} files in the cache folder)")
    else:
        row.notes.append(f"planted {len(planted)} entr{'y' if len(planted) == 1 else 'ies'}")
    compare(row, stats_figures(res.stdout), truth, "after planting")


def plant(path: Path) -> bool:
    """Alter the figures inside one cache entry, keeping it well-formed: every float array scaled and shifted."""
    with np.load(path, allow_pickle=False) as z:  # our own cache file, written by the app, never a user's
        arrays = {k: z[k] for k in z.files}
    changed = False
    for k, a in arrays.items():
        if a.dtype.kind == "f" and a.size:
            arrays[k] = (a * 1000 + 7).astype(a.dtype)
            changed = True
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return changed


def scenario_prune(h: Harness, case: Case, target: Path) -> None:
    """The cache folder also holds 600 MB of another program's data; then an entry-named 600 MB file (allocated,
    not written) beside the app's entries puts the cache over its 512 MB cap, so the next run prunes: the other
    program's files must survive it."""
    cache = h.root / "caches" / case.name
    h.run(case, "stats --json (fills cache)", ["stats", str(target), "--json"])
    entries = [p for p in cache.rglob("*.npz") if p.is_file() and p.parent != cache / "ab"]
    if not entries:
        h.by_case[case.name][-1].failures.append("no cache entry written: cannot make the cache prune")
        return
    bulky = entries[0].parent / ("f" * 64 + ".npz")
    allocate(bulky, 600 << 20)
    old = 1_000_000_000_000_000_000
    os.utime(bulky, ns=(old, old))
    row, _res = h.run(case, "stats --json (prunes)", ["stats", str(target), "--json"])
    row.notes.append("prune removed the 600 MB entry-named file" if not bulky.exists()
                     else "prune left the 600 MB entry-named file (no prune ran)")
    bulky.unlink(missing_ok=True)


def allocate(path: Path, size: int) -> None:
    """A file whose blocks are allocated (they count as disk use) but never written: instant, and reads as zeros."""
    with open(path, "wb") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError:
            f.truncate(size)


# --- the inputs -----------------------------------------------------------------------------------------------------
ROOT_NOTE = "running as root: permissions are not enforced" if os.getuid() == 0 else ""


def as_path(value: str) -> Callable[[Path], Path]:
    return lambda _folder: Path(value)


CASES = [
    Case("baseline-small-model", lambda f: gen.small_model(f / "model.safetensors"), must_open=True, tensors=3,
         report=True, note="an honest file: the floor for each command's time and memory on this machine"),
    Case("cache-same-size-mtime", gen.make_cache_model, scenario=scenario_same_size_mtime),
    Case("cache-planted-entry", gen.make_cache_model, scenario=scenario_planted_entry),
    Case("cache-prune-foreign", gen.make_cache_model, scenario=scenario_prune, big_foreign=True),
    Case("header-len-640", lambda f: gen.make_header_len(f, 640), must_open=True, tensors=3, report=True),
    Case("header-len-896", lambda f: gen.make_header_len(f, 896), must_open=True, tensors=3),
    Case("header-len-0x6428", lambda f: gen.make_header_len(f, 0x6428), must_open=True, tensors=3),
    Case("header-len-shards", gen.make_header_len_shards, must_open=True, tensors=6),
    Case("float64-extremes", gen.make_float64_extremes, must_open=True, tensors=2, report=True,
         check=check_percentiles),
    Case("spoof-control-names", gen.make_spoof_names, tensors=6, report=True),
    Case("spoof-4mb-metadata", gen.make_spoof_big_metadata, tensors=1, report=True),
    Case("spoof-html-csv-names", gen.make_html_names, must_open=True, tensors=6, report=True,
         note="no CLI CSV export exists: the =HYPERLINK name goes through info/stats/report only"),
    Case("polyglot-zip-safetensors", lambda f: gen.make_polyglot_zip(f, "polyglot-zip.safetensors"),
         tensors=2, check=check_polyglot),
    Case("polyglot-zip-named-bin", lambda f: gen.make_polyglot_zip(f, "pytorch_model.bin"), tensors=2,
         check=check_polyglot),
    Case("polyglot-tar", gen.make_polyglot_tar, tensors=1, check=check_polyglot, report=True),
    Case("pickle-named-gguf", gen.make_pickle_named_gguf, tensors=1),
    Case("tree-fold-3x3x3", lambda f: gen.make_tree_fold(f, 3, 3, "fold-3x3x3.safetensors"), must_open=True,
         tensors=54),
    Case("tree-fold-2^6", lambda f: gen.make_tree_fold(f, 2, 6, "fold-2pow6.safetensors"), must_open=True,
         tensors=128, report=True),
    Case("name-3000-parts", gen.make_long_name, tensors=2),
    Case("name-superscript-index", gen.make_superscript_index, tensors=4),
    Case("name-5000-digit-index", gen.make_huge_indices, tensors=3, report=True),
    Case("pickle-hash-collisions", gen.make_pickle_hash_collisions),
    Case("pickle-list-copies", gen.make_pickle_list_copies),
    Case("pickle-shared-dag", gen.make_pickle_shared_dag),
    Case("index-60000-shards", lambda f: gen.make_shards(f, 60_000, "60000-shards"), tensors=60_000),
    Case("million-empty-tensors", gen.make_million_empty_tensors, tensors=1_000_000),
    Case("shards-over-nofile", lambda f: gen.make_shards(f, 1_000, "1000-shards"), nofile=256, tensors=1_000,
         must_open=True, note="a valid model: shards must not all stay open"),
    Case("zero-element-20000", gen.make_zero_element_tensors, tensors=20_000, report=True),
    Case("zero-element-20000-pt", gen.make_zero_element_pickle, tensors=20_000),
    Case("sparse-700mb-f32", gen.make_sparse_700mb, must_open=True, tensors=1),
    Case("gguf-1.5gb-array", gen.make_gguf_sparse_u8_array),
    Case("gguf-200m-empty-strings", gen.make_gguf_empty_strings),
    Case("gguf-mxfp4-ff-scales", gen.make_gguf_mxfp4_ff_scales, tensors=1, report=True,
         note="figures not checked: an E8M0 0xFF scale is NaN in OCP MX, 2^128 in ggml"),
    Case("view-stride0-100m", gen.make_view_stride0),
    Case("view-2-over-1tb", gen.make_view_over_terabyte),
    Case("fifo-as-file", gen.make_fifo_file),
    Case("fifo-as-folder-model", gen.make_fifo_in_folder),
    Case("fifo-as-index", gen.make_fifo_index),
    Case("fifo-as-config", gen.make_fifo_config, tensors=3),
    Case("proc-self-status", as_path("/proc/self/status")),
    Case("dev-zero", as_path("/dev/zero")),
    Case("deep-config-990", gen.make_deep_config, tensors=3),
    Case("deep-index-990", gen.make_deep_index, tensors=3),
    Case("chmod-000-shard", gen.make_unreadable_shard, note=ROOT_NOTE),
    Case("chmod-000-folder", gen.make_unreadable_folder, note=ROOT_NOTE),
]


# --- output ---------------------------------------------------------------------------------------------------------
HEADER = (f"{'input':<26} {'command':<30} {'secs(<10)':>9} {'cpu s':>6} {'RSS MB(<1024)':>13} {'exit(0|2)':>9} "
          f"{'tb/warn(no)':>11} {'ctl(none)':>9} {'fs(same)':>8}  result")


def format_row(row: Row) -> str:
    if row.skipped:
        return (f"{row.case:<26} {row.command:<30} {'-':>9} {'-':>6} {'-':>13} {'-':>9} {'-':>11} {'-':>9} {'-':>8}"
                "  SKIP  " + "; ".join(row.notes))
    status = "hang" if row.status is None else str(row.status)
    tb = ("TB" if row.traceback else "") + ("W" if row.warning else "") or "no"
    ctl = "+".join(c.split("(")[0] for c in row.controls)[:9] or "none"
    fs = f"{len(row.fs)}!" if row.fs else "same"
    verdict = "PASS" if row.passed else "FAIL"
    details = row.failures + row.notes
    text = (f"{row.case:<26} {row.command[:30]:<30} {row.seconds:>9.2f} {row.cpu_seconds:>6.2f} {row.rss_mb:>13.0f} "
            f"{status:>9} {tb:>11} "
            f"{ctl:>9} {fs:>8}  {verdict}")
    return text + ("  " + "; ".join(details) if details else "")


def restore_permissions(root: Path) -> None:
    """A chmod 000 folder would stop the temporary folder's removal (for a non-root user); files need no fix."""
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            try:
                os.chmod(os.path.join(folder, name), 0o700)
            except OSError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="SUBSTRING", help="run inputs whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the inputs and exit")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per command before it counts as a hang")
    parser.add_argument("--keep", metavar="DIR", help="generate inputs in DIR (must not exist) and keep them")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    parser.add_argument("--jobs", type=int, default=2, help="inputs run at once (default 2; 1 gives the cleanest "
                        "timings and attributes any write to the shared decoy folders to one command)")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if not args.only or any(s in c.name for s in args.only)]
    if args.list:
        for case in cases:
            commands = ["(scenario)"] if case.scenario else [*case.commands, *(["report"] if case.report else [])]
            print(f"{case.name:<26} {', '.join(commands)}" + (f"  [RLIMIT_NOFILE {case.nofile}]" if case.nofile
                                                               else ""))
        return 0
    if args.keep:
        root = Path(args.keep).resolve()
        root.mkdir(parents=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="weightscope-hostile-"))
    started = time.perf_counter()
    harness = Harness(root, args.timeout, echo=not args.json)
    if not args.json:
        print(f"inputs in {root}; running as uid {os.getuid()}"
              + (" (root: chmod 000 does not stop reads)" if os.getuid() == 0 else "")
              + f"; {args.jobs} job(s); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(HEADER, flush=True)
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(harness.run_case, cases))
    finally:
        if not args.keep:
            restore_permissions(root)
            shutil.rmtree(root, ignore_errors=True)
    rows = [row for case in cases for row in harness.by_case.get(case.name, [])]
    passed = sum(r.passed for r in rows)
    skipped = sum(r.skipped for r in rows)
    failed = len(rows) - passed - skipped
    if args.json:
        print(json.dumps([{**asdict(r), "passed": r.passed} for r in rows], indent=1))
    else:
        failing = [r for r in rows if not r.passed and not r.skipped]
        if failing:
            print("\nfailures (first stderr line):")
            for r in failing:
                print(f"  {r.case} / {r.command}: {'; '.join(r.failures)[:300]}")
                if r.stderr_first:
                    print(f"      stderr: {ascii(r.stderr_first)[:200]}")
        print(f"\n{passed} passed, {failed} failed, {skipped} skipped of {len(rows)} rows "
              f"({len(cases)} inputs, {time.perf_counter() - started:.0f} s, load average now "
              f"{os.getloadavg()[0]:.1f})")
    return 0 if failed == 0 and skipped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
