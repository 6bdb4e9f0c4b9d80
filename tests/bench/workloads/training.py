"""Training: `modelyard-worker train` against a plain scikit-learn script, on the same data.

Our worker trains on the Dataset version that `modelyard-worker ingest` made of the CSV (ingest
is not timed here); the plain script reads the CSV itself. The smallest size measures the fixed
start-up of each (imports, S3 round trips, model upload), reported apart from the rest.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.workloads.child import Measured, measure, python
from tests.bench.workloads.data import TARGET, csv_of_rows
from tests.bench.workloads.servers import ALLOW_LOOPBACK, fresh_bucket, serving_directory
from tests.plugins.s3 import S3Server

ESTIMATORS: dict[str, dict[str, Any]] = {
    "sklearn.linear_model.LogisticRegression": {"max_iter": 300},
    "sklearn.ensemble.HistGradientBoostingClassifier": {"max_iter": 50},
}
STARTUP_ROWS = 1000


@dataclass
class TrainRound:
    estimator: str
    rows: int
    ours: Measured
    peer: Measured


def run(sizes: tuple[int, ...], s3: S3Server, rounds: int) -> list[TrainRound]:
    results = []
    for rows in [STARTUP_ROWS, *sizes]:
        csv = csv_of_rows(rows)
        with serving_directory(csv.parent) as base_url, fresh_bucket(s3) as s3_env:
            dataset = _ingest(f"{base_url}/{csv.name}", s3_env)
            for estimator, params in ESTIMATORS.items():
                for index in range(rounds):
                    ours = _ours(estimator, params, dataset, s3_env, f"run-{index}")
                    peer = measure(
                        python(
                            "-m",
                            "tests.bench.workloads.plain_sklearn",
                            str(csv),
                            TARGET,
                            estimator,
                            json.dumps(params),
                        ),
                        {**os.environ, **SINGLE_THREADED},
                    )
                    results.append(TrainRound(estimator, rows, ours, peer))
    return results


# One OpenMP thread for both contenders: on a shared two-core machine, OpenMP's spinning
# workers (HistGradientBoosting) make wall times swing tenfold from run to run.
SINGLE_THREADED = {"OMP_NUM_THREADS": "1"}


def _worker(command: str, spec: dict[str, Any], s3_env: dict[str, str], *args: str) -> Measured:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as work:
        env = {
            **os.environ,
            **ALLOW_LOOPBACK,
            **SINGLE_THREADED,
            **s3_env,
            "MODELYARD_SPEC": json.dumps(spec),
            "MODELYARD_TERMINATION_LOG": str(Path(work) / "termination-log"),
            "TMPDIR": work,
        }
        return measure(python("-m", "modelyard.workloads", command, *args), env)


def _ingest(url: str, s3_env: dict[str, str]) -> dict[str, Any]:
    spec = {"source": {"http": {"url": url}}, "target": TARGET}
    result = _worker("ingest", spec, s3_env, "--name", "bench")
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def _ours(
    estimator: str,
    params: dict[str, Any],
    dataset: dict[str, Any],
    s3_env: dict[str, str],
    run: str,
) -> Measured:
    spec = {"datasetRef": {"name": "bench"}, "estimator": {"class": estimator, "params": params}}
    return _worker(
        "train",
        spec,
        s3_env,
        "--dataset-uri",
        dataset["uri"],
        "--dataset-version",
        dataset["version"],
        "--name",
        "bench",
        "--run",
        run,
    )
