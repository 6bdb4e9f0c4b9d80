"""Monitoring a ModelDeployment and retraining on drift, on a real API server with the operator,
real model server processes and a real S3 server.

The tier has no kubelet: the test makes the main track's pods itself, as the ReplicaSet
controller would (owned by the Deployment's ReplicaSet, from its template), bound to a node
that does not exist, and reports them ready with pod IP 127.0.0.1; their `monitor-*` ports are
the monitoring ports of two real `modelyard-worker serve --workers 2` processes on loopback (two
replicas x two workers), and a third pod's port answers garbage. Like the pods' servers, those
processes require the ModelDeployment's monitoring token (monitoring.token), so the operator's
figures prove it bears it. The ReplicaSet controller removes its own pending pods in favour of
these ready ones.

Training and ingestion are played by a stand-in kubelet: run-1 publishes the very model the
servers load (same digest); later runs publish models below the promotion gate, so the model
that drifted keeps serving and drift persists, which is what exercises the cooldown.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from sklearn.datasets import load_iris

from modelyard.api import GROUP, VERSION
from modelyard.controllers.retrain import RETRAIN_ANNOTATION
from modelyard.monitoring import token
from tests.chaos.objects import Objects
from tests.kubelet import (
    ingest_summary,
    model_digest_of,
    pods,
    terminate,
    train_summary,
    version_of,
    wait_for,
)
from tests.plugins.kube import Cluster
from tests.plugins.operator import Operator
from tests.plugins.s3 import S3Server
from tests.serving import Bucket, Served, bucket_on, start
from tests.unit.test_serve_protocol import Trained, iris, mixed

pytestmark = pytest.mark.integration

NAME, TJ, DATASET = "pm", "iris-tj", "sensors"
TEST_NODE = "monitoring-test-node"
COOLDOWN = "45s"  # longer than a retrain and two gatherings take here
INTERVAL = "5s"
MIN_ROWS = 200


class Kubelet:
    """Ends every ingest pod with the Dataset's one version and every training pod with a
    model: run-1's is the model the servers load (accuracy above the gate), later runs' miss
    the promotion gate."""

    def __init__(self, api: client.ApiClient, namespace: str, first_digest: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.first_digest = first_digest
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pass(self) -> None:
        for pod in pods(self.core, self.namespace, "app.kubernetes.io/managed-by=modelyard"):
            labels = pod.metadata.labels or {}
            if pod.status.phase in ("Succeeded", "Failed") or pod.metadata.deletion_timestamp:
                continue
            if "modelyard.dev/run" in labels:
                run = labels["modelyard.dev/run"]
                env = {var.name: var.value for var in pod.spec.containers[0].env or []}
                first = run == "run-1"
                digest = self.first_digest if first else model_digest_of(TJ, run)
                summary = train_summary(
                    run, env["MODELYARD_DATASET_VERSION"], digest, 0.97 if first else 0.9
                )
            elif "modelyard.dev/dataset" in labels:
                summary = ingest_summary(version_of(DATASET))
            else:
                continue
            terminate(self.core, pod, summary)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self._pass()
            except ApiException:
                continue  # a pod gone meanwhile: the next pass sees the rest

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class Garbage(BaseHTTPRequestHandler):
    """A monitoring port that answers 200 with what is not a report (a failure no real server
    produces on purpose)."""

    def do_POST(self) -> None:
        body = json.dumps({"model": 7, "drift": "lots"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def garbage() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def model() -> Trained:
    return iris()


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[Bucket]:
    with bucket_on(s3_server) as bucket:
        yield bucket


Launch = Callable[[Trained, int, int, str], list[Served]]


@pytest.fixture
def launch(bucket: Bucket, tmp_path: Path) -> Iterator[Launch]:
    """Starts `count` servers of a model, `workers` processes each, requiring `monitor_token`
    on their monitoring ports as a pod's servers do."""
    started: list[Served] = []

    def launch_(model: Trained, count: int, workers: int, monitor_token: str) -> list[Served]:
        uri = bucket.publish(model)
        servers = [
            start(bucket.env, uri, tmp_path, "--workers", str(workers), monitor_token=monitor_token)
            for _ in range(count)
        ]
        started.extend(servers)
        for served in servers:
            assert served.process.poll() is None, served.log()
        return servers

    yield launch_
    for served in started:
        served.stop()


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api(Objects):
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(api, namespace)
        self.apps = client.AppsV1Api(api)
        self.api_client = api
        self.made: list[str] = []

    def serve_from(self, ports: list[list[int]]) -> None:
        """Ready pods of the main track's ReplicaSet, one per list of monitoring ports."""
        replica_set = wait_for(
            "the main track's ReplicaSet",
            lambda: next(
                iter(
                    self.apps.list_namespaced_replica_set(
                        self.namespace, label_selector=f"modelyard.dev/modeldeployment={NAME}"
                    ).items
                ),
                None,
            ),
        )
        template = self.api_client.sanitize_for_serialization(replica_set.spec.template)
        # The pods are bound to this node; were it missing, the pod garbage collector would
        # delete them as orphans (at once, once the control plane has seen it missing before).
        try:
            self.core.create_node({"metadata": {"name": TEST_NODE}})
        except ApiException as error:
            if error.status != 409:
                raise
        for index, monitor_ports in enumerate(ports):
            pod = pod_for(replica_set, template, index, monitor_ports)
            self.core.create_namespaced_pod(self.namespace, pod)
            self.made.append(pod["metadata"]["name"])
            report_ready(self.core, self.namespace, pod["metadata"]["name"])

    def remove_pods(self) -> None:
        """Pods bound to a node without a kubelet go only when forced; then the node goes (the
        tier's control plane is shared, and it has no nodes otherwise)."""
        for name in self.made:
            try:
                self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
            except ApiException as error:
                if error.status != 404:
                    raise
        if self.made:
            try:
                self.core.delete_node(TEST_NODE)
            except ApiException as error:
                if error.status != 404:
                    raise

    def monitoring_token(self) -> str:
        """What the ModelDeployment's servers require on their monitoring ports."""
        return token.for_deployment((self.get("ModelDeployment", NAME) or {})["metadata"]["uid"])

    def monitoring(self) -> dict[str, Any]:
        return dict(self.status("ModelDeployment", NAME).get("monitoring") or {})

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return (self.get(kind, name) or {}).get("status") or {}

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any]:
        conditions = self.status(kind, name).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def events(self, name: str, reason: str) -> list[str]:
        return [
            event.message
            for event in self.core.list_namespaced_event(self.namespace).items
            if event.involved_object.name == name and event.reason == reason
        ]

    def runs(self) -> list[dict[str, Any]]:
        return list(self.status("TrainingJob", TJ).get("runs") or [])


