"""`python -m tests.bench.distributed [--quick]`: a 64-trial search on 1 and on 3 Dask workers,
and plain in-process GridSearchCV on the same data, pipeline and grid.

What is measured is the search as the training pod runs it with spec.workers
(selection.select through engine.search_backend: joblib's Dask backend, the data and folds sent
once as tasks the workers share, progress counted) against scikit-learn's GridSearchCV with
n_jobs=1 in this process.
Trials: 64 parameter sets of HistGradientBoostingClassifier, 3 folds each (192 fits), then the
refit of the best in the client, as both do. The workers are local processes (a scheduler and
one-thread workers behind nannies, speaking mutual TLS with a run's certificates, as in a run),
so the 3-worker figure is bounded by this machine's cores, not by Dask. Per-trial overhead:
(1-worker search - plain search) / 64, i.e. what one trial costs more on the engine than
in-process, with one CPU doing the fits in both.

Writes docs/benchmarks/distributed.md (medians over interleaved rounds).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits

from modelyard.api.trainingjob import TrainingJobSpec
from modelyard.engine import contract, tls
from modelyard.workloads.common.modelcard import Feature
from modelyard.workloads.training import engine
from modelyard.workloads.training.pipeline import ESTIMATOR_STEP
from modelyard.workloads.training.selection import plan, select

OUT = Path(__file__).resolve().parents[3] / "docs" / "benchmarks"
GRID = {
    "learning_rate": [0.03, 0.1, 0.2, 0.3],
    "max_leaf_nodes": [7, 15, 31, 63],
    "l2_regularization": [0.0, 0.1, 1.0, 10.0],
}
TRIALS = 64
FOLDS = 3
ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"
PARAMS = {"max_iter": 30, "early_stopping": False}


@dataclass(frozen=True)
class Sizes:
    rows: int
    rounds: int


FULL = Sizes(rows=20_000, rounds=2)
QUICK = Sizes(rows=4_000, rounds=1)


@contextmanager
def dask_cluster(workers: int, directory: Path) -> Iterator[str]:
    """A local scheduler and `workers` one-thread workers with a run's TLS configuration."""
    certificates = tls.issue("bench")
    (directory / contract.CA_FILE).write_bytes(certificates.ca_pem)
    (directory / contract.CERT_FILE).write_bytes(certificates.cert_pem)
    (directory / contract.KEY_FILE).write_bytes(certificates.key_pem)
    for item in contract.tls_env():
        os.environ[item["name"]] = item["value"].replace(contract.TLS_MOUNT, str(directory))
    import dask.config

    dask.config.refresh()
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


def data(rows: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x, y = make_classification(n_samples=rows, n_features=20, n_informative=8, random_state=0)
    return x, y


def spec() -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "bench"},
            "estimator": {"class": ESTIMATOR, "params": PARAMS},
            "search": {"strategy": "grid", "params": GRID, "cv": FOLDS},
            "workers": {"replicas": 1},
        }
    )


def features() -> list[Feature]:
    return [Feature(name=f"f{i}", type="float") for i in range(20)]


def plain(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    """scikit-learn's GridSearchCV in this process, one CPU, on the same pipeline."""
    chosen = plan(spec(), features(), "label")
    grid = {f"{ESTIMATOR_STEP}__{k}": v for k, v in GRID.items()}
    search = GridSearchCV(chosen.candidates[0].pipeline, grid, cv=FOLDS, n_jobs=1)
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        search.fit(x, y)
    return time.perf_counter() - started


def on_workers(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], workers: int) -> float:
    """The training pod's search on `workers` Dask workers (connection and wait not timed)."""
    chosen = plan(spec(), features(), "label")
    with (
        tempfile.TemporaryDirectory() as directory,
        dask_cluster(workers, Path(directory)) as address,
    ):
        os.environ[contract.SCHEDULER_ENV] = address
        os.environ[contract.WORKERS_ENV] = str(workers)
        with engine.connected(workers) as client:
            backend = engine.search_backend(client, chosen)
            started = time.perf_counter()
            select(chosen, x, y, 1, backend)
            return time.perf_counter() - started


def report(command: str, sizes: Sizes, figures: dict[str, list[float]]) -> str:
    median = {name: statistics.median(values) for name, values in figures.items()}
    fits = TRIALS * FOLDS
    overhead = (median["1 worker"] - median["in-process"]) / TRIALS
    lines = [
        "# Searches on a Dask cluster",
        "",
        f"`{command}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} logical cores, "
        f"{sizes.rows} rows x 20 features, {TRIALS} trials x {FOLDS} folds = {fits} fits of "
        f"{ESTIMATOR.rsplit('.', 1)[1]} ({PARAMS}), then the refit; median of {sizes.rounds} "
        "round(s).",
        "",
        "| search | seconds | per trial | vs in-process |",
        "|---|---:|---:|---:|",
    ]
    for name, value in median.items():
        lines.append(
            f"| {name} | {value:.1f} | {value / TRIALS:.3f} | {value / median['in-process']:.2f}x |"
        )
    lines += [
        "",
        "- Speed-up of 3 workers over 1 worker: "
        f"**{median['1 worker'] / median['3 workers']:.2f}x** "
        f"(at most {os.cpu_count()} here: three one-thread workers, the scheduler and the client "
        f"share this machine's {os.cpu_count()} cores, and so does anything else running; load "
        f"average at the end: {os.getloadavg()[0]:.1f}).",
        f"- Per-trial overhead of the engine against in-process GridSearchCV: "
        f"**{overhead:+.3f} s** "
        f"({overhead / FOLDS:+.3f} s per fit): TLS round trips, task serialization, the "
        "data and folds sent once as tasks the workers fetch, the refit in the client.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.distributed")
    parser.add_argument("--quick", action="store_true", help="fewer rows, one round")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    arguments = sys.argv[1:] if argv is None else argv
    command = f"python -m tests.bench.distributed {shlex.join(arguments)}".strip()
    x, y = data(sizes.rows)
    figures: dict[str, list[float]] = {"in-process": [], "1 worker": [], "3 workers": []}
    for index in range(sizes.rounds):
        # Interleaved, so a change in the machine's load touches every contender alike.
        figures["in-process"].append(plain(x, y))
        figures["1 worker"].append(on_workers(x, y, 1))
        figures["3 workers"].append(on_workers(x, y, 3))
        print(
            f"round {index + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in figures.items()),
            file=sys.stderr,
        )
    text = report(command, sizes, figures)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "distributed.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
