"""The whole chain on a real node, installed with Helm: quickstart to prediction, new data to a
zero-downtime rollout, canary, promotion gate and garbage collection."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from kubernetes import client

from modelyard.api.dataset import BuiltinName
from modelyard.resources.router import router_name
from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri
from modelyard.workloads.ingest.builtin import builtin_table
from tests.conftest import EXAMPLES
from tests.e2e.chain import GROUP, VERSION, kubectl, status, wait_ready, wait_until
from tests.e2e.conftest import ServiceProxy
from tests.plugins.kube import Cluster
from tests.plugins.s3 import S3Server

pytestmark = pytest.mark.e2e

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def _predict_v1(proxy: ServiceProxy, namespace: str, service: str, name: str) -> Any:
    response = proxy.post(
        namespace, service, f"v1/models/{name}:predict", {"instances": [IRIS_ROW]}
    )
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_quickstart_from_kubectl_apply_to_predictions(
    kube_node: Cluster, ml_namespace: str, proxy: ServiceProxy, custom: Any
) -> None:
    started = time.monotonic()
    kubectl(kube_node, "apply", "-n", ml_namespace, "-f", str(EXAMPLES / "quickstart"))
    wait_ready(kube_node, ml_namespace, "dataset/iris")
    wait_ready(kube_node, ml_namespace, "trainingjob/iris-classifier")
    wait_ready(kube_node, ml_namespace, "modeldeployment/iris")
    assert _predict_v1(proxy, ml_namespace, "iris", "iris") == [0]
    print(f"\nkubectl apply → first prediction: {time.monotonic() - started:.1f}s")

    v2 = proxy.post(
        ml_namespace,
        "iris",
        "v2/models/iris/infer",
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]},
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == [0]

    dataset = status(custom, ml_namespace, "datasets", "iris")
    training = status(custom, ml_namespace, "trainingjobs", "iris-classifier")
    served = status(custom, ml_namespace, "modeldeployments", "iris")
    assert served["model"]["datasetVersion"] == dataset["version"]
    assert served["model"]["run"] == training["latestRun"] == "run-1"
    assert served["model"]["digest"] == training["model"]["digest"]
    assert training["metrics"]["accuracy"] >= 0.85
    assert served["readyReplicas"] == 2


def _iris_csv(rows: slice) -> bytes:
    table = builtin_table(BuiltinName.IRIS)
    indices = pa.array(range(table.num_rows)[rows])
    sink = io.BytesIO()
    pa_csv.write_csv(table.take(indices), sink)
    return sink.getvalue()


def _create(custom: Any, namespace: str, document: dict[str, Any]) -> None:
    plural = {
        "Dataset": "datasets",
        "TrainingJob": "trainingjobs",
        "ModelDeployment": "modeldeployments",
    }
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural[document["kind"]], document
    )


def _object(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


class Load:
    """Predictions from `clients` threads, each sending one after another until stopped; every
    answer that is not 200 counts."""

    def __init__(
        self,
        proxy: ServiceProxy,
        namespace: str,
        service: str,
        clients: int = 1,
        pause: float = 0.05,
    ) -> None:
        self.proxy, self.namespace, self.service, self.pause = proxy, namespace, service, pause
        self.failed: list[str] = []
        self._sent = [0] * clients
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True)
            for index in range(clients)
        ]

    @property
    def sent(self) -> int:
        return sum(self._sent)

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            self._sent[index] += 1
            try:
                response = self.proxy.post(
                    self.namespace,
                    self.service,
                    f"v1/models/{self.service}:predict",
                    {"instances": [IRIS_ROW]},
                )
                if response.status_code != 200:
                    self.failed.append(f"{response.status_code} {response.text[:200]}")
            except Exception as error:  # a refused or reset connection is a failed request too
                self.failed.append(repr(error))
            time.sleep(self.pause)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def test_new_data_retrains_and_rolls_out_without_a_failed_request(
    kube_node: Cluster,
    ml_namespace: str,
    proxy: ServiceProxy,
    custom: Any,
    node_s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in node_s3.env().items():
        monkeypatch.setenv(key, value)  # boto3 takes credentials from the environment
    storage = Storage(StorageConfig.from_env())
    storage.ensure_bucket("modelyard")
    # Uploaded into the namespace's own prefix: the only place its Datasets may read by default.
    source = S3Uri("modelyard", f"namespaces/{ml_namespace}/uploads/flowers.csv")
    storage.put_bytes(source, _iris_csv(slice(0, 150, 2)))
    _create(
        custom,
        ml_namespace,
        _object(
            "Dataset",
            "flowers",
            {
                "source": {"s3": {"uri": str(source)}},
                "target": "target",
            },
        ),
    )
    _create(
        custom,
        ml_namespace,
        _object(
            "TrainingJob",
            "flowers",
            {
                "datasetRef": {"name": "flowers"},
                "estimator": {
                    "class": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 500},
                },
                "retrainOn": ["DatasetChange"],
            },
        ),
    )
    _create(
        custom,
        ml_namespace,
        _object(
            "ModelDeployment",
            "flowers",
            {
                "model": {"trainingJobRef": {"name": "flowers"}},
                "replicas": 2,
            },
        ),
    )
    wait_ready(kube_node, ml_namespace, "modeldeployment/flowers")
    first = status(custom, ml_namespace, "datasets", "flowers")["version"]

    with Load(proxy, ml_namespace, "flowers") as load:
        storage.put_bytes(source, _iris_csv(slice(0, 150)))
        _patch(
            custom,
            ml_namespace,
            "datasets",
            {"metadata": {"annotations": {"modelyard.dev/refresh": "new-data"}}},
        )
        rollout_started = time.monotonic()
        wait_until(
            "the run on the new data served",
            lambda: (
                status(custom, ml_namespace, "modeldeployments", "flowers")
                .get("model", {})
                .get("run")
                == "run-2"
                and status(custom, ml_namespace, "modeldeployments", "flowers").get("phase")
                == "Ready"
            ),
        )
        time.sleep(3)  # a few requests after the old pods are gone
    seconds = time.monotonic() - rollout_started
    print(f"\nrollout: {seconds:.1f}s, {load.sent} requests, {len(load.failed)} failed")
    assert load.sent > 20
    assert load.failed == []
    dataset = status(custom, ml_namespace, "datasets", "flowers")
    assert dataset["version"] != first
    assert [h["version"] for h in dataset["history"]] == [dataset["version"], first]
    served = status(custom, ml_namespace, "modeldeployments", "flowers")
    assert served["model"]["datasetVersion"] == dataset["version"]
    assert served["history"][0]["model"]["run"] == "run-1"

    # A canary at 10 % with three replicas: a split by replicas would give it a third.
    _patch(
        custom,
        ml_namespace,
        "modeldeployments",
        {
            "spec": {
                "replicas": 3,
                "canary": {
                    "model": {"trainingJobRef": {"name": "flowers", "run": "run-1"}},
                    "trafficPercent": 10,
                },
            }
        },
    )
    wait_until(
        "the canary taking its share through the router",
        lambda: (
            (status(custom, ml_namespace, "modeldeployments", "flowers").get("canary") or {}).get(
                "trafficPercent"
            )
            == 10
            and status(custom, ml_namespace, "modeldeployments", "flowers").get("phase") == "Ready"
        ),
    )
    served = status(custom, ml_namespace, "modeldeployments", "flowers")
    canary_version = served["canary"]["model"]["digest"].removeprefix("sha256:")[:12]
    counts, routed = _count_by_model(proxy, ml_namespace, "flowers", 1000)
    share = counts.get(canary_version, 0) / sum(counts.values())
    print(f"\ncanary share over {sum(counts.values())} requests: {share:.1%} ({counts})")
    assert abs(share - 0.10) <= 0.05, counts
    # The router's cost: the same requests straight to the main track's Service.
    _, direct = _count_by_model(proxy, ml_namespace, "flowers-stable", 300)
    print(
        f"latency through the API server proxy, median / p99: router {_ms(routed, 50)} / "
        f"{_ms(routed, 99)} ms, main track directly {_ms(direct, 50)} / {_ms(direct, 99)} ms"
    )

    # A new weight rolls the router's pods (its configuration is in their template): the old
    # ones must stop taking requests before they go, and finish those they have.
    with (
        Load(proxy, ml_namespace, "flowers", clients=4, pause=0) as load,
        kube_node.api_client() as api,
    ):
        apps = client.AppsV1Api(api)
        before = apps.read_namespaced_deployment(router_name("flowers"), ml_namespace)
        _patch(
            custom, ml_namespace, "modeldeployments", {"spec": {"canary": {"trafficPercent": 50}}}
        )
        core = client.CoreV1Api(api)
        wait_until(
            "the router rolled onto the new weight, its old pods gone",
            lambda: (
                _rolled(
                    apps.read_namespaced_deployment(router_name("flowers"), ml_namespace),
                    after=before.metadata.generation,
                )
                and not [
                    pod
                    for pod in core.list_namespaced_pod(ml_namespace).items
                    if pod.metadata.name.startswith(f"{router_name('flowers')}-")
                    and pod.metadata.deletion_timestamp
                ]
            ),
        )
        time.sleep(3)  # a few requests after the old router pods are gone
    print(f"\nrouter roll: {load.sent} requests, {len(load.failed)} failed")
    assert load.sent > 20
    assert load.failed == []

    # All traffic to the canary, then back to the main track: the Service changes tracks only
    # onto ready pods, and a track goes only once the Service is off it.
    with (
        Load(proxy, ml_namespace, "flowers", clients=4, pause=0) as load,
        kube_node.api_client() as api,
    ):
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)

        def front() -> str:
            service = core.read_namespaced_service("flowers", ml_namespace)
            return str(service.spec.selector["modelyard.dev/track"])

        def tracks() -> set[str]:
            deployments = apps.list_namespaced_deployment(ml_namespace).items
            return {
                d.metadata.labels["modelyard.dev/track"] for d in deployments if d.spec.replicas
            }

        _patch(
            custom, ml_namespace, "modeldeployments", {"spec": {"canary": {"trafficPercent": 100}}}
        )
        wait_until(
            "all traffic on the canary, the main track and the router gone",
            lambda: front() == "canary" and tracks() == {"canary"},
        )
        time.sleep(3)  # a few requests after the main track's pods are gone
        _patch(custom, ml_namespace, "modeldeployments", {"spec": {"canary": None}})
        wait_until(
            "all traffic back on the main track, the canary gone",
            lambda: front() == "main" and tracks() == {"main"},
        )
        time.sleep(3)
    print(f"\nto the canary and back: {load.sent} requests, {len(load.failed)} failed")
    assert load.sent > 20
    assert load.failed == []

    # Deleting the ModelDeployment removes everything it created.
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, ml_namespace, "modeldeployments", "flowers"
    )
    with kube_node.api_client() as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        wait_until(
            "the serving children collected",
            lambda: (
                not apps.list_namespaced_deployment(ml_namespace).items
                and not core.list_namespaced_service(ml_namespace).items
            ),
            timeout=120,
        )


def _rolled(deployment: client.V1Deployment, after: int) -> bool:
    """A newer generation of the Deployment, rolled out."""
    spec, status = deployment.spec, deployment.status
    return bool(
        deployment.metadata.generation > after
        and status.observed_generation == deployment.metadata.generation
        and status.updated_replicas == status.replicas == status.available_replicas == spec.replicas
    )


def _patch(custom: Any, namespace: str, plural: str, patch: dict[str, Any]) -> None:
    """Merge-patch the test's object of that kind (all are named "flowers")."""
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, "flowers", patch)


