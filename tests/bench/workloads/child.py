"""Run one child process and measure it: wall time and its own peak resident set."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass


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
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # communicate() reaps the child itself; wait4 is needed for *this* child's rusage, so the
    # pipes are drained first and the child reaped here.
    assert process.stdout is not None and process.stderr is not None
    stdout = process.stdout.read()
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        raise RuntimeError(f"{command[:4]} exited {process.returncode}")
    return Measured(seconds, usage.ru_maxrss * 1024, stdout, stderr)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
