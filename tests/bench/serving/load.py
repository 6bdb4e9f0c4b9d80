"""Load generators: wrk (closed loop, fixed concurrency) and vegeta (open loop, fixed rate)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.bench.venvs import CACHE

LUA = Path(__file__).with_name("post.lua")
VEGETA_MODULE = "github.com/tsenart/vegeta/v12@v12.12.0"
BIN = CACHE.parent / "bin"


@dataclass(frozen=True)
class Measured:
    requests: int  # answered or failed within the run; those still in flight at its end are not
    throughput: float  # successful requests per second
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors, timeouts and non-2xx answers: the three below added up
    socket_errors: int  # connect, read or write failed (vegeta: also its time-outs)
    timeouts: int | None  # no answer within the client's time-out; None: vegeta cannot tell
    bad_status: int  # answered, but not 2xx

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        print("installing wrk (Debian) ...", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    assert found is not None
    return found


def vegeta() -> str:
    path = BIN / "vegeta"
    if not path.exists():
        print(f"building {VEGETA_MODULE} into {BIN} ...", file=sys.stderr)
        BIN.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["go", "install", VEGETA_MODULE], check=True, env={**os.environ, "GOBIN": str(BIN)}
        )
    return str(path)


def closed_loop(
    url: str, body: Path, connections: int, seconds: float, cpus: str | None
) -> Measured:
    """`connections` clients, each sending its next request as soon as the last is answered."""
    command = [
        *_pinned(cpus),
        wrk(),
        *("-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s"),
        *("-s", str(LUA), url),
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "BENCH_BODY": str(body)}
    )
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed: {run.stderr}")
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    errors = figures["socket_errors"] + figures["timeouts"] + figures["bad_status"]
    return Measured(
        requests=figures["requests"],
        throughput=(figures["requests"] - errors) / figures["seconds"],
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=errors,
        socket_errors=figures["socket_errors"],
        timeouts=figures["timeouts"],
        bad_status=figures["bad_status"],
    )


def open_loop(url: str, body: Path, rate: int, seconds: float, cpus: str | None) -> Measured:
    """Requests sent at `rate` per second whether or not earlier ones were answered."""
    target = f"POST {url}\nContent-Type: application/json\n@{body}\n"
    attack = subprocess.run(
        [
            *_pinned(cpus),
            vegeta(),
            "attack",
            *(
                f"-rate={rate}/s",
                f"-duration={round(seconds)}s",
                "-timeout=10s",
                "-max-workers=512",
            ),
        ],
        input=target.encode(),
        capture_output=True,
    )
    if attack.returncode != 0:
        raise RuntimeError(f"vegeta failed: {attack.stderr.decode()}")
    report = subprocess.run(
        [vegeta(), "report", "-type=json"], input=attack.stdout, capture_output=True, check=True
    )
    figures = json.loads(report.stdout)
    codes: dict[str, int] = figures["status_codes"]
    ok = sum(count for code, count in codes.items() if code.startswith("2"))
    # Vegeta records a request that got no answer (refused, reset, timed out) as status 0.
    unanswered = codes.get("0", 0)
    return Measured(
        requests=figures["requests"],
        throughput=figures["throughput"],
        p50_ms=figures["latencies"]["50th"] / 1e6,
        p99_ms=figures["latencies"]["99th"] / 1e6,
        errors=figures["requests"] - ok,
        socket_errors=unanswered,
        timeouts=None,
        bad_status=figures["requests"] - ok - unanswered,
    )


def _pinned(cpus: str | None) -> list[str]:
    return [] if cpus is None else ["taskset", "-c", cpus]
