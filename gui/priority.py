"""Background work yields the CPU to the UI thread.

On a machine with as many busy threads as cores (the analysis uses one per
core), the UI thread waits for a core as long as it computes: a 10 ms slice
of work became a 40 ms stall. Linux gives each thread its own nice value, and
threads inherit it from the thread that starts them, so a job that lowers its
own priority first also lowers that of the threads it starts (the numpy
backend's pool). Elsewhere this does nothing.
"""

from __future__ import annotations

import os
import sys
import threading

BACKGROUND_NICENESS = 10  # above the UI thread's; Linux nice values run from -20 (first) to 19 (last)


def lower_thread_priority() -> bool:
    """Run the calling thread (not the UI thread) behind the UI thread; True where the OS allowed it.

    Idempotent: the nice value is set relative to the main thread's, so a pool thread reused by later jobs
    is not lowered again."""
    if not sys.platform.startswith("linux") or threading.current_thread() is threading.main_thread():
        return False
    try:
        main = os.getpriority(os.PRIO_PROCESS, os.getpid())  # on Linux: the main thread's nice value
        target = min(19, main + BACKGROUND_NICENESS)
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < target:
            os.setpriority(os.PRIO_PROCESS, tid, target)
        return True
    except OSError:
        return False
