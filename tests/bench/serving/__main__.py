"""Entry point: `python -m tests.bench.serving [--quick]` (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri
from tests.bench.serving import load, report
from tests.bench.serving.machine import steadiness
from tests.bench.serving.models import BenchModel, build_models
from tests.bench.serving.profile import handler_profile
from tests.bench.serving.servers import (
    JSON_HEADERS,
    SERVERS,
    Endpoint,
    Launch,
    Running,
)
from tests.plugins.s3 import running_s3_server


@dataclass(frozen=True)
class Matrix:
    models: list[str]
    workers: list[int]
    rows: list[int]
    concurrency: list[int]
    rates: list[int]  # open loop, requests per second (one worker, one-row payloads)
    seconds: float
    warmup_seconds: float


FULL = Matrix(["lr", "rf", "hgb"], [1, 2], [1, 64], [1, 8, 64], [500, 2000], 3.0, 2.0)
QUICK = Matrix(["lr", "hgb"], [1], [1], [1, 64], [1000], 2.0, 1.0)
# One worker: the server gets this CPU and the load generator the other.
ONE_WORKER_CPU = "0"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.serving")
    parser.add_argument("--quick", action="store_true", help="reduced matrix, a few minutes")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write serving.md and .png again from serving.json (profiles again if missing or old)",
    )
    parser.add_argument("--models", type=_words, help="only these, e.g. hgb,rf (of lr,rf,hgb)")
    parser.add_argument("--workers", type=_numbers, help="only these worker counts, e.g. 1")
    parser.add_argument("--rows", type=_numbers, help="only these payload sizes, e.g. 64")
    parser.add_argument("--concurrency", type=_numbers, help="only these levels, e.g. 8,64")
    args = parser.parse_args()
    partial = {
        name: value
        for name in ("models", "workers", "rows", "concurrency")
        if (value := getattr(args, name)) is not None
    }
    if args.report_only:
        document = json.loads(report.RAW.read_text())
        # Profiles of older runs lack the V1 handler time the layer table needs: made again.
        if not all("handler_v1_us" in profile for profile in document.get("profiles") or [{}]):
            matrix = Matrix(**document["matrix"])
            with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as temporary:
                models = build_models(Path(temporary), matrix.models)
                document["profiles"] = profiles(models, matrix)
        report.write(document)
        return 0
    matrix = QUICK if args.quick else FULL
    if partial:
        # Some cells only: closed loop, printed and kept in the cache, docs left alone.
        matrix = replace(matrix, **partial, rates=[])
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    load.wrk()
    load.vegeta()
    machine = [machine_probe("before the run")]
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as temporary:
        workdir = Path(temporary)
        models = build_models(workdir / "models", matrix.models)
        with running_s3_server("127.0.0.1", workdir / "moto.log") as s3:
            results = run(matrix, models, workdir, s3.env(f"bench-{uuid.uuid4().hex[:8]}"))
        machine.append(machine_probe("after the run"))
        document = {
            "command": "python -m tests.bench.serving " + " ".join(sys.argv[1:]),
            "started": started,
            "load": f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after",
            "matrix": matrix.__dict__,
            "results": results,
            "profiles": profiles(models, matrix),
            "machine": machine,
        }
    if partial:
        PARTIAL.parent.mkdir(parents=True, exist_ok=True)
        PARTIAL.write_text(json.dumps(document, indent=1))
        table = report.goals(document["results"])[0]
        print(
            "\n".join(
                [
                    *table,
                    "",
                    *report.layers(document),
                    *report.limits(document),
                    *report.steadiness(document),
                ]
            )
        )
        print(f"raw figures: {PARTIAL}", file=sys.stderr)
        return 0
    report.write(document)
    return 0


PARTIAL = Path.home() / ".cache" / "modelyard" / "bench" / "serving-partial.json"


def _words(text: str) -> list[str]:
    return [word for word in text.split(",") if word]


def _numbers(text: str) -> list[int]:
    return [int(word) for word in _words(text)]


MACHINE_SECONDS = 5.0


def machine_probe(when: str) -> dict[str, Any]:
    """The spread of fixed work on CPU 0, where one-worker servers run, with nothing served."""
    figures = steadiness(ONE_WORKER_CPU, MACHINE_SECONDS)
    figures["when"] = f"{when}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    return figures


def profiles(models: list[BenchModel], matrix: Matrix) -> list[dict[str, Any]]:
    return [handler_profile(model, rows) for model in models for rows in matrix.rows]


def run(
    matrix: Matrix, models: list[BenchModel], workdir: Path, s3_env: dict[str, str]
) -> list[dict[str, Any]]:
    os.environ.update(s3_env)  # boto3 reads the credentials from the environment
    storage = Storage(StorageConfig.from_env(s3_env))
    root = S3Uri(s3_env["MODELYARD_S3_BUCKET"])
    storage.ensure_bucket(root.bucket)
    results: list[dict[str, Any]] = []
    for model in models:
        uri = str(model.publish(storage, root))
        for workers in matrix.workers:
            # One worker: the server gets CPU 0 and the load generator CPU 1. Two workers take
            # both cores, and so the load generator shares them.
            server_cpus, load_cpus = (ONE_WORKER_CPU, "1") if workers == 1 else (None, None)
            launch = Launch(model, uri, s3_env, workers, server_cpus, workdir)
            running: list[Running] = []
            try:
                for start in SERVERS:
                    running.append(start(launch))
                endpoints = [endpoint for server in running for endpoint in server.endpoints]
                check_predictions(endpoints, model)
                results += measure(matrix, model, workers, endpoints, workdir, load_cpus)
            finally:
                for server in running:
                    server.stop()
    return results


def check_predictions(endpoints: list[Endpoint], model: BenchModel) -> None:
    """Every server answers the test split's rows exactly as the pipeline does."""
    rows = 64
    expected = model.expected(rows)
    for endpoint in endpoints:
        if endpoint.label == "ceiling":
            continue
        body = endpoint.protocol.body(model.rows(rows))
        answer = requests.post(endpoint.url, data=body, headers=JSON_HEADERS, timeout=30)
        answer.raise_for_status()
        got = endpoint.protocol.predictions(answer.json())
        if got != expected:
            raise AssertionError(f"{endpoint.label} predicts {got[:8]}…, expected {expected[:8]}…")
    print(f"{model.name}: every server returns the same {rows} predictions", file=sys.stderr)


