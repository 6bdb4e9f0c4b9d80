"""Starting each server on loopback the way its documentation says, and talking to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

from tests.bench import venvs
from tests.bench.serving.models import BenchModel
from tests.serving import free_port, free_ports

JSON_HEADERS = {"content-type": "application/json"}
APPS = Path(__file__).with_name("apps")
ROOT = Path(__file__).resolve().parents[3]


def v2_body(rows: np.ndarray) -> bytes:
    """One FP64 matrix tensor: what MLServer's scikit-learn runtime decodes by default."""
    tensor = {
        "name": "input-0",
        "shape": list(rows.shape),
        "datatype": "FP64",
        "data": rows.ravel().tolist(),
    }
    return json.dumps({"inputs": [tensor]}).encode()


def v1_body(rows: np.ndarray) -> bytes:
    return json.dumps({"instances": rows.tolist()}).encode()


def v2_predictions(answer: dict[str, Any]) -> list[int]:
    return [int(value) for value in answer["outputs"][0]["data"]]


def v1_predictions(answer: dict[str, Any]) -> list[int]:
    return [int(value) for value in answer["predictions"]]


@dataclass(frozen=True)
class Protocol:
    name: str
    body: Callable[[np.ndarray], bytes]
    predictions: Callable[[dict[str, Any]], list[int]]


V2 = Protocol("V2", v2_body, v2_predictions)
V1 = Protocol("V1", v1_body, v1_predictions)


@dataclass(frozen=True)
class Endpoint:
    label: str  # "modelyard V2", "MLServer V2", ...
    url: str
    protocol: Protocol


@dataclass
class Running:
    """One started server (possibly several processes in one session) and its endpoints."""

    name: str
    process: subprocess.Popen[bytes]
    endpoints: list[Endpoint] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@dataclass(frozen=True)