def _count_by_model(
    proxy: ServiceProxy, namespace: str, service: str, requests: int
) -> tuple[dict[str, int], list[float]]:
    """Responses by the model version that answered, and each request's seconds."""
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]}
    counts: dict[str, int] = {}
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        response = proxy.post(namespace, service, "v2/models/flowers/infer", body)
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        version = response.json()["model_version"]
        counts[version] = counts.get(version, 0) + 1
    return counts, seconds


def _ms(seconds: list[float], percentile: int) -> str:
    ordered = sorted(seconds)
    return f"{1000 * ordered[min(len(ordered) - 1, len(ordered) * percentile // 100)]:.1f}"


def test_a_model_failing_the_promotion_gate_stays_out(
    kube_node: Cluster, ml_namespace: str, custom: Any
) -> None:
    kubectl(
        kube_node, "apply", "-n", ml_namespace, "-f", str(EXAMPLES / "quickstart" / "dataset.yaml")
    )
    kubectl(
        kube_node,
        "apply",
        "-n",
        ml_namespace,
        "-f",
        str(EXAMPLES / "quickstart" / "trainingjob.yaml"),
    )
    _create(
        custom,
        ml_namespace,
        _object(
            "ModelDeployment",
            "strict",
            {
                "model": {"trainingJobRef": {"name": "iris-classifier"}},
                "promotion": {"metric": "accuracy", "minimum": 1.01},
            },
        ),
    )
    wait_ready(kube_node, ml_namespace, "trainingjob/iris-classifier")
    ready = wait_until(
        "the gate to hold",
        lambda: next(
            (
                c
                for c in status(custom, ml_namespace, "modeldeployments", "strict").get(
                    "conditions"
                )
                or []
                if c["type"] == "Ready" and c["reason"] == "PromotionBlocked"
            ),
            None,
        ),
    )
    assert "accuracy" in ready["message"]
    with kube_node.api_client() as api:
        assert not client.AppsV1Api(api).list_namespaced_deployment(ml_namespace).items
