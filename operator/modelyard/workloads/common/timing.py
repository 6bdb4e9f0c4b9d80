"""Phase timings and peak memory that a workload logs (stderr): where its time and memory went."""

from __future__ import annotations

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
