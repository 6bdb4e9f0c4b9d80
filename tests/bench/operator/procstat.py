"""A process's memory and CPU time from /proc, sampled in a background thread."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces; the fields after its closing parenthesis do not.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_by_process(pids: dict[str, int]) -> dict[str, float]:
    """cpu_seconds of each named process."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak resident set) in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


@dataclass
class Sampler:
    """RSS every `interval` seconds, with the time since start and the phase it fell in."""

    pid: int
    interval: float = 0.5
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, float, str]] = field(default_factory=list)
    phase: str = "start"
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                rss = memory_kib(self.pid)["VmRSS"] / 1024
            except (OSError, KeyError):
                return  # the process is gone
            self.samples.append((time.monotonic() - self.started, rss, self.phase))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def profile_summary(raw: str, top: int = 8) -> list[tuple[float, str]]:
    """py-spy's raw output (`stack;frames count` per line) as the frames that held the most
    samples themselves, with their share of all samples."""
    own: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        frame = stack.split(";")[-1]
        own[frame] = own.get(frame, 0) + int(count)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:top]
    return [(count / total, frame) for frame, count in ranked]
