"""Phase timings a workload writes to its log (stderr), so a slow run shows where time went."""

from __future__ import annotations

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