def pod_for(
    replica_set: client.V1ReplicaSet, template: dict[str, Any], index: int, ports: list[int]
) -> dict[str, Any]:
    """A pod of `replica_set` as its controller makes them, with these monitoring ports."""
    spec = json.loads(json.dumps(template["spec"]))
    (container,) = spec["containers"]
    container["ports"] = [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        *(
            {"name": f"monitor-{i}", "containerPort": port, "protocol": "TCP"}
            for i, port in enumerate(ports)
        ),
    ]
    spec["nodeName"] = TEST_NODE  # ranked above the controller's unbound pods
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{replica_set.metadata.name}-served-{index}",
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"].get("annotations") or {},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": replica_set.metadata.name,
                    "uid": replica_set.metadata.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def report_ready(core: client.CoreV1Api, namespace: str, name: str) -> None:
    status = {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "conditions": [
            {"type": kind, "status": "True", "lastTransitionTime": stamp()}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
        "containerStatuses": [
            {
                "name": "server",
                "image": "modelyard-server",
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": stamp()}},
            }
        ],
    }
    core.patch_namespaced_pod_status(name, namespace, {"status": status})


def drifted_rows(count: int) -> list[list[float]]:
    x, _ = load_iris(return_X_y=True)
    shifted = x.copy()
    shifted[:, 2] += 3.0  # petal length far beyond what training saw
    return [shifted[i % len(shifted)].tolist() for i in range(count)]


def predict(served: Served, rows: list[list[float]], request_id: str | None = None) -> None:
    headers = {"Connection": "close", **({"X-Request-Id": request_id} if request_id else {})}
    answer = requests.post(
        f"{served.url}/v1/models/iris:predict",
        json={"instances": rows},
        headers=headers,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def create_chain(api: Api, replicas: int, monitoring: dict[str, Any], **training: Any) -> None:
    """The Dataset, the TrainingJob and a ModelDeployment of its latest run behind a gate."""
    api.create(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Dataset",
            "metadata": {"name": DATASET},
            "spec": {"source": {"builtin": {"name": "iris"}}, "target": "target"},
        }
    )
    api.create(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": TJ},
            "spec": {
                "datasetRef": {"name": DATASET},
                "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
                **training,
            },
        }
    )
    api.create(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME},
            "spec": {
                "model": {"trainingJobRef": {"name": TJ}},
                "replicas": replicas,
                "promotion": {"metric": "accuracy", "minimum": 0.95},
                "monitoring": {"interval": INTERVAL, **monitoring},
            },
        }
    )


