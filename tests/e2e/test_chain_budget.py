"""Where the quickstart's time goes, from `kubectl apply` to the first prediction: a
measurement for `make bench` (tests/bench/chain), not part of the e2e tier (marker `bench`).

Milestones are taken as the API server reports them, watched from here with this process's
clock (the API's own timestamps have whole seconds); the first prediction is polled through
the API server's service proxy every 50 ms once the server Deployment exists.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from tests.conftest import EXAMPLES
from tests.e2e.chain import GROUP, VERSION, kubectl, wait_until
from tests.e2e.conftest import ServiceProxy
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.bench

# Where tests/bench/chain wants the milestones (seconds after the apply, by name): a JSON line
# per round, appended.
OUTPUT = "MODELYARD_CHAIN_BUDGET_OUTPUT"
# How many times the chain runs, each in a fresh namespace: the kubelet reports container starts
# and ends on its one-second relist, so one run's figure moves by a second from run to run.
ROUNDS = int(os.environ.get("MODELYARD_CHAIN_BUDGET_ROUNDS", "1"))
COMPONENT = "app.kubernetes.io/component"
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
# What a batch workload logs of its process as it exits (modelyard.workloads.__main__).
PROCESS_LINE = re.compile(
    r": process (?P<process>[\d.]+)s since exec: start-up (?P<start_up>[\d.]+)s, "
    r"imports (?P<imports>[\d.]+)s, work (?P<work>[\d.]+)s$",
    re.M,
)
# What the model server logs once its model is loaded (modelyard.workloads.serving.runtime).
READY_LINE = re.compile(r" ready in (?P<load>[\d.]+)s, (?P<ready>[\d.]+)s after exec ")


class Milestones:
    """The first time each named thing was seen, in seconds after `start`."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, name: str) -> None:
        with self._lock:
            self.seen.setdefault(name, round(time.monotonic() - self.start, 3))


def _watch(
    stop: threading.Event, listing: Callable[..., Any], on: Callable[[dict[str, Any]], None]
) -> None:
    while not stop.is_set():
        stream = watch.Watch()
        for event in stream.stream(listing, timeout_seconds=2, _request_timeout=5):
            on(event["object"] if isinstance(event["object"], dict) else _plain(event["object"]))
            if stop.is_set():
                stream.stop()


def _plain(thing: Any) -> dict[str, Any]:
    serialized: dict[str, Any] = client.ApiClient().sanitize_for_serialization(thing)
    return serialized


