"""How steady the server's CPU itself is: the spread a fixed amount of work shows on it.

A p99 ratio compares two servers each measured at its own time on one machine. A virtual
machine's CPU may slow down now and then, for its host's own reasons: a short request caught in
a short slow spell takes the whole slowdown, while a long one averages it with the fast time
around it, and a long spell slows whichever server runs in it. This measures the machine with
no server involved: one pure-Python unit of work, timed back to back for a few seconds on the
server's CPU, then the spread of windows as long as a request.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

# A unit of about 10 µs: short enough to see spells of a millisecond, long enough that the
# timer's own cost is small beside it.
UNIT_LOOPS = 400
SLOW = 1.5  # a unit this many times the median ran in a slow spell
# Work as long as the requests of the cells in question: a 64-row request of ours, a 1-row one,
# a peer's.
WINDOWS_MS = (0.1, 0.3, 1.0, 3.0, 10.0)


def steadiness(cpus: str | None, seconds: float) -> dict[str, Any]:
    """Run the probe in a process of its own, pinned to `cpus` (taskset) as the server is."""
    pinned = [] if cpus is None else ["taskset", "-c", cpus]
    command = [*pinned, sys.executable, "-m", "tests.bench.serving.machine", str(seconds)]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(run.stdout)
    figures["cpus"] = cpus or "all"
    return figures


def _unit() -> int:
    total = 0
    for i in range(UNIT_LOOPS):
        total += i
    return total


def _probe(seconds: float) -> dict[str, Any]:
    stamps = []
    deadline = time.perf_counter() + seconds
    while (now := time.perf_counter()) < deadline:
        stamps.append(now)
        _unit()
    return {"seconds": seconds, **figures(np.diff(np.asarray(stamps)))}


def figures(units: np.ndarray) -> dict[str, Any]:
    """From the seconds each unit took, in order: the median unit, the slow units' share, the
    slow spells' lengths, and the spread (p99 ÷ p50) of windows of WINDOWS_MS."""
    median = float(np.median(units))
    slow = units > SLOW * median
    # Spells: runs of consecutive slow units, as lengths of time.
    edges = np.diff(np.concatenate(([0], slow.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    elapsed = np.concatenate(([0.0], np.cumsum(units)))
    spells_ms = (elapsed[ends] - elapsed[starts]) * 1e3
    windows = {}
    for window_ms in WINDOWS_MS:
        # Each window: as many units back to back as take window_ms at the median speed.
        width = max(1, round(window_ms / 1e3 / median))
        sums = elapsed[width:] - elapsed[:-width]
        windows[f"{window_ms:g}"] = float(np.percentile(sums, 99) / np.percentile(sums, 50))
    return {
        "unit_us": median * 1e6,
        "slow_share": float(slow.mean()),
        "spell_ms_p50": float(np.median(spells_ms)) if len(spells_ms) else 0.0,
        "spell_ms_max": float(spells_ms.max()) if len(spells_ms) else 0.0,
        "spread_by_window_ms": windows,
    }


if __name__ == "__main__":
    print(json.dumps(_probe(float(sys.argv[1]))))
