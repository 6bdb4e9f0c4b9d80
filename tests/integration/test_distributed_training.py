"""Training on a real Dask cluster: a scheduler and three worker processes speaking mutual TLS
with a run's own certificates (engine/tls.py, engine/contract.py), the training workload as the
client in a process of its own, as in its pod, and a real S3 server.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from modelyard.engine import contract, tls
from modelyard.exitcodes import EXIT_ENGINE_LOST
from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.modelcard import ModelCard
from modelyard.workloads.ingest import parquet_sink
from tests.plugins.s3 import S3Server, running_s3_server
from tests.workers import Worker

pytestmark = pytest.mark.integration

WORKERS = 3
# botocore puts this in each request's User-Agent (app/<id>): who read what, seen by the server.
CLIENT_AGENT, WORKER_AGENT = "modelyard-training-pod", "modelyard-dask-worker"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tls_env(directory: Path) -> dict[str, str]:
    """The run's Dask configuration (contract.tls_env), with its mount here."""
    certificates = tls.issue("test-run")
    (directory / contract.CA_FILE).write_bytes(certificates.ca_pem)
    (directory / contract.CERT_FILE).write_bytes(certificates.cert_pem)
    (directory / contract.KEY_FILE).write_bytes(certificates.key_pem)
    return {
        item["name"]: item["value"].replace(contract.TLS_MOUNT, str(directory))
        for item in contract.tls_env()
    }