def _condition(document: dict[str, Any], kind: str) -> bool:
    conditions = (document.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _on_pod(milestones: Milestones) -> Callable[[dict[str, Any]], None]:
    def on(pod: dict[str, Any]) -> None:
        component = (pod["metadata"].get("labels") or {}).get(COMPONENT)
        if component is None:
            return
        milestones.mark(f"{component} pod created")
        status = pod.get("status") or {}
        if any(
            c.get("type") == "PodScheduled" and c["status"] == "True"
            for c in status.get("conditions") or []
        ):
            milestones.mark(f"{component} pod scheduled")
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            if "running" in state or "terminated" in state:
                milestones.mark(f"{component} container started")
            if "terminated" in state:
                milestones.mark(f"{component} container finished")
        if _condition(pod, "Ready"):
            milestones.mark(f"{component} pod ready")

    return on


def _on_owner(milestones: Milestones, kind: str) -> Callable[[dict[str, Any]], None]:
    def on(document: dict[str, Any]) -> None:
        milestones.mark(f"{kind} created")
        if _condition(document, "Ready"):
            milestones.mark(f"{kind} Ready")

    return on


def _on_child(milestones: Milestones, kind: str) -> Callable[[dict[str, Any]], None]:
    def on(document: dict[str, Any]) -> None:
        component = (document["metadata"].get("labels") or {}).get(COMPONENT)
        if component is not None:
            milestones.mark(f"{component} {kind} created")
            if _condition(document, "Complete"):
                milestones.mark(f"{component} {kind} complete")

    return on


def _watchers(
    cluster: Cluster, namespace: str, milestones: Milestones
) -> Iterator[tuple[Callable[..., Any], Callable[[dict[str, Any]], None]]]:
    api = cluster.api_client()
    core, batch, apps = client.CoreV1Api(api), client.BatchV1Api(api), client.AppsV1Api(api)
    custom = client.CustomObjectsApi(api)
    yield (lambda **kw: core.list_namespaced_pod(namespace, **kw)), _on_pod(milestones)
    yield (lambda **kw: batch.list_namespaced_job(namespace, **kw)), _on_child(milestones, "Job")
    yield (
        (lambda **kw: apps.list_namespaced_deployment(namespace, **kw)),
        _on_child(milestones, "Deployment"),
    )
    for plural, kind in (
        ("datasets", "Dataset"),
        ("trainingjobs", "TrainingJob"),
        ("modeldeployments", "ModelDeployment"),
    ):

        def listing(plural: str = plural, **kw: Any) -> Any:
            return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **kw)

        yield listing, _on_owner(milestones, kind)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_quickstart_time_budget(
    kube_node: Cluster, ml_namespace: str, proxy: ServiceProxy, round_: int
) -> None:
    milestones = Milestones()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_watch, args=(stop, listing, on), daemon=True)
        for listing, on in _watchers(kube_node, ml_namespace, milestones)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1)  # every watch open before the apply
    milestones.start = time.monotonic()
    kubectl(kube_node, "apply", "-n", ml_namespace, "-f", str(EXAMPLES / "quickstart"))
    milestones.mark("kubectl apply returned")
    wait_until("the server Deployment", lambda: "server Deployment created" in milestones.seen)

    def predicted() -> bool:
        try:
            answer = proxy.post(
                ml_namespace, "iris", "v1/models/iris:predict", {"instances": [IRIS_ROW]}
            )
        except OSError:
            return False
        return answer.status_code == 200 and answer.json()["predictions"] == [0]

    deadline = time.monotonic() + 600
    while not predicted():
        assert time.monotonic() < deadline, f"no prediction in 600 s: {milestones.seen}"
        time.sleep(0.05)
    milestones.mark("first prediction")
    wait_until("ModelDeployment Ready", lambda: "ModelDeployment Ready" in milestones.seen)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    ordered = dict(sorted(milestones.seen.items(), key=lambda item: item[1]))
    workloads = _workload_seconds(kube_node, ml_namespace)
    print(json.dumps({"milestones": ordered, "workloads": workloads}, indent=1))
    target = os.environ.get(OUTPUT)
    if target:
        with Path(target).open("a") as output:
            output.write(json.dumps({"milestones": ordered, "workloads": workloads}) + "\n")
    assert ordered["first prediction"] > 0
    assert set(workloads) == {"ingest", "train", "server"}, workloads


def _workload_seconds(cluster: Cluster, namespace: str) -> dict[str, dict[str, float]]:
    """What the workload processes logged of their own time: the ingest and training ones by
    phase, with their start-up, imports and time since exec (modelyard.workloads.common.timing);
    the server its time from exec to ready, and the model's load within it."""
    core = client.CoreV1Api(cluster.api_client())
    found: dict[str, dict[str, float]] = {}
    for component in ("ingest", "train"):
        pods = core.list_namespaced_pod(namespace, label_selector=f"{COMPONENT}={component}")
        for pod in pods.items:
            log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
            seconds = {
                phase: float(value)
                for phase, value in re.findall(rf"^{component}: (.+) took ([\d.]+)s$", log, re.M)
            }
            process = PROCESS_LINE.search(log)
            if process is not None:
                seconds.update({k: float(v) for k, v in process.groupdict().items()})
                found[component] = seconds
    # The server pod that was ready first (the one with the shortest time from exec).
    pods = core.list_namespaced_pod(namespace, label_selector=f"{COMPONENT}=server")
    for pod in pods.items:
        ready = READY_LINE.search(core.read_namespaced_pod_log(pod.metadata.name, namespace))
        if ready is not None:
            seconds = {k: float(v) for k, v in ready.groupdict().items()}
            if seconds["ready"] < found.get("server", {}).get("ready", float("inf")):
                found["server"] = seconds
    return found