def measure(
    matrix: Matrix,
    model: BenchModel,
    workers: int,
    endpoints: list[Endpoint],
    workdir: Path,
    cpus: str | None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    bodies: dict[tuple[str, int], Path] = {}
    for endpoint in endpoints:
        for rows in matrix.rows:
            path = workdir / f"{model.name}-{endpoint.protocol.name}-{rows}.json"
            path.write_bytes(endpoint.protocol.body(model.rows(rows)))
            bodies[endpoint.protocol.name, rows] = path
        warm = bodies[endpoint.protocol.name, matrix.rows[-1]]
        load.closed_loop(endpoint.url, warm, 8, matrix.warmup_seconds, cpus)

    def record(endpoint: Endpoint, rows: int, mode: str, level: int, figures: Any) -> None:
        result = {
            "model": model.name,
            "model_label": model.label,
            "workers": workers,
            "rows": rows,
            "server": endpoint.label,
            "mode": mode,
            "level": level,
            **figures.as_dict(),
        }
        results.append(result)
        print(json.dumps(result), file=sys.stderr)

    # Interleaved: every server runs each cell before the next cell starts, so drifts in the
    # machine's load hit all of them alike.
    for rows in matrix.rows:
        for connections in matrix.concurrency:
            for endpoint in endpoints:
                body = bodies[endpoint.protocol.name, rows]
                figures = load.closed_loop(endpoint.url, body, connections, matrix.seconds, cpus)
                record(endpoint, rows, "closed", connections, figures)
    if workers == 1:
        for rate in matrix.rates:
            for endpoint in endpoints:
                body = bodies[endpoint.protocol.name, 1]
                figures = load.open_loop(endpoint.url, body, rate, matrix.seconds, cpus)
                record(endpoint, 1, "open", rate, figures)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
