"""Phase timings and peak memory that a workload logs (stderr): where its time and memory went."""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def phase(workload: str, name: str) -> Iterator[None]:
    """Log `<workload>: <name> took N.NNs` when the block ends, also when it fails."""
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        print(f"{workload}: {name} took {elapsed:.2f}s", file=sys.stderr, flush=True)


def peak_rss_bytes() -> int:
    """This program's own peak resident set (VmHWM), since its exec.

    Not getrusage: on Linux, ru_maxrss carries the parent's high-water mark across fork and
    exec, so a worker started by a large process would report the parent's size.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def log_peak_memory(workload: str) -> None:
    print(f"{workload}: peak RSS {peak_rss_bytes() >> 20} MiB", file=sys.stderr, flush=True)


def seconds_since_exec() -> float | None:
    """How long this process has run, interpreter start-up included: the kernel's start time of
    the process (/proc/self/stat) against the time since boot (/proc/uptime), in clock ticks."""
    try:
        with open("/proc/self/stat") as stat:
            # Field 22, counted after the command name, which may hold spaces and parentheses.
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            now = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, now - started_ticks / os.sysconf("SC_CLK_TCK"))


def log_process_time(
    workload: str, before_imports: float | None, after_imports: float | None
) -> None:
    """Log where a batch workload's process spent its time, from exec to now: the interpreter's
    start-up, importing the workload's modules, and the work itself (logged by `phase`)."""
    ended = seconds_since_exec()
    if before_imports is None or after_imports is None or ended is None:
        return
    print(
        f"{workload}: process {ended:.2f}s since exec: start-up {before_imports:.2f}s, "
        f"imports {after_imports - before_imports:.2f}s, work {ended - after_imports:.2f}s",
        file=sys.stderr,
        flush=True,
    )