@pytest.fixture
def api(crds: Cluster, namespace: str) -> Iterator[Api]:
    handle = Api(crds.api_client(), namespace)
    yield handle
    handle.remove_pods()


def test_drift_across_replicas_and_workers_retrains_once_per_cooldown(
    operator: Operator,
    api: Api,
    crds: Cluster,
    namespace: str,
    launch: Launch,
    model: Trained,
    garbage: int,
    record_property: Callable[[str, object], None],
) -> None:
    with Kubelet(crds.api_client(), namespace, model.card.digest):
        create_chain(
            api,
            3,
            {"drift": {"threshold": 0.25, "minRows": MIN_ROWS}},
            retrainOn=["Drift"],
            retrainCooldown=COOLDOWN,
        )
        served = wait_for(
            "the ModelDeployment to serve run-1",
            lambda: api.status("ModelDeployment", NAME).get("model"),
        )
        assert (served["run"], served["digest"]) == ("run-1", model.card.digest)
        replicas = launch(model, 2, 2, api.monitoring_token())
        # Two replicas of two processes each, and a third pod whose port answers garbage.
        api.serve_from(
            [[r.monitor_port + i for i in range(r.workers)] for r in replicas] + [[garbage]]
        )
        # Monitoring asks pods as soon as they are Ready; the ModelDeployment reads Ready once
        # the ReplicaSet and Deployment controllers have counted them, which may come later.
        wait_for(
            "the ModelDeployment Ready",
            lambda: api.condition("ModelDeployment", NAME, "Ready").get("status") == "True",
            timeout=60,
        )

        # Both replicas see drifted traffic, spread over their workers by the kernel.
        started = time.monotonic()
        for served_by in replicas:
            for _ in range(4):
                predict(served_by, drifted_rows(50))

        def drifted_with_every_row() -> dict[str, Any] | None:
            status = api.status("ModelDeployment", NAME)
            conditions = {c["type"]: c for c in status.get("conditions") or []}
            rows = ((status.get("monitoring") or {}).get("drift") or {}).get("rows")
            drifted = conditions.get("Drifted", {}).get("status") == "True"
            return status if drifted and rows == 400 else None

        status = wait_for("Drifted=True over every row", drifted_with_every_row, timeout=90)
        detected = time.monotonic() - started
        monitoring = status["monitoring"]
        # Four processes answered (two replicas x two workers); the garbage port did not count.
        assert (monitoring["servers"], monitoring["unreachable"]) == (4, 1)
        assert monitoring["modelDigest"] == model.card.digest
        top = monitoring["drift"]["features"][0]
        assert top["name"] == "petal_length" and top["psi"] > 0.25
        drifted = next(c for c in status["conditions"] if c["type"] == "Drifted")
        assert drifted["reason"] == "DriftDetected"
        assert drifted["message"].startswith(f"petal_length PSI {top['psi']:.2f} > 0.25")
        # kopf posts events from a queue of its own: one may land after the status it goes with.
        (event,) = wait_for("the DriftDetected event", lambda: api.events(NAME, "DriftDetected"))
        assert event.startswith("petal_length PSI")
        # Drift is a finding about the traffic, not a failure of the deployment: still Ready.
        assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"
        # The figure docs/monitoring.md quotes (in the JUnit report: --junitxml).
        record_property("drift_detected_seconds", round(detected, 1))

        # The drift retrains: the Dataset is refreshed first, then run-2 trains on it.
        last = wait_for(
            "an automatic retrain",
            lambda: api.status("TrainingJob", TJ).get("lastAutomaticRetrain"),
        )
        assert last["trigger"] == "Drift" and last["modelDeployment"] == NAME
        assert last["cause"].startswith(f"Drift in ModelDeployment {NAME}: petal_length PSI")
        annotations = (api.get("Dataset", DATASET) or {})["metadata"]["annotations"]
        assert annotations[RETRAIN_ANNOTATION] == last["refresh"]
        run = wait_for(
            "run-2 to finish",
            lambda: next(
                (r for r in api.runs() if r["id"] == "run-2" and r["phase"] == "Succeeded"),
                None,
            ),
        )
        # The Dataset's content did not change and DatasetChange is not in retrainOn: the run
        # started because of the drift, on the version the refresh left.
        assert run["cause"] == last["cause"]
        assert run["datasetVersion"] == version_of(DATASET)
        assert api.status("TrainingJob", TJ)["lastAutomaticRetrain"]["run"] == "run-2"

        def triggered(name: str) -> list[str]:
            return [m for m in api.events(name, "RetrainTriggered") if last["cause"] in m]

        wait_for("the TrainingJob's RetrainTriggered event", lambda: triggered(TJ))
        wait_for("the ModelDeployment's RetrainTriggered event", lambda: triggered(NAME))
        # run-2 misses the promotion gate: the model that serves stays run-1.
        wait_for(
            "PromotionBlocked",
            lambda: (
                api.condition("ModelDeployment", NAME, "Promoted").get("reason")
                == "PromotionBlocked"
            ),
        )
        assert api.status("ModelDeployment", NAME)["model"]["run"] == "run-1"

        # Drift persists; within the cooldown nothing starts, and however many gatherings see
        # the drift, one RetrainDeferred says so.
        wait_for(
            "RetrainDeferred or another run",
            lambda: api.events(TJ, "RetrainDeferred") or len(api.runs()) > 2,
            timeout=60,
        )
        seen = api.monitoring()["observedAt"]
        wait_for("a later gathering", lambda: api.monitoring()["observedAt"] > seen, timeout=30)
        assert [r["id"] for r in api.runs()] == ["run-1", "run-2"]
        assert len(api.events(TJ, "RetrainDeferred")) == 1
        # After the cooldown, the drift that persists retrains a second time.
        run3 = wait_for(
            "run-3 after the cooldown",
            lambda: next((r for r in api.runs() if r["id"] == "run-3"), None),
            timeout=240,
        )
        second = api.status("TrainingJob", TJ)["lastAutomaticRetrain"]
        assert run3["cause"] == second["cause"]
        assert second["requestedAt"] > last["requestedAt"]
        assert len(api.events(TJ, "RetrainDeferred")) == 1
        assert [r["id"] for r in api.runs()] == ["run-1", "run-2", "run-3"]


