"""The operator against a real API server with the real Job, ReplicaSet and Deployment
controllers; the tests play only the kubelet's part (pods finishing or becoming ready)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from modelyard.api import GROUP, VERSION
from modelyard.controllers.bookkeeping import FINALIZER
from modelyard.controllers.modeldeployment import ROUTER_TICK_SECONDS
from tests.chaos.objects import Objects
from tests.conftest import EXAMPLES, PLURALS
from tests.kubelet import (
    card_digest_of,
    evicted,
    finish_job,
    ingest_summary,
    make_ready,
    oom_killed,
    pods,
    report_ended,
    running,
    scheduled,
    train_summary,
    unschedulable,
    wait_for,
    wait_with,
)
from tests.plugins.kube import Cluster
from tests.plugins.operator import TEST_ENV, Operator

pytestmark = pytest.mark.integration

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64
MODEL_1 = "sha256:" + "a" * 64
MODEL_2 = "sha256:" + "b" * 64


def _quickstart(kind: str) -> dict[str, Any]:
    file = {
        "Dataset": "dataset",
        "TrainingJob": "trainingjob",
        "ModelDeployment": "modeldeployment",
    }
    document: dict[str, Any] = yaml.safe_load(
        (EXAMPLES / "quickstart" / f"{file[kind]}.yaml").read_text()
    )
    return document


class Api(Objects):
    """The few calls these tests make, against the test's namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.client = cluster.api_client()
        super().__init__(self.client, namespace)
        self.apps = client.AppsV1Api(self.client)

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[kind], name, body
        )

    def delete(self, kind: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[kind], name
        )

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return (self.get(kind, name) or {}).get("status") or {}

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any] | None:
        return next(
            (c for c in self.status(kind, name).get("conditions") or [] if c["type"] == type_), None
        )

    def wait_condition(
        self,
        kind: str,
        name: str,
        type_: str,
        value: str,
        reason: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            found = self.condition(kind, name, type_)
            if found and found["status"] == value and (reason is None or found["reason"] == reason):
                return found
            return None

        return wait_for(f"{kind}/{name} {type_}={value} {reason or ''}", probe, timeout)

    def jobs(self, selector: str) -> list[client.V1Job]:
        return list(self.batch.list_namespaced_job(self.namespace, label_selector=selector).items)

    def job_names(self, selector: str) -> set[str]:
        return {job.metadata.name for job in self.jobs(selector)}

    def wait_job(self, selector: str, besides: Collection[str] = ()) -> client.V1Job:
        """A Job matching `selector` other than those named in `besides` (creation times have
        whole seconds: two Jobs made in one second cannot be told apart by them)."""
        return wait_for(
            f"a Job {selector} besides {sorted(besides)}",
            lambda: next((j for j in self.jobs(selector) if j.metadata.name not in besides), None),
        )

    def events(self, name: str) -> list[str]:
        items = self.core.list_namespaced_event(self.namespace).items
        return [e.reason for e in items if e.involved_object.name == name]


@pytest.fixture
def api(crds: Cluster, namespace: str) -> Iterator[Api]:
    handle = Api(crds, namespace)
    yield handle
    handle.client.close()


def _ready_dataset(api: Api, version: str = V1) -> None:
    api.create(_quickstart("Dataset"))
    job = api.wait_job("modelyard.dev/dataset=iris")
    finish_job(api.core, api.namespace, job.metadata.name, ingest_summary(version))
    api.wait_condition("Dataset", "iris", "Ready", "True")


def _trained(api: Api, run: str, version: str, digest: str, accuracy: float) -> None:
    job = api.wait_job(f"modelyard.dev/run={run}")
    finish_job(
        api.core, api.namespace, job.metadata.name, train_summary(run, version, digest, accuracy)
    )
    wait_for(
        f"{run} recorded",
        lambda: next(
            (
                r
                for r in api.status("TrainingJob", "iris-classifier").get("runs", [])
                if r["id"] == run and r["phase"] == "Succeeded"
            ),
            None,
        ),
    )


def test_dataset_ingests_into_a_version(api: Api, operator: Operator) -> None:
    api.create(_quickstart("Dataset"))
    job = api.wait_job("modelyard.dev/dataset=iris")
    assert job.metadata.owner_references[0].kind == "Dataset"
    pod_security = job.spec.template.spec.security_context
    assert pod_security.run_as_non_root and pod_security.seccomp_profile.type == "RuntimeDefault"
    # In progress, not failing: Ready=Unknown and Reconciling=True (kstatus), never Ready=False.
    api.wait_condition("Dataset", "iris", "Ready", "Unknown", "Ingesting")
    api.wait_condition("Dataset", "iris", "Reconciling", "True", "Ingesting")
    assert api.status("Dataset", "iris")["phase"] == "Ingesting"
    assert api.condition("Dataset", "iris", "Stalled") is None

    finish_job(api.core, api.namespace, job.metadata.name, ingest_summary(V1))
    api.wait_condition("Dataset", "iris", "Ready", "True", "Ingested")
    assert api.condition("Dataset", "iris", "Reconciling") is None
    status = api.status("Dataset", "iris")
    assert (status["phase"], status["version"], status["rows"], status["columns"]) == (
        "Ready",
        V1,
        150,
        5,
    )
    assert status["statistics"][0]["name"] == "sepal length (cm)"
    assert [h["version"] for h in status["history"]] == [V1]
    assert status["observedGeneration"] == 1
    assert "NewVersion" in wait_for(
        "a NewVersion event",
        lambda: api.events("iris") if "NewVersion" in api.events("iris") else None,
    )


def test_failed_ingestion_reports_the_workloads_reason(api: Api, operator: Operator) -> None:
    api.create(_quickstart("Dataset"))
    job = api.wait_job("modelyard.dev/dataset=iris")
    failure = {
        "status": "Failed",
        "reason": "ValidationFailed",
        "message": "spec.schema: column 'age': must be ≥ 0 (1 row: 3)",
    }
    finish_job(api.core, api.namespace, job.metadata.name, failure, exit_code=4)
    ready = api.wait_condition("Dataset", "iris", "Ready", "False", "ValidationFailed")
    assert "column 'age'" in ready["message"]
    api.wait_condition("Dataset", "iris", "Stalled", "True", "ValidationFailed")
    assert api.status("Dataset", "iris")["phase"] == "Failed"
    job = api.batch.read_namespaced_job(job.metadata.name, api.namespace)
    assert job.status.failed == 1, "a deterministic failure is not retried"


def test_a_trainingjob_is_done_again_once_its_failed_dataset_recovers(
    api: Api, operator: Operator
) -> None:
    """A refresh of its Dataset fails, then a later one ingests the same data again: no new run,
    and the TrainingJob's status is its last run's again, not the stall the failure wrote."""
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    api.wait_condition("TrainingJob", "iris-classifier", "Ready", "True", "Succeeded")
    ingested = api.job_names("modelyard.dev/dataset=iris")
    api.patch("Dataset", "iris", {"metadata": {"annotations": {"modelyard.dev/refresh": "1"}}})
    job = api.wait_job("modelyard.dev/dataset=iris", besides=ingested)
    failure = {"status": "Failed", "reason": "SourceUnreachable", "message": "connection refused"}
    finish_job(api.core, api.namespace, job.metadata.name, failure, exit_code=4)
    api.wait_condition("TrainingJob", "iris-classifier", "Stalled", "True", "DatasetNotReady")
    ingested = api.job_names("modelyard.dev/dataset=iris")
    api.patch("Dataset", "iris", {"metadata": {"annotations": {"modelyard.dev/refresh": "2"}}})
    job = api.wait_job("modelyard.dev/dataset=iris", besides=ingested)
    finish_job(api.core, api.namespace, job.metadata.name, ingest_summary(V1))
    api.wait_condition("Dataset", "iris", "Ready", "True")
    ready = api.wait_condition("TrainingJob", "iris-classifier", "Ready", "True", "Succeeded")
    assert ready["message"].startswith("run-1: "), ready
    assert api.condition("TrainingJob", "iris-classifier", "Stalled") is None
    assert api.condition("TrainingJob", "iris-classifier", "Reconciling") is None
    assert [run["id"] for run in api.status("TrainingJob", "iris-classifier")["runs"]] == ["run-1"]


def test_refresh_reingests_and_keeps_an_unchanged_version(api: Api, operator: Operator) -> None:
    _ready_dataset(api)
    first = api.job_names("modelyard.dev/dataset=iris")
    api.patch("Dataset", "iris", {"metadata": {"annotations": {"modelyard.dev/refresh": "1"}}})
    job = api.wait_job("modelyard.dev/dataset=iris", besides=first)
    finish_job(api.core, api.namespace, job.metadata.name, {**ingest_summary(V1), "reused": True})
    wait_for(
        "the refresh recorded",
        lambda: (
            api.status("Dataset", "iris").get("phase") == "Ready"
            and api.status("Dataset", "iris").get("ingestJob") == job.metadata.name
        ),
    )
    status = api.status("Dataset", "iris")
    assert status["version"] == V1 and len(status["history"]) == 1


def test_trainingjob_waits_for_its_dataset_then_trains(api: Api, operator: Operator) -> None:
    api.create(_quickstart("TrainingJob"))
    waiting = api.wait_condition(
        "TrainingJob", "iris-classifier", "DatasetReady", "False", "DatasetNotFound"
    )
    assert "iris" in waiting["message"]
    # Waiting for a dependency is progress.
    api.wait_condition("TrainingJob", "iris-classifier", "Ready", "Unknown", "DatasetNotFound")
    assert not api.jobs("modelyard.dev/trainingjob=iris-classifier")
    _ready_dataset(api)
    job = api.wait_job("modelyard.dev/run=run-1")
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["MODELYARD_DATASET_VERSION"] == V1
    assert job.spec.backoff_limit == 2
    finish_job(
        api.core, api.namespace, job.metadata.name, train_summary("run-1", V1, MODEL_1, 0.95)
    )
    api.wait_condition("TrainingJob", "iris-classifier", "Ready", "True", "Succeeded")
    status = api.status("TrainingJob", "iris-classifier")
    assert status["phase"] == "Succeeded"
    uid = api.get("TrainingJob", "iris-classifier")["metadata"]["uid"]
    assert status["model"] == {
        "uri": f"s3://modelyard/namespaces/{api.namespace}/models/iris-classifier/{uid}/run-1/"
        "model.joblib",
        "digest": MODEL_1,
        "cardDigest": card_digest_of(MODEL_1),
        "endpoint": TEST_ENV["MODELYARD_S3_ENDPOINT"],
    }
    assert status["datasetVersion"] == V1 and status["latestRun"] == "run-1"
    assert status["primaryMetric"] == {"name": "accuracy", "value": 0.95}
    assert status["runs"][0]["metrics"]["accuracy"] == 0.95


def test_new_dataset_version_starts_a_new_run(api: Api, operator: Operator) -> None:
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    first = api.job_names("modelyard.dev/dataset=iris")
    api.patch(
        "Dataset", "iris", {"metadata": {"annotations": {"modelyard.dev/refresh": "new-data"}}}
    )
    job = api.wait_job("modelyard.dev/dataset=iris", besides=first)
    finish_job(api.core, api.namespace, job.metadata.name, ingest_summary(V2, rows=160))
    run = api.wait_job("modelyard.dev/run=run-2")
    env = {e.name: e.value for e in run.spec.template.spec.containers[0].env}
    assert env["MODELYARD_DATASET_VERSION"] == V2
    assert [h["version"] for h in api.status("Dataset", "iris")["history"]] == [V2, V1]


def test_missed_objective_marks_the_run_and_keeps_the_last_model(
    api: Api, operator: Operator
) -> None:
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    api.patch(
        "TrainingJob", "iris-classifier", {"spec": {"estimator": {"params": {"max_depth": 1}}}}
    )
    _missed_objective(api, "run-2", MODEL_2)
    api.wait_condition("TrainingJob", "iris-classifier", "Ready", "False", "ObjectiveNotMet")
    status = api.status("TrainingJob", "iris-classifier")
    assert (
        status["runs"][1]["phase"] == "Failed" and status["runs"][1]["reason"] == "ObjectiveNotMet"
    )
    assert status["model"]["digest"] == MODEL_1, "the failed run's model is not promoted"
    assert status["phase"] == "Failed"


def _missed_objective(api: Api, run: str, digest: str) -> None:
    """The run trains and publishes a model whose accuracy, 0.6, misses the objective."""
    job = api.wait_job(f"modelyard.dev/run={run}")
    summary = {
        **train_summary(run, V1, digest, 0.6),
        "status": "Failed",
        "reason": "ObjectiveNotMet",
        "message": "accuracy = 0.6 misses the objective 0.85",
    }
    finish_job(api.core, api.namespace, job.metadata.name, summary, exit_code=3)


def _serving(api: Api, replicas: int) -> None:
    wait_for(
        "the server Deployment", lambda: api.apps.list_namespaced_deployment(api.namespace).items
    )
    make_ready(api.core, api.namespace, "modelyard.dev/modeldeployment=iris", replicas)


def test_modeldeployment_serves_the_trained_model_with_lineage(
    api: Api, operator: Operator
) -> None:
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    api.create(_quickstart("ModelDeployment"))
    api.wait_condition("ModelDeployment", "iris", "Ready", "Unknown", "ModelNotReady")
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    deployment = wait_for(
        "Deployment iris",
        lambda: next(
            iter(
                api.apps.list_namespaced_deployment(
                    api.namespace, label_selector="modelyard.dev/track=main"
                ).items
            ),
            None,
        ),
    )
    assert deployment.spec.replicas == 2
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["MODELYARD_MODEL_DIGEST"] == MODEL_1
    # Applied right after the Deployment, in the same reconcile:
    service = wait_for(
        "Service iris",
        lambda: next(iter(api.core.list_namespaced_service(api.namespace).items), None),
    )
    assert service.metadata.name == "iris"
    assert service.spec.ports[0].port == 80
    # A PDB for more than one replica (applied after the Deployment and Service):
    pdb = wait_for(
        "PodDisruptionBudget iris",
        lambda: next(
            iter(
                client.PolicyV1Api(api.client)
                .list_namespaced_pod_disruption_budget(api.namespace)
                .items
            ),
            None,
        ),
    )
    assert pdb.spec.max_unavailable == 1
    _serving(api, 2)
    api.wait_condition("ModelDeployment", "iris", "Ready", "True", "Serving")
    status = api.status("ModelDeployment", "iris")
    assert status["url"] == f"http://iris.{api.namespace}.svc.cluster.local"
    uid = api.get("TrainingJob", "iris-classifier")["metadata"]["uid"]
    assert status["model"] == {
        "uri": f"s3://modelyard/namespaces/{api.namespace}/models/iris-classifier/{uid}/run-1/"
        "model.joblib",
        "digest": MODEL_1,
        "cardDigest": card_digest_of(MODEL_1),
        "endpoint": TEST_ENV["MODELYARD_S3_ENDPOINT"],
        "trainingJob": "iris-classifier",
        "run": "run-1",
        "dataset": "iris",
        "datasetVersion": V1,
    }
    assert (status["replicas"], status["readyReplicas"], status["phase"]) == (2, 2, "Ready")


def test_promotion_gate_keeps_a_weaker_model_out(api: Api, operator: Operator) -> None:
    _ready_dataset(api)
    training_job = _quickstart("TrainingJob")
    del training_job["spec"]["objective"]
    api.create(training_job)
    api.create(_quickstart("ModelDeployment"))
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    _serving(api, 2)
    api.patch(
        "TrainingJob", "iris-classifier", {"spec": {"estimator": {"params": {"max_depth": 1}}}}
    )
    _trained(api, "run-2", V1, MODEL_2, 0.70)
    blocked = api.wait_condition("ModelDeployment", "iris", "Promoted", "False", "PromotionBlocked")
    assert "run-2" in blocked["message"] and "still serving run-1" in blocked["message"]
    assert api.status("ModelDeployment", "iris")["model"]["digest"] == MODEL_1
    deployment = api.apps.read_namespaced_deployment("iris", api.namespace)
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["MODELYARD_MODEL_DIGEST"] == MODEL_1


def test_better_run_rolls_out_and_earlier_model_goes_to_history(
    api: Api, operator: Operator
) -> None:
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    api.create(_quickstart("ModelDeployment"))
    _trained(api, "run-1", V1, MODEL_1, 0.90)
    _serving(api, 2)
    api.patch(
        "TrainingJob", "iris-classifier", {"spec": {"estimator": {"params": {"max_depth": 8}}}}
    )
    _trained(api, "run-2", V1, MODEL_2, 0.97)
    wait_for(
        "the new model",
        lambda: api.status("ModelDeployment", "iris").get("model", {}).get("digest") == MODEL_2,
    )
    status = api.status("ModelDeployment", "iris")
    assert status["history"][0]["model"]["run"] == "run-1"
    deployment = api.apps.read_namespaced_deployment("iris", api.namespace)
    assert deployment.spec.template.metadata.annotations["modelyard.dev/model-digest"] == MODEL_2
    # Rollback: pin the earlier run.
    api.patch(
        "ModelDeployment",
        "iris",
        {"spec": {"model": {"trainingJobRef": {"name": "iris-classifier", "run": "run-1"}}}},
    )
    wait_for(
        "the rollback",
        lambda: api.status("ModelDeployment", "iris").get("model", {}).get("run") == "run-1",
    )


def _candidate(api: Api, percent: int) -> dict[str, Any]:
    """spec.canary: a candidate model at `percent` of the traffic."""
    return {
        "model": {
            "uri": f"s3://modelyard/namespaces/{api.namespace}/candidates/model.joblib",
            "digest": MODEL_2,
            "cardDigest": MODEL_2,
        },
        "trafficPercent": percent,
    }


def _trained_with_a_canary(api: Api, percent: int) -> None:
    """The quickstart, its ModelDeployment with a canary, and the first run trained."""
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    deployment = _quickstart("ModelDeployment")
    deployment["spec"]["canary"] = _candidate(api, percent)
    api.create(deployment)
    _trained(api, "run-1", V1, MODEL_1, 0.95)


def test_canary_takes_its_share_through_a_weighted_router(api: Api, operator: Operator) -> None:
    _trained_with_a_canary(api, 10)
    canary = wait_for(
        "the canary Deployment",
        lambda: next(
            iter(
                api.apps.list_namespaced_deployment(
                    api.namespace, label_selector="modelyard.dev/track=canary"
                ).items
            ),
            None,
        ),
    )
    main = api.apps.read_namespaced_deployment("iris", api.namespace)
    assert (main.spec.replicas, canary.spec.replicas) == (1, 1)
    config = wait_for(
        "the router's configuration",
        lambda: next(
            iter(
                api.core.list_namespaced_config_map(
                    api.namespace, label_selector="modelyard.dev/modeldeployment=iris"
                ).items
            ),
            None,
        ),
    )
    assert "weight=90" in config.data["nginx.conf"] and "weight=10" in config.data["nginx.conf"]
    # Until the router is ready, the model's URL stays on the main track.
    service = wait_for(
        "Service iris",
        lambda: next(
            iter(
                api.core.list_namespaced_service(
                    api.namespace, field_selector="metadata.name=iris"
                ).items
            ),
            None,
        ),
    )
    assert service.spec.selector["modelyard.dev/track"] == "main"
    _serving(api, 2)
    make_ready(api.core, api.namespace, "modelyard.dev/track=router", 1)
    wait_for(
        "the URL on the router",
        lambda: (
            api.core.read_namespaced_service("iris", api.namespace).spec.selector[
                "modelyard.dev/track"
            ]
            == "router"
        ),
    )
    stable = api.core.read_namespaced_service("iris-stable", api.namespace)
    assert stable.spec.selector["modelyard.dev/track"] == "main"
    wait_for(
        "canary status",
        lambda: api.status("ModelDeployment", "iris").get("canary", {}).get("trafficPercent") == 10,
    )
    assert api.status("ModelDeployment", "iris")["canary"]["model"]["digest"] == MODEL_2
    api.patch("ModelDeployment", "iris", {"spec": {"canary": None}})
    wait_for(
        "the canary and its router removed",
        lambda: (
            not api.apps.list_namespaced_deployment(
                api.namespace, label_selector="modelyard.dev/track in (canary,router)"
            ).items
            and api.core.read_namespaced_service("iris", api.namespace).spec.selector[
                "modelyard.dev/track"
            ]
            == "main"
        ),
    )


def test_referenced_trainingjob_and_dataset_are_protected(api: Api, operator: Operator) -> None:
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    api.create(_quickstart("ModelDeployment"))
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    api.delete("TrainingJob", "iris-classifier")
    api.delete("Dataset", "iris")
    blocked = api.wait_condition(
        "TrainingJob", "iris-classifier", "DeletionBlocked", "True", "InUse"
    )
    assert "ModelDeployment iris" in blocked["message"]
    api.wait_condition("Dataset", "iris", "DeletionBlocked", "True", "InUse")
    api.delete("ModelDeployment", "iris")
    wait_for(
        "the TrainingJob gone",
        lambda: api.get("TrainingJob", "iris-classifier") is None,
        timeout=60,
    )
    wait_for("the Dataset gone", lambda: api.get("Dataset", "iris") is None, timeout=60)


def _finalized(api: Api, kind: str, name: str) -> bool:
    return FINALIZER in ((api.get(kind, name) or {}).get("metadata", {}).get("finalizers") or [])


def test_what_a_new_modeldeployment_uses_is_protected_at_once(api: Api, operator: Operator) -> None:
    """Only what a ModelDeployment uses carries the finalizer. A TrainingJob trained already and
    its Dataset get no event of their own when a ModelDeployment starts to use them: its
    reconcile puts the finalizer on them."""
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    assert not _finalized(api, "TrainingJob", "iris-classifier")
    assert not _finalized(api, "Dataset", "iris")
    api.create(_quickstart("ModelDeployment"))
    wait_for("the finalizers", lambda: all(_finalized(api, *o) for o in _USED))
    api.delete("TrainingJob", "iris-classifier")
    api.delete("Dataset", "iris")
    api.wait_condition("TrainingJob", "iris-classifier", "DeletionBlocked", "True", "InUse")
    api.wait_condition("Dataset", "iris", "DeletionBlocked", "True", "InUse")
    api.delete("ModelDeployment", "iris")
    wait_for("both gone", lambda: not any(api.get(*o) for o in _USED), timeout=60)


_USED = (("TrainingJob", "iris-classifier"), ("Dataset", "iris"))


def test_restart_mid_way_creates_no_duplicate_children(api: Api, operator: Operator) -> None:
    api.create(_quickstart("Dataset"))
    api.wait_job("modelyard.dev/dataset=iris")
    operator.stop()
    operator.start()
    api.create(_quickstart("TrainingJob"))
    wait_for(
        "the TrainingJob seen",
        lambda: api.condition("TrainingJob", "iris-classifier", "DatasetReady"),
    )
    assert len(api.jobs("modelyard.dev/dataset=iris")) == 1
    job = api.jobs("modelyard.dev/dataset=iris")[0]
    finish_job(api.core, api.namespace, job.metadata.name, ingest_summary(V1))
    api.wait_job("modelyard.dev/run=run-1")
    operator.stop()
    operator.start()
    api.wait_condition("Dataset", "iris", "Ready", "True")
    assert len(api.jobs("modelyard.dev/dataset=iris")) == 1
    assert len(api.jobs("modelyard.dev/trainingjob=iris-classifier")) == 1


def test_children_are_garbage_collected_with_their_owner(api: Api, operator: Operator) -> None:
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    api.create(_quickstart("ModelDeployment"))
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    wait_for(
        "the server Deployment", lambda: api.apps.list_namespaced_deployment(api.namespace).items
    )
    api.delete("ModelDeployment", "iris")
    wait_for(
        "Deployment and Service collected",
        lambda: (
            not api.apps.list_namespaced_deployment(api.namespace).items
            and not api.core.list_namespaced_service(api.namespace).items
        ),
        timeout=90,
    )


def _pod(api: Api, selector: str) -> client.V1Pod:
    return wait_for(
        f"a pod matching {selector}",
        lambda: next(
            iter(api.core.list_namespaced_pod(api.namespace, label_selector=selector).items), None
        ),
    )


def _first_server_pod(api: Api) -> client.V1Pod:
    """A server pod of the quickstart's ModelDeployment, rolling out its first trained run."""
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    api.create(_quickstart("ModelDeployment"))
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    return _pod(api, "modelyard.dev/modeldeployment=iris")


def test_an_ingest_pod_that_cannot_start_stalls_its_dataset_with_the_kubelets_words(
    api: Api, operator: Operator
) -> None:
    api.create(_quickstart("Dataset"))
    pod = _pod(api, "modelyard.dev/dataset=iris")
    missing = 'secret "modelyard-s3" not found'
    wait_with(api.core, pod, "CreateContainerConfigError", missing)
    stalled = api.wait_condition("Dataset", "iris", "Stalled", "True", "CreateContainerConfigError")
    assert missing in stalled["message"] and pod.metadata.name in stalled["message"]
    api.wait_condition("Dataset", "iris", "Ready", "False", "CreateContainerConfigError")
    assert api.status("Dataset", "iris")["phase"] == "Ingesting"
    # The Secret arrives, the pod starts: in progress again, not failed.
    running(api.core, pod)
    api.wait_condition("Dataset", "iris", "Ready", "Unknown", "Ingesting")
    assert api.condition("Dataset", "iris", "Stalled") is None
    finish_job(
        api.core, api.namespace, api.status("Dataset", "iris")["ingestJob"], ingest_summary(V1)
    )
    api.wait_condition("Dataset", "iris", "Ready", "True", "Ingested")


def test_a_training_pod_no_node_takes_waits_then_stalls_its_trainingjob(
    api: Api, operator: Operator
) -> None:
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    pod = _pod(api, "modelyard.dev/run=run-1")
    verdict = "0/3 nodes are available: 3 Insufficient memory."
    unschedulable(api.core, pod, verdict)
    # At once: in progress, in the scheduler's words (room may free up), not a failure yet.
    waiting = api.wait_condition(
        "TrainingJob", "iris-classifier", "Reconciling", "True", "WaitingForNode"
    )
    assert verdict in waiting["message"] and waiting["message"].startswith("run-1: ")
    ready = api.condition("TrainingJob", "iris-classifier", "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("Unknown", "WaitingForNode")
    assert api.condition("TrainingJob", "iris-classifier", "Stalled") is None
    # Nothing about the pod changes when no node took it in time: the operator's own tick says so.
    stalled = api.wait_condition(
        "TrainingJob", "iris-classifier", "Stalled", "True", "Unschedulable"
    )
    assert verdict in stalled["message"] and stalled["message"].startswith("run-1: ")
    api.wait_condition("TrainingJob", "iris-classifier", "Ready", "False", "Unschedulable")
    assert api.condition("TrainingJob", "iris-classifier", "Reconciling") is None
    # kopf posts events from a queue of its own: the Warning may land after the status.
    wait_for("the Unschedulable Warning", lambda: "Unschedulable" in api.events("iris-classifier"))


def test_an_ingest_pod_a_node_takes_in_time_never_stalls_its_dataset(
    api: Api, operator: Operator
) -> None:
    api.create(_quickstart("Dataset"))
    pod = _pod(api, "modelyard.dev/dataset=iris")
    verdict = "0/1 nodes are available: 1 Insufficient cpu."
    unschedulable(api.core, pod, verdict)
    waiting = api.wait_condition("Dataset", "iris", "Ready", "Unknown", "WaitingForNode")
    assert verdict in waiting["message"]
    # Room freed (another pod ended): the scheduler binds the pod, whose containers are created.
    # No event of the pod's says so to the operator, which looks again while it waits.
    scheduled(api.core, pod)
    api.wait_condition("Dataset", "iris", "Reconciling", "True", "Ingesting")
    finish_job(
        api.core, api.namespace, api.status("Dataset", "iris")["ingestJob"], ingest_summary(V1)
    )
    api.wait_condition("Dataset", "iris", "Ready", "True", "Ingested")
    events = api.events("iris")
    assert "Unschedulable" not in events and "WaitingForNode" not in events, events


def test_a_server_pod_waiting_for_a_node_keeps_the_rollout_in_progress(
    api: Api, operator: Operator
) -> None:
    pod = _first_server_pod(api)
    verdict = "0/1 nodes are available: 1 Insufficient cpu."
    unschedulable(api.core, pod, verdict)
    waiting = api.wait_condition("ModelDeployment", "iris", "Reconciling", "True", "WaitingForNode")
    assert verdict in waiting["message"]
    assert api.condition("ModelDeployment", "iris", "Stalled") is None
    _serving(api, 2)
    api.wait_condition("ModelDeployment", "iris", "Ready", "True", "Serving")
    assert api.condition("ModelDeployment", "iris", "Stalled") is None
    assert "Unschedulable" not in api.events("iris")


def test_a_server_pod_whose_image_cannot_be_pulled_stalls_the_rollout(
    api: Api, operator: Operator
) -> None:
    pod = _first_server_pod(api)
    pull = 'Back-off pulling image "modelyard/server:0.1.0"'
    wait_with(api.core, pod, "ImagePullBackOff", pull)
    stalled = api.wait_condition("ModelDeployment", "iris", "Stalled", "True", "ImagePullBackOff")
    assert pull in stalled["message"]
    api.wait_condition("ModelDeployment", "iris", "Ready", "False", "ImagePullBackOff")
    _serving(api, 2)
    api.wait_condition("ModelDeployment", "iris", "Ready", "True", "Serving")
    assert api.condition("ModelDeployment", "iris", "Stalled") is None


def _quickstart_served(api: Api) -> None:
    """The quickstart trained, and its ModelDeployment's two replicas serving."""
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    api.create(_quickstart("ModelDeployment"))
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    _serving(api, 2)
    api.wait_condition("ModelDeployment", "iris", "Ready", "True", "Serving")


def test_a_modeldeployment_scaled_to_zero_is_done_and_says_nothing_serves(
    api: Api, operator: Operator
) -> None:
    _quickstart_served(api)
    api.patch("ModelDeployment", "iris", {"spec": {"replicas": 0}})
    zero = api.wait_condition("ModelDeployment", "iris", "Ready", "True", "ScaledToZero")
    assert "no replica serves" in zero["message"], zero
    assert api.condition("ModelDeployment", "iris", "Reconciling") is None
    status = api.status("ModelDeployment", "iris")
    assert (status["phase"], status["replicas"], status["readyReplicas"]) == ("Ready", 0, 0)
    assert "ScaledToZero" in api.events("iris")
    # Raised again: in progress until the new pods are ready, then serving. Nothing serves
    # meanwhile, so Ready no longer says True.
    api.patch("ModelDeployment", "iris", {"spec": {"replicas": 2}})
    api.wait_condition("ModelDeployment", "iris", "Reconciling", "True", "RollingOut")
    api.wait_condition("ModelDeployment", "iris", "Ready", "Unknown", "RollingOut")
    _serving(api, 2)
    api.wait_condition("ModelDeployment", "iris", "Ready", "True", "Serving")


def test_all_traffic_moves_onto_a_canary_once_it_is_ready_and_back_once_main_is(
    api: Api, operator: Operator
) -> None:
    """trafficPercent 100 and back: the model's Service leaves a track only for one whose pods
    are ready, and a track goes only once the Service is off it, so neither step is an outage."""
    _quickstart_served(api)

    def front() -> str:
        service = api.core.read_namespaced_service("iris", api.namespace)
        return str(service.spec.selector["modelyard.dev/track"])

    def replicas(name: str) -> int | None:
        found = api.apps.list_namespaced_deployment(
            api.namespace, field_selector=f"metadata.name={name}"
        ).items
        return found[0].spec.replicas if found else None

    api.patch("ModelDeployment", "iris", {"spec": {"canary": _candidate(api, 100)}})
    wait_for("the canary Deployment", lambda: replicas("iris-canary") == 2)
    # Until the canary's pods are ready, the main track keeps its replicas and the traffic.
    assert front() == "main" and replicas("iris") == 2
    make_ready(api.core, api.namespace, "modelyard.dev/track=canary", 2)
    wait_for("the Service on the canary", lambda: front() == "canary")
    wait_for("the main track scaled to zero", lambda: replicas("iris") == 0)
    # Its old pods gone, so the pods made ready below are the new ones.
    wait_for(
        "the main track's pods gone",
        lambda: not pods(api.core, api.namespace, "modelyard.dev/track=main"),
    )
    wait_for(
        "all traffic on the canary in status",
        lambda: (
            api.status("ModelDeployment", "iris").get("canary", {}).get("trafficPercent") == 100
        ),
    )
    # Back: the canary keeps serving until the main track's new pods are ready.
    api.patch("ModelDeployment", "iris", {"spec": {"canary": None}})
    wait_for("the main track scaled up", lambda: replicas("iris") == 2)
    assert front() == "canary" and replicas("iris-canary") == 2
    make_ready(api.core, api.namespace, "modelyard.dev/track=main", 2)
    wait_for("the Service back on the main track", lambda: front() == "main")
    wait_for("the canary gone", lambda: replicas("iris-canary") is None)
    api.wait_condition("ModelDeployment", "iris", "Ready", "True", "Serving")


def test_a_modeldeployment_stalls_when_its_trainingjob_fails_and_waits_again_for_a_new_run(
    api: Api, operator: Operator
) -> None:
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    api.create(_quickstart("ModelDeployment"))
    api.wait_condition("ModelDeployment", "iris", "Reconciling", "True", "ModelNotReady")
    _missed_objective(api, "run-1", MODEL_1)
    # Nothing will come without a change: stalled, in the run's words.
    stalled = api.wait_condition("ModelDeployment", "iris", "Stalled", "True", "RunNotSucceeded")
    assert "run-1 failed (ObjectiveNotMet: accuracy = 0.6" in stalled["message"], stalled
    assert api.status("ModelDeployment", "iris")["phase"] == "Failed"
    # The TrainingJob is changed: its new run is progress for the ModelDeployment again.
    api.patch(
        "TrainingJob", "iris-classifier", {"spec": {"estimator": {"params": {"max_depth": 3}}}}
    )
    api.wait_condition("ModelDeployment", "iris", "Reconciling", "True", "ModelNotReady")
    assert api.condition("ModelDeployment", "iris", "Stalled") is None
    _trained(api, "run-2", V1, MODEL_2, 0.95)
    _serving(api, 2)
    api.wait_condition("ModelDeployment", "iris", "Ready", "True", "Serving")


def test_a_router_that_cannot_reach_ready_tracks_stalls_the_rollout_naming_them(
    api: Api, operator: Operator
) -> None:
    """The router's pods never pass their start-up probe (a NetworkPolicy in the way). While the
    canary still loads, that is progress, even past the router's own progress deadline; once both
    tracks are ready and the router still is not, the rollout stalls naming the router and the
    two track Services."""
    _trained_with_a_canary(api, 10)

    def router_past_deadline() -> bool:
        routers = api.apps.list_namespaced_deployment(
            api.namespace, label_selector="modelyard.dev/track=router"
        ).items
        return any(
            c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"
            for router in routers
            for c in (router.status.conditions or [])
        )

    make_ready(api.core, api.namespace, "modelyard.dev/track=main", 1)
    wait_for("the router's progress deadline", router_past_deadline, timeout=120)
    # The operator looks at a routed rollout every few seconds: give it two looks.
    time.sleep(2 * ROUTER_TICK_SECONDS)
    assert api.condition("ModelDeployment", "iris", "Stalled") is None
    api.wait_condition("ModelDeployment", "iris", "Reconciling", "True", "RollingOut")
    make_ready(api.core, api.namespace, "modelyard.dev/track=canary", 1)
    stalled = api.wait_condition(
        "ModelDeployment", "iris", "Stalled", "True", "ReadinessNeverReached", timeout=120
    )
    message = stalled["message"]
    assert message.startswith("Deployment iris-router: "), message
    assert "iris-stable" in message and "iris-canary" in message, message
    assert api.status("ModelDeployment", "iris")["phase"] == "Progressing"
    wait_for("the Warning", lambda: "ReadinessNeverReached" in api.events("iris"))
    # The router gets through (the policy was fixed): the rollout finishes.
    make_ready(api.core, api.namespace, "modelyard.dev/track=router", 1)
    api.wait_condition("ModelDeployment", "iris", "Ready", "True", "Serving")
    assert api.condition("ModelDeployment", "iris", "Stalled") is None


def _failed_run(api: Api, end: Callable[[client.V1Pod], None]) -> dict[str, Any]:
    """The quickstart's run with no retries, its pod ended by `end` (the kubelet's report)."""
    _ready_dataset(api)
    training = _quickstart("TrainingJob")
    training["spec"]["backoffLimit"] = 0
    api.create(training)
    end(_pod(api, "modelyard.dev/run=run-1"))
    return _run_failed(api)


def _run_failed(api: Api) -> dict[str, Any]:
    return wait_for(
        "run-1 failed",
        lambda: next(
            (
                run
                for run in api.status("TrainingJob", "iris-classifier").get("runs", [])
                if run["phase"] == "Failed"
            ),
            None,
        ),
    )


def test_a_run_that_crashed_before_it_reported_fails_in_its_last_log_lines(
    api: Api, operator: Operator
) -> None:
    """A workload that dies before it writes its report (an import error, a segfault) leaves
    only its log, which the kubelet keeps as its termination message (FallbackToLogsOnError).
    Before, the run said only 'training Job … failed'."""
    log = "Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module named 'xgb'"
    run = _failed_run(api, lambda pod: report_ended(api.core, pod, 1, log))
    assert run["reason"] == "BackoffLimitExceeded", run
    assert "container train exited with code 1: " in run["message"], run
    assert run["message"].endswith("ModuleNotFoundError: No module named 'xgb'"), run


def test_a_run_whose_pod_was_evicted_fails_in_the_kubelets_words(
    api: Api, operator: Operator
) -> None:
    pressure = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 80Mi."
    run = _failed_run(api, lambda pod: evicted(api.core, pod, pressure))
    assert run["reason"] == "Evicted", run
    assert run["message"].endswith(f": {pressure}"), run
    assert run["message"].startswith("pod "), run


def test_a_run_whose_pod_was_killed_for_memory_is_retried_in_progress_then_fails(
    api: Api, operator: Operator
) -> None:
    """restartPolicy Never: a pod killed for memory is over, but its Job starts another while it
    has retries. Before, each kill read Stalled (Argo CD: Degraded) and each retry Progressing."""
    _ready_dataset(api)
    training = _quickstart("TrainingJob")
    training["spec"]["backoffLimit"] = 1
    api.create(training)
    first = _pod(api, "modelyard.dev/run=run-1")
    oom_killed(api.core, first)
    retrying = api.wait_condition(
        "TrainingJob", "iris-classifier", "Reconciling", "True", "OOMKilled"
    )
    assert first.metadata.name in retrying["message"], retrying
    assert api.condition("TrainingJob", "iris-classifier", "Stalled") is None
    # The kill is history the next condition overwrites: a Warning Event keeps it.
    killed = wait_for(
        "the OOMKilled Warning",
        lambda: [
            event
            for event in api.core.list_namespaced_event(api.namespace).items
            if event.involved_object.name == "iris-classifier" and event.reason == "OOMKilled"
        ],
    )
    assert killed[0].type == "Warning" and first.metadata.name in killed[0].message, killed
    # The retry runs: training again; then it is killed too, and the run fails for memory.
    second = wait_for(
        "the retry's pod",
        lambda: next(
            (
                pod
                for pod in pods(api.core, api.namespace, "modelyard.dev/run=run-1")
                if pod.metadata.name != first.metadata.name
            ),
            None,
        ),
    )
    running(api.core, second)
    api.wait_condition("TrainingJob", "iris-classifier", "Reconciling", "True", "Training")
    oom_killed(api.core, second)
    run = _run_failed(api)
    assert run["reason"] == "OOMKilled" and second.metadata.name in run["message"], run
    assert api.condition("TrainingJob", "iris-classifier", "Reconciling") is None


def _no_more_pods(api: Api) -> None:
    """A ResourceQuota that admits no pod, once its controller has counted what the namespace
    holds (before that, the API server refuses with 'status unknown for quota')."""
    quota = {"metadata": {"name": "no-more-pods"}, "spec": {"hard": {"pods": "0"}}}
    api.core.create_namespaced_resource_quota(api.namespace, quota)
    wait_for(
        "the quota counted",
        lambda: api.core.read_namespaced_resource_quota("no-more-pods", api.namespace).status.used,
    )


def test_a_training_pod_a_quota_refuses_stalls_the_run_in_the_api_servers_words(
    api: Api, operator: Operator
) -> None:
    """The Job controller cannot create a run's pod: the Job itself says nothing of it (no
    condition, no pod), so before, the TrainingJob read 'Training' for as long as the quota
    stayed used up. Now it stalls within seconds with the quota's own words; the run is not
    failed, and it trains once the quota has room."""
    _ready_dataset(api)
    _no_more_pods(api)
    api.create(_quickstart("TrainingJob"))
    stalled = api.wait_condition(
        "TrainingJob", "iris-classifier", "Stalled", "True", "FailedCreate"
    )
    message = stalled["message"]
    job = api.wait_job("modelyard.dev/run=run-1")
    assert message.startswith(f"run-1: Job {job.metadata.name}: "), message
    assert "exceeded quota: no-more-pods" in message, message
    api.wait_condition("TrainingJob", "iris-classifier", "Ready", "False", "FailedCreate")
    runs = api.status("TrainingJob", "iris-classifier")["runs"]
    assert [run["phase"] for run in runs] == ["Running"], runs
    wait_for("the FailedCreate Warning", lambda: "FailedCreate" in api.events("iris-classifier"))
    # Room again: the Job controller creates the pod on its next try, and the run trains.
    api.core.delete_namespaced_resource_quota("no-more-pods", api.namespace)
    pod = wait_for(
        "the run's pod",
        lambda: next(iter(pods(api.core, api.namespace, "modelyard.dev/run=run-1")), None),
        timeout=180,
    )
    running(api.core, pod)
    api.wait_condition("TrainingJob", "iris-classifier", "Reconciling", "True", "Training")
    assert api.condition("TrainingJob", "iris-classifier", "Stalled") is None
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    api.wait_condition("TrainingJob", "iris-classifier", "Ready", "True")


def test_an_ingest_pod_a_quota_refuses_stalls_the_ingestion_not_fails_it(
    api: Api, operator: Operator
) -> None:
    _no_more_pods(api)
    api.create(_quickstart("Dataset"))
    stalled = api.wait_condition("Dataset", "iris", "Stalled", "True", "FailedCreate")
    job = api.wait_job("modelyard.dev/dataset=iris")
    assert stalled["message"].startswith(f"Job {job.metadata.name}: "), stalled
    assert "exceeded quota: no-more-pods" in stalled["message"], stalled
    api.wait_condition("Dataset", "iris", "Ready", "False", "FailedCreate")
    assert api.status("Dataset", "iris")["phase"] == "Ingesting"
    wait_for("the FailedCreate Warning", lambda: "FailedCreate" in api.events("iris"))


def test_a_scale_up_waiting_for_a_node_while_replicas_serve_is_progress_not_a_stall(
    api: Api, operator: Operator
) -> None:
    """An HPA (or a user) asks for one more replica and the cluster has no room until its
    autoscaler adds a node, minutes later. The model serves meanwhile: the new pod waits as long
    as its Deployment would (progressDeadlineSeconds), not the 20 s of a first rollout."""
    _quickstart_served(api)
    before = {p.metadata.name for p in pods(api.core, api.namespace, "modelyard.dev/track=main")}
    api.patch("ModelDeployment", "iris", {"spec": {"replicas": 3}})
    extra = wait_for(
        "the third replica's pod",
        lambda: next(
            (
                pod
                for pod in pods(api.core, api.namespace, "modelyard.dev/track=main")
                if pod.metadata.name not in before
            ),
            None,
        ),
    )
    verdict = "0/3 nodes are available: 3 Insufficient cpu."
    unschedulable(api.core, extra, verdict, waited=60)
    waiting = api.wait_condition("ModelDeployment", "iris", "Reconciling", "True", "WaitingForNode")
    assert verdict in waiting["message"] and extra.metadata.name in waiting["message"], waiting
    ready = api.condition("ModelDeployment", "iris", "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Serving"), ready
    assert api.condition("ModelDeployment", "iris", "Stalled") is None
    # A node came: the third replica serves too.
    make_ready(api.core, api.namespace, "modelyard.dev/track=main", 3)
    wait_for(
        "3 replicas serving",
        lambda: (
            (api.condition("ModelDeployment", "iris", "Ready") or {})
            .get("message", "")
            .startswith("3 replicas serve")
        ),
    )
    assert api.condition("ModelDeployment", "iris", "Reconciling") is None


def test_server_pods_a_quota_refuses_stall_the_rollout_in_the_api_servers_words(
    api: Api, operator: Operator
) -> None:
    """A tenant's ResourceQuota is used up: no server pod is ever created, and the
    ModelDeployment says so at once, not as a readiness never reached ten minutes later."""
    _ready_dataset(api)
    api.create(_quickstart("TrainingJob"))
    _trained(api, "run-1", V1, MODEL_1, 0.95)
    _no_more_pods(api)
    api.create(_quickstart("ModelDeployment"))
    stalled = api.wait_condition("ModelDeployment", "iris", "Stalled", "True", "FailedCreate")
    message = stalled["message"]
    assert message.startswith("Deployment iris: "), message
    assert "exceeded quota: no-more-pods" in message, message
    api.wait_condition("ModelDeployment", "iris", "Ready", "False", "FailedCreate")
    wait_for("the FailedCreate Warning", lambda: "FailedCreate" in api.events("iris"))
    # Room again: the ReplicaSet controller creates the pods on its next try, and the rollout
    # is in progress, then done.
    api.core.delete_namespaced_resource_quota("no-more-pods", api.namespace)
    wait_for(
        "the server pods created",
        lambda: (
            len(
                api.core.list_namespaced_pod(
                    api.namespace, label_selector="modelyard.dev/modeldeployment=iris"
                ).items
            )
            >= 2
        ),
        timeout=180,
    )
    _serving(api, 2)
    api.wait_condition("ModelDeployment", "iris", "Ready", "True", "Serving", timeout=180)
    assert api.condition("ModelDeployment", "iris", "Stalled") is None


def test_run_history_is_bounded_but_keeps_the_runs_in_use(api: Api, operator: Operator) -> None:
    _ready_dataset(api)
    training_job = _quickstart("TrainingJob")
    training_job["spec"]["runHistoryLimit"] = 2
    del training_job["spec"]["objective"]
    api.create(training_job)
    deployment = _quickstart("ModelDeployment")
    deployment["spec"]["model"]["trainingJobRef"]["run"] = "run-1"
    api.create(deployment)
    digests = {}
    for number in range(1, 6):
        run = f"run-{number}"
        digests[run] = "sha256:" + f"{number:x}" * 64
        if number > 1:
            params = {"spec": {"estimator": {"params": {"max_depth": number}}}}
            api.patch("TrainingJob", "iris-classifier", params)
        _trained(api, run, V1, digests[run], 0.9)
    ids = [run["id"] for run in api.status("TrainingJob", "iris-classifier")["runs"]]
    # The pinned run-1 stays, and the two newest: run ids are never reused.
    assert ids == ["run-1", "run-4", "run-5"], ids
    assert api.status("ModelDeployment", "iris")["model"]["digest"] == digests["run-1"]


def test_a_change_of_storage_settings_does_not_move_running_servers(
    api: Api, operator: Operator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator restarted with another S3 endpoint (an upgrade, a re-install with other
    values) keeps reading served models where they were written: no rollout onto a store that
    does not hold them. A model trained afterwards is read from the new store."""
    _quickstart_served(api)
    before = api.apps.read_namespaced_deployment("iris", api.namespace)
    operator.stop()
    monkeypatch.setenv("MODELYARD_S3_ENDPOINT", "http://127.0.0.1:10")
    operator.start()
    api.patch(
        "TrainingJob", "iris-classifier", {"spec": {"estimator": {"params": {"max_depth": 9}}}}
    )
    wait_for("run-2", lambda: api.jobs("modelyard.dev/run=run-2"))
    after = api.apps.read_namespaced_deployment("iris", api.namespace)
    assert after.metadata.generation == before.metadata.generation, "the servers were rolled"
    env = {e.name: e.value for e in after.spec.template.spec.containers[0].env}
    assert env["MODELYARD_S3_ENDPOINT"] == TEST_ENV["MODELYARD_S3_ENDPOINT"]
    _trained(api, "run-2", V1, MODEL_2, 0.97)
    wait_for(
        "run-2 served from the new store",
        lambda: (
            api.status("ModelDeployment", "iris").get("model", {}).get("endpoint")
            == "http://127.0.0.1:10"
        ),
    )
