"""Run one child process and measure it: wall time and its own peak resident set.

The peak is VmHWM of the child's own program, sampled from /proc while it runs and, for our
workers, the figure they log at exit. The child's rusage (ru_maxrss) would not do: Linux
carries the parent's high-water mark across fork and exec, so every child would weigh at least
as much as this benchmark process.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

_LOGGED_PEAK = re.compile(r"^\w+: peak RSS (\d+) MiB$", re.MULTILINE)


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_bytes: int
    stdout: str
    stderr: str


def measure(command: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run `command` to completion; fail loudly if it fails (a benchmark of a failure is void)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _vm_hwm(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        raise RuntimeError(f"{command[:4]} exited {process.returncode}")
    logged = _LOGGED_PEAK.search(stderr)
    if logged:
        peak[0] = max(peak[0], int(logged.group(1)) << 20)
    return Measured(seconds, peak[0], stdout, stderr)


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # gone already
    return 0


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