@dataclass
class DaskCluster:
    address: str
    env: dict[str, str]
    logs: Path
    tls_dir: Path
    scheduler: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.workers)}.log").open("w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                self.address,
                "--nthreads",
                "1",
                # Behind a nanny, as in a worker pod: a restart brings the worker process back.
                "--no-dashboard",
                "--name",
                f"worker-{len(self.workers)}",
            ],
            env={**self.env, "AWS_SDK_UA_APP_ID": f"{WORKER_AGENT}-{len(self.workers)}"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def kill_worker(self, index: int) -> None:
        self.workers[index].send_signal(signal.SIGKILL)
        self.workers[index].wait()

    def stop(self) -> None:
        for process in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _start_cluster(tmp_path: Path, s3_env: dict[str, str]) -> DaskCluster:
    tls_dir = tmp_path / "dask-tls"
    tls_dir.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        **s3_env,
        **_tls_env(tls_dir),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    cluster = DaskCluster(f"tls://127.0.0.1:{port}", env, tmp_path, tls_dir)
    cluster.scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        env=env,
        stdout=(tmp_path / "scheduler.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(WORKERS):
        cluster.start_worker()
    return cluster


@pytest.fixture
def dask_cluster(tmp_path: Path, s3_env: dict[str, str]) -> Iterator[DaskCluster]:
    cluster = _start_cluster(tmp_path, s3_env)
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Run:
    exit_code: int
    message: dict[str, Any]
    progress: list[dict[str, int]]
    output: str


class TrainingPod:
    """`modelyard-worker train` in a process of its own, as in the training pod: the Dask
    client, with the environment the operator gives it."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.progress: list[dict[str, int]] = []

    def start(self, spec: dict[str, Any], dataset: dict[str, Any]) -> subprocess.Popen[str]:
        self.log = self.tmp_path / f"termination-{uuid.uuid4().hex[:8]}"
        env = {
            **self.env,
            "MODELYARD_SPEC": json.dumps(spec),
            "MODELYARD_TERMINATION_LOG": str(self.log),
            "AWS_SDK_UA_APP_ID": CLIENT_AGENT,
        }
        args = ["--dataset-uri", dataset["uri"], "--dataset-version", dataset["version"]]
        args += ["--name", "tj", "--namespace", "ml", "--run", "run-1"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelyard.workloads", "train", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self.process

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith("{") and contract.PROGRESS_KEY in line:
                self.progress.append(json.loads(line)[contract.PROGRESS_KEY])

    def wait(self, timeout: float = 600) -> Run:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # a hung client must not outlive the test
            self.process.wait()
            raise
        self.reader.join(timeout=10)
        return Run(code, json.loads(self.log.read_text()), self.progress, "".join(self.lines))

    def run(self, spec: dict[str, Any], dataset: dict[str, Any]) -> Run:
        self.start(spec, dataset)
        return self.wait()


def _pod_env(cluster: DaskCluster) -> dict[str, str]:
    return {
        **cluster.env,
        contract.SCHEDULER_ENV: cluster.address,
        contract.WORKERS_ENV: str(WORKERS),
        "MODELYARD_DASK_TIMEOUT": "120",
        # LightGBM's socket time-out (minutes): how long the workers that survive a lost one
        # wait for it before the fit fails and is retried (2 by default).
        "MODELYARD_LIGHTGBM_TIME_OUT": "1",
    }


def _tasks_per_worker(cluster: DaskCluster, marker: str) -> dict[str, int]:
    """How many tasks whose key contains `marker` each live worker ran (from its own log)."""
    from distributed import Client
    from distributed.security import Security

    security = Security(
        tls_ca_file=str(cluster.tls_dir / contract.CA_FILE),
        tls_client_cert=str(cluster.tls_dir / contract.CERT_FILE),
        tls_client_key=str(cluster.tls_dir / contract.KEY_FILE),
        require_encryption=True,
    )

    def count(dask_worker: Any) -> int:
        return len({entry[0] for entry in dask_worker.state.log if marker in str(entry[0])})

    with Client(cluster.address, timeout=30, security=security) as client:
        return dict(client.run(count))


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> Worker:
    return Worker(tmp_path, monkeypatch)


GRID = {"C": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0], "fit_intercept": [True, False]}


def _search_spec() -> dict[str, Any]:
    return {
        "datasetRef": {"name": "bc"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "search": {"strategy": "grid", "params": GRID, "cv": 3},
        "workers": {"replicas": WORKERS},
    }


def test_search_on_workers_spreads_its_fits_and_publishes_a_model(
    worker: Worker, storage: Storage, dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    data = worker.ingest({"source": {"builtin": {"name": "breast_cancer"}}}, name="bc")
    pod = TrainingPod(tmp_path, _pod_env(dask_cluster))
    result = pod.run(_search_spec(), data.message)
    assert result.exit_code == 0, result.output[-3000:]
    message = result.message
    assert message["status"] == "Succeeded"
    assert message["params"]["C"] in GRID["C"]
    assert len(message["leaderboard"]) >= 1
    assert message["metrics"]["accuracy"] > 0.9
    # Every fit of the search, 12 trials times 3 folds, was counted as it finished.
    assert result.progress[-1] == {"trialsDone": 36, "trialsTotal": 36}
    ran = _tasks_per_worker(dask_cluster, "_fit_and_score")
    assert sum(1 for count in ran.values() if count) > 1, ran
    model_uri = S3Uri.parse(message["model"]["uri"])
    model = joblib.load(io.BytesIO(storage.get_bytes(model_uri)))
    card = ModelCard.model_validate_json(
        storage.get_bytes(
            S3Uri(model_uri.bucket, model_uri.key.replace("model.joblib", "model.json"))
        )
    )
    assert card.digest == message["model"]["digest"]
    assert len(card.leaderboard) == 12
    assert model.predict(np.zeros((1, len(card.features)))).shape == (1,)


def _wide_search_spec() -> dict[str, Any]:
    spec = _search_spec()
    spec["search"]["params"] = {
        "C": [0.01 * 2**i for i in range(12)],
        "fit_intercept": [True, False],
    }
    return spec


def _board(message: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [(entry["params"], entry["score"]) for entry in message["leaderboard"]]


def _wait_for(pod: TrainingPod, moment: str) -> None:
    """Until the workers are ready (the search's data not yet on them) or its first fits end."""
    deadline = time.monotonic() + 300
    while pod.process.poll() is None and time.monotonic() < deadline:
        if pod.progress if moment == "fits" else any("workers ready" in x for x in pod.lines):
            return
        time.sleep(0.01)
    raise AssertionError(f"the run ended before {moment}: {''.join(pod.lines)[-3000:]}")


@pytest.mark.parametrize("moment", ["ready", "fits"])
def test_search_survives_a_worker_killed_mid_search(
    worker: Worker, dask_cluster: DaskCluster, tmp_path: Path, moment: str
) -> None:
    data = worker.ingest({"source": {"builtin": {"name": "breast_cancer"}}}, name="bc")
    spec = _wide_search_spec()
    # The same search in the training pod alone: what the run must select despite the kill.
    alone = TrainingPod(tmp_path, dask_cluster.env).run(
        {key: value for key, value in spec.items() if key != "workers"}, data.message
    )
    assert alone.exit_code == 0, alone.output[-3000:]
    pod = TrainingPod(tmp_path, _pod_env(dask_cluster))
    pod.start(spec, data.message)
    _wait_for(pod, moment)
    if pod.progress:
        assert pod.progress[-1]["trialsDone"] < pod.progress[-1]["trialsTotal"]
    dask_cluster.kill_worker(0)
    dask_cluster.start_worker()  # as the worker's Deployment would
    result = pod.wait()
    assert result.exit_code == 0, result.output[-3000:]
    assert result.message["status"] == "Succeeded"
    assert result.progress[-1] == {"trialsDone": 72, "trialsTotal": 72}
    assert _board(result.message) == _board(alone.message)
    assert result.message["params"] == alone.message["params"]


def test_search_whose_workers_all_die_fails_the_run_as_engine_lost(
    worker: Worker, dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    data = worker.ingest({"source": {"builtin": {"name": "breast_cancer"}}}, name="bc")
    pod = TrainingPod(tmp_path, {**_pod_env(dask_cluster), "MODELYARD_DASK_TIMEOUT": "10"})
    pod.start(_wide_search_spec(), data.message)
    _wait_for(pod, "ready")
    for index in range(WORKERS):  # and none comes back
        dask_cluster.kill_worker(index)
    result = pod.wait()
    assert result.exit_code == EXIT_ENGINE_LOST, result.output[-3000:]
    assert result.message["reason"] == "EngineLost"
    assert dask_cluster.address in result.message["message"]


def test_scheduler_lost_mid_search_fails_the_run_as_engine_lost(
    worker: Worker, dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    data = worker.ingest({"source": {"builtin": {"name": "breast_cancer"}}}, name="bc")
    pod = TrainingPod(tmp_path, {**_pod_env(dask_cluster), "MODELYARD_DASK_TIMEOUT": "10"})
    pod.start(_wide_search_spec(), data.message)
    deadline = time.monotonic() + 300
    while not pod.progress and pod.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pod.progress, "the search reported no progress before it ended"
    assert dask_cluster.scheduler is not None
    dask_cluster.scheduler.send_signal(signal.SIGKILL)
    result = pod.wait()
    assert result.exit_code == EXIT_ENGINE_LOST, result.output[-3000:]
    assert result.message["reason"] == "EngineLost"
    assert dask_cluster.address in result.message["message"]


def test_workers_that_never_join_fail_the_run_as_engine_lost(
    worker: Worker, dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    data = worker.ingest({"source": {"builtin": {"name": "breast_cancer"}}}, name="bc")
    env = {**_pod_env(dask_cluster), contract.WORKERS_ENV: "4", "MODELYARD_DASK_TIMEOUT": "15"}
    result = TrainingPod(tmp_path, env).run(_search_spec(), data.message)
    assert result.exit_code == EXIT_ENGINE_LOST, result.output[-3000:]
    assert result.message["reason"] == "EngineLost"
    assert re.search(r"\d of 4 Dask workers joined", result.message["message"])


def test_no_scheduler_fails_the_run_as_engine_lost(worker: Worker, tmp_path: Path) -> None:
    data = worker.ingest({"source": {"builtin": {"name": "breast_cancer"}}}, name="bc")
    tls_dir = tmp_path / "dask-tls"
    tls_dir.mkdir()
    address = f"tls://127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        **_tls_env(tls_dir),
        contract.SCHEDULER_ENV: address,
        contract.WORKERS_ENV: "3",
        "MODELYARD_DASK_TIMEOUT": "3",
    }
    result = TrainingPod(tmp_path, env).run(_search_spec(), data.message)
    assert result.exit_code == EXIT_ENGINE_LOST == 6
    assert result.message["status"] == "Failed"
    assert result.message["reason"] == "EngineLost"
    assert address in result.message["message"]
    assert "did not answer" in result.message["message"]


# Data-parallel: a snapshot with several row groups, on an S3 server that records who read what.


@pytest.fixture(scope="module")
def recorded_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Server, Path]]:
    directory = tmp_path_factory.mktemp("recorded-s3")
    recording = directory / "requests.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_RECORDER_FILEPATH", str(recording))
        with running_s3_server("127.0.0.1", directory / "moto.log") as server:
            patch.undo()
            yield server, recording


def _requests(server: S3Server, recording: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in recording.read_text().splitlines() if line.strip()]


@dataclass
class Snapshot:
    server: S3Server
    recording: Path
    s3_env: dict[str, str]
    dataset: dict[str, Any]
    data_file: S3Uri
    rows: int


@pytest.fixture
def churn(
    recorded_s3: tuple[S3Server, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Snapshot:
    """A Dataset version of 400,000 rows whose data file has several row groups."""
    server, recording = recorded_s3
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3_env = server.env(bucket)
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    storage = Storage(StorageConfig.from_env(s3_env))
    storage.ensure_bucket(bucket)
    rng = np.random.default_rng(0)
    # Ingest reads sources in batches of 64 Ki rows and gathers them into row groups of
    # ROW_GROUP_BYTES (16 MiB); at 1 MiB each batch of these rows is a row group of its own.
    monkeypatch.setattr(parquet_sink, "ROW_GROUP_BYTES", 1 << 20)
    rows = 400_000
    x = rng.normal(size=(rows, 4))
    plan = rng.choice(["basic", "pro", "team"], size=rows)
    label = np.where(x[:, 0] + 0.5 * x[:, 1] + (plan == "pro") > 0.3, "churn", "stay")
    table = pa.table({**{f"f{i}": x[:, i] for i in range(4)}, "plan": plan, "label": label})
    source = io.BytesIO()
    pq.write_table(table, source)
    storage.put_bytes(S3Uri(bucket, "source.parquet"), source.getvalue())
    data = Worker(tmp_path, monkeypatch).ingest(
        {"source": {"s3": {"uri": f"s3://{bucket}/source.parquet"}}, "target": "label"},
        name="churn",
    )
    assert data.exit_code == 0, data.message
    snapshot = S3Uri.parse(data.message["uri"])
    data_file = S3Uri(snapshot.bucket, snapshot.key.rstrip("/") + "/data.parquet")
    metadata = pq.ParquetFile(io.BytesIO(storage.get_bytes(data_file))).metadata
    assert metadata.num_row_groups >= 6
    return Snapshot(server, recording, s3_env, data.message, data_file, rows)


def _data_parallel_spec(trees: int) -> dict[str, Any]:
    params = {"n_estimators": trees, "verbose": -1}
    return {
        "datasetRef": {"name": "churn"},
        "estimator": {"class": "lightgbm.LGBMClassifier", "params": params},
        "workers": {"replicas": WORKERS, "dataParallel": True},
    }


def _assert_served_model(churn: Snapshot, message: dict[str, Any]) -> None:
    """The model is the pipeline the model server loads, with the local LightGBM model in it."""
    storage = Storage(StorageConfig.from_env(churn.s3_env))
    model = joblib.load(io.BytesIO(storage.get_bytes(S3Uri.parse(message["model"]["uri"]))))
    assert type(model.steps[-1][1]).__name__ == "LGBMClassifier"
    rows_in = np.array([[2.0, 2.0, 0.0, 0.0, "pro"], [-2.0, -2.0, 0.0, 0.0, "basic"]], dtype=object)
    assert model.predict(rows_in).tolist() == ["churn", "stay"]


def test_data_parallel_lightgbm_reads_row_groups_only_on_the_workers(
    churn: Snapshot, tmp_path: Path
) -> None:
    server, recording = churn.server, churn.recording
    cluster = _start_cluster(tmp_path, churn.s3_env)
    try:
        requests.post(f"{server.endpoint}/moto-api/recorder/reset-recording", timeout=10)
        requests.post(f"{server.endpoint}/moto-api/recorder/start-recording", timeout=10)
        result = TrainingPod(tmp_path, _pod_env(cluster)).run(
            _data_parallel_spec(40), churn.dataset
        )
        requests.post(f"{server.endpoint}/moto-api/recorder/stop-recording", timeout=10)
    finally:
        cluster.stop()
    assert result.exit_code == 0, result.output[-3000:]
    message = result.message
    assert message["status"] == "Succeeded"
    assert message["estimator"] == "lightgbm.LGBMClassifier"
    assert message["trainRows"] + message["testRows"] == churn.rows
    assert message["metrics"]["accuracy"] > 0.85
    # The training pod read no byte of the data file; the workers read it, by ranges.
    gets = [
        r
        for r in _requests(server, recording)
        if r["method"] == "GET" and r["url"].split("?")[0].endswith(churn.data_file.key)
    ]
    agents = [re.search(r"app/(\S+)", r["headers"].get("User-Agent", "")) for r in gets]
    readers = {agent.group(1) if agent else None for agent in agents}
    assert gets and all(r and r.startswith(WORKER_AGENT) for r in readers), readers
    assert len(readers) > 1, readers  # spread over the workers
    assert all("Range" in r["headers"] for r in gets)
    _assert_served_model(churn, message)


@pytest.mark.parametrize(
    "killed",
    [
        pytest.param(1, id="one-worker"),
        # What a nanny does to workers that pass 95 % of their memory at once: each comes back
        # under another address. No surviving worker reports an error, and LightGBM's tasks,
        # pinned to the old addresses, would wait for ever; the run must retry the fit instead.
        pytest.param(WORKERS, id="every-worker"),
    ],
)
def test_data_parallel_lightgbm_retries_a_fit_whose_workers_are_lost(
    churn: Snapshot, tmp_path: Path, killed: int
) -> None:
    cluster = _start_cluster(tmp_path, churn.s3_env)
    try:
        pod = TrainingPod(tmp_path, _pod_env(cluster))
        pod.start(_data_parallel_spec(300), churn.dataset)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and pod.process.poll() is None:
            if any(line.startswith("train: sample took") for line in pod.lines):
                break
            time.sleep(0.05)
        time.sleep(3)  # into LightGBM's distributed training
        assert pod.process.poll() is None, "the run ended before the fit"
        for index in range(killed):
            cluster.kill_worker(index)
        for _ in range(killed):
            cluster.start_worker()  # as the workers' Deployments would
        result = pod.wait()
    finally:
        cluster.stop()
    assert result.exit_code == 0, result.output[-3000:]
    assert result.message["status"] == "Succeeded"
    _assert_served_model(churn, result.message)