def test_feedback_on_another_replica_is_relayed_and_counted_once(
    operator: Operator,
    api: Api,
    crds: Cluster,
    namespace: str,
    launch: Launch,
    model: Trained,
) -> None:
    with Kubelet(crds.api_client(), namespace, model.card.digest):
        # As many replicas as the pods made below: with fewer, the ReplicaSet controller deletes
        # the excess, and which of these it takes is up to its ranking.
        create_chain(api, 4, {"quality": {"metric": "accuracy", "minimum": 0.9, "minLabels": 3}})
        wait_for("run-1 served", lambda: api.status("ModelDeployment", NAME).get("model"))
    replicas = launch(model, 2, 2, api.monitoring_token())
    # A server of another model, as a pod of an older rollout would be.
    (other_model,) = launch(mixed(), 1, 1, api.monitoring_token())
    # A server of the same model that requires another deployment's token: not ours to ask.
    (stranger,) = launch(model, 1, 1, token.for_deployment("another-deployment"))
    api.serve_from(
        [[r.monitor_port + i for i in range(r.workers)] for r in [*replicas, other_model, stranger]]
    )
    # The process of another model answers, but only the served model's four count; the one
    # that refuses the operator's token counts as unreachable.
    wait_for(
        "four processes gathered",
        lambda: (api.monitoring().get("servers"), api.monitoring().get("unreachable")) == (4, 1),
        timeout=60,
    )

    x, y = load_iris(return_X_y=True)
    rows, truth = x[:3].tolist(), [int(label) for label in y[:3]]
    predict(replicas[0], rows, request_id="order-17")
    # The ground truth reaches the other replica, which never saw the request.
    answer = requests.post(
        f"{replicas[1].url}/v1/models/iris:feedback",
        json={"id": "order-17", "truth": truth},
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["matched"] is False
    quality = wait_for(
        "the relayed feedback counted",
        lambda: (lambda q: q if q.get("labels") else None)(api.monitoring().get("quality") or {}),
        timeout=60,
    )
    assert quality == {"metric": "accuracy", "value": 1.0, "labels": 3}
    degraded = api.condition("ModelDeployment", NAME, "QualityDegraded")
    assert (degraded["status"], degraded["reason"]) == ("False", "QualityMet")
    # Later gatherings still count it once.
    seen = api.monitoring()["observedAt"]
    wait_for("a later gathering", lambda: api.monitoring()["observedAt"] > seen, timeout=30)
    assert api.monitoring()["quality"]["labels"] == 3