class Launch:
    """What every server gets: the model, worker count, CPUs to pin to, a work directory."""

    model: BenchModel
    model_uri: str  # s3://… for our server
    s3_env: dict[str, str]
    workers: int
    cpus: str | None
    workdir: Path

    def threads(self) -> int:
        """OpenMP threads per server process: its CPUs shared among its workers.

        scikit-learn's HistGradientBoosting predicts on OpenMP threads, one per CPU a process
        sees. Unpinned, each of two workers ran two on the two cores the load generator uses
        too, and the peers answered a handful of requests in a run (KServe V1: 1 in 3 s).
        """
        cpus = len(os.sched_getaffinity(0)) if self.cpus is None else _count(self.cpus)
        return max(1, cpus // self.workers)


def _count(cpus: str) -> int:
    """How many CPUs a taskset list such as "0", "0,1" or "0-3" names."""
    total = 0
    for part in cpus.split(","):
        first, _, last = part.partition("-")
        total += int(last or first) - int(first) + 1
    return total


def _launch(
    launch: Launch, name: str, command: list[str], log: Path, env: dict[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    pinned = [] if launch.cpus is None else ["taskset", "-c", launch.cpus]
    with log.open("wb") as sink:
        return subprocess.Popen(
            [*pinned, *command],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": str(launch.threads()), **env},
            cwd=cwd,
            start_new_session=True,  # one process group: the server's workers stop with it
        )


def wait_ready(running: Running, model: BenchModel, log: Path, seconds: float = 180) -> None:
    """Until every endpoint answers a one-row prediction with 200; stopped if it never does."""
    try:
        _wait_ready(running, model, log, seconds)
    except BaseException:
        running.stop()
        raise


def _wait_ready(running: Running, model: BenchModel, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for endpoint in running.endpoints:
        body = endpoint.protocol.body(model.rows(1))
        while True:
            if running.process.poll() is not None:
                raise RuntimeError(f"{running.name} exited; see {log}:\n{log.read_text()[-3000:]}")
            try:
                answer = requests.post(endpoint.url, data=body, headers=JSON_HEADERS, timeout=5)
                if answer.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{endpoint.label} not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)


def modelyard(launch: Launch) -> Running:
    """Ours as deployed: adaptive batching on (the default)."""
    return _modelyard(launch, "modelyard")


def modelyard_unbatched(launch: Launch) -> Running:
    """Ours with batching off: what batching adds, and the same App the other HTTP servers
    run (tests/bench/serving/apps/asgi_app.py predicts each request alone)."""
    return _modelyard(launch, "modelyard unbatched", "--batch-rows", "1")


def _modelyard(launch: Launch, label: str, *flags: str) -> Running:
    port = free_port()
    log = launch.workdir / f"{label.replace(' ', '-')}-{launch.model.name}-{launch.workers}.log"
    command = [
        *(sys.executable, "-m", "modelyard.workloads", "serve"),
        *("--model-uri", launch.model_uri, "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(launch.workers)),
        *("--monitor-port", str(free_ports(launch.workers))),
        *flags,
    ]
    process = _launch(launch, label, command, log, launch.s3_env, ROOT)
    base = f"http://127.0.0.1:{port}"
    name = launch.model.name
    running = Running(
        label,
        process,
        [
            Endpoint(f"{label} V2", f"{base}/v2/models/{name}/infer", V2),
            Endpoint(f"{label} V1", f"{base}/v1/models/{name}:predict", V1),
        ],
    )
    wait_ready(running, launch.model, log)
    return running


def ceiling(launch: Launch) -> Running:
    port = free_port()
    log = launch.workdir / f"ceiling-{launch.workers}.log"
    command = [
        *(sys.executable, "-m", "tests.bench.serving.apps.ceiling"),
        *(str(port), str(launch.workers)),
    ]
    process = _launch(launch, "ceiling", command, log, {}, ROOT)
    running = Running(
        "ceiling", process, [Endpoint("ceiling", f"http://127.0.0.1:{port}/ceiling", V2)]
    )
    wait_ready(running, launch.model, log)
    return running


def mlserver(launch: Launch) -> Running:
    """`mlserver start <folder>` with settings.json and model-settings.json, as MLServer's docs.

    Workers: MLServer's `parallel_workers` (inference processes behind one HTTP process).
    """
    port = free_port()
    folder = launch.workdir / f"mlserver-{launch.model.name}-{launch.workers}"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": launch.workers,
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": launch.model.name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(launch.model.path)},
    }
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    python = venvs.python("mlserver")
    log = folder / "server.log"
    command = [str(python.parent / "mlserver"), "start", str(folder)]
    process = _launch(launch, "mlserver", command, log, {}, folder)
    url = f"http://127.0.0.1:{port}/v2/models/{launch.model.name}/infer"
    running = Running("mlserver", process, [Endpoint("MLServer V2", url, V2)])
    wait_ready(running, launch.model, log)
    return running


def kserve(launch: Launch) -> Running:
    port = free_port()
    name = launch.model.name
    log = launch.workdir / f"kserve-{name}-{launch.workers}.log"
    command = [
        *(str(venvs.python("kserve")), str(APPS / "kserve_model.py")),
        *("--model_name", name, "--model_path", str(launch.model.path)),
        *("--http_port", str(port), "--grpc_port", str(free_port())),
        *("--workers", str(launch.workers)),
        # Neither is measured: no gRPC server beside HTTP, no log line per request.
        *("--enable_grpc", "false", "--enable_latency_logging", "false"),
    ]
    process = _launch(launch, "kserve", command, log, {}, launch.workdir)
    base = f"http://127.0.0.1:{port}"
    running = Running(
        "kserve",
        process,
        [
            Endpoint("KServe V2", f"{base}/v2/models/{name}/infer", V2),
            Endpoint("KServe V1", f"{base}/v1/models/{name}:predict", V1),
        ],
    )
    wait_ready(running, launch.model, log)
    return running


def fastapi(launch: Launch) -> Running:
    port = free_port()
    name = launch.model.name
    log = launch.workdir / f"fastapi-{name}-{launch.workers}.log"
    command = [
        *(str(venvs.python("fastapi")), "-m", "uvicorn", "fastapi_app:app"),
        *("--app-dir", str(APPS), "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(launch.workers), "--no-access-log"),
    ]
    env = {"BENCH_MODEL": str(launch.model.path)}
    process = _launch(launch, "fastapi", command, log, env, launch.workdir)
    url = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
    running = Running("fastapi", process, [Endpoint("FastAPI V1", url, V1)])
    wait_ready(running, launch.model, log)
    return running


def _app_env(launch: Launch) -> dict[str, str]:
    """What apps/asgi_app.py needs: this checkout's modelyard package and the model on S3."""
    return {
        **launch.s3_env,
        "PYTHONPATH": str(ROOT / "operator"),
        "MODELYARD_MODEL_URI": launch.model_uri,
    }


def uvicorn_app(launch: Launch) -> Running:
    """Our App and model as a raw ASGI app under `uvicorn --workers` (uvloop, httptools)."""
    port = free_port()
    name = launch.model.name
    log = launch.workdir / f"uvicorn-app-{name}-{launch.workers}.log"
    command = [
        *(str(venvs.python("asgi")), "-m", "uvicorn", "asgi_app:app"),
        *("--app-dir", str(APPS), "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(launch.workers), "--no-access-log"),
    ]
    process = _launch(launch, "uvicorn-app", command, log, _app_env(launch), launch.workdir)
    url = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
    running = Running("uvicorn-app", process, [Endpoint("App on uvicorn V1", url, V1)])
    wait_ready(running, launch.model, log)
    return running


def granian_app(launch: Launch) -> Running:
    """Our App and model under `granian --interface asgi --workers` (its defaults otherwise)."""
    port = free_port()
    name = launch.model.name
    log = launch.workdir / f"granian-app-{name}-{launch.workers}.log"
    command = [
        str(venvs.python("asgi").parent / "granian"),
        *("--interface", "asgi", "--working-dir", str(APPS)),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(launch.workers)),
        *("--no-ws", "--no-access-log", "asgi_app:app"),
    ]
    process = _launch(launch, "granian-app", command, log, _app_env(launch), launch.workdir)
    url = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
    running = Running("granian-app", process, [Endpoint("App on granian V1", url, V1)])
    wait_ready(running, launch.model, log)
    return running


SERVERS: list[Callable[[Launch], Running]] = [
    modelyard,
    modelyard_unbatched,
    mlserver,
    kserve,
    fastapi,
    uvicorn_app,
    granian_app,
    ceiling,
]
