"""Tenant A attacks tenant B, and its own namespace's results, through the operator: every attack
is refused with a stable reason, and nothing of B is read, overwritten or served.

The attacker holds only what a data scientist gets in namespace A (see conftest.py). Each test
names the attack in docs/security.md's threat model."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from modelyard.api import GROUP, VERSION
from modelyard.resources.jobs import training_job_name
from modelyard.storage import layout
from modelyard.storage.client import Storage
from modelyard.storage.digest import bytes_digest
from modelyard.storage.uri import S3Uri
from tests.adversarial.conftest import BUCKET
from tests.adversarial.tenancy import Tenant, model_deployment, refused, training_job
from tests.kubelet import terminate, wait_for
from tests.plugins.operator import OperatorProcess
from tests.process_kubelet import run_pod

pytestmark = pytest.mark.adversarial

FORGED_DIGEST = "sha256:" + "f" * 64
# How long "nothing happened" is watched for, once whatever would make it happen has happened.
QUIET_SECONDS = 5


def _quiet() -> None:
    """An observation window: the operator handles an event within a second or two."""
    time.sleep(QUIET_SECONDS)


def _dataset(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": {"builtin": {"name": "iris"}}, **spec},
    }


def _warnings(tenant: Tenant, name: str, reason: str) -> list[client.CoreV1Event]:
    return [e for e in tenant.events(name) if e.reason == reason and e.type == "Warning"]


# --- Images: spec.image runs only what the operator allows -------------------------------------


def test_a_trainingjob_image_of_the_tenants_choice_never_runs(attacker: Tenant) -> None:
    attacker.objects.create(_dataset("iris"))
    attacker.objects.create(training_job("iris", image="attacker.example/forger:1"))
    stalled = attacker.wait_condition("TrainingJob", "iris", "Stalled", "True", "ImageNotAllowed")
    assert "spec.image" in stalled["message"]
    attacker.wait_condition("TrainingJob", "iris", "Ready", "False", "ImageNotAllowed")
    wait_for("a Warning event", lambda: _warnings(attacker, "iris", "ImageNotAllowed"))
    assert not attacker.jobs("modelyard.dev/trainingjob=iris")


def test_a_model_server_image_of_the_tenants_choice_never_runs(attacker: Tenant) -> None:
    model = {"trainingJobRef": {"name": "iris"}}
    attacker.objects.create(model_deployment("iris", model, image="attacker.example/server:1"))
    attacker.wait_condition("ModelDeployment", "iris", "Stalled", "True", "ImageNotAllowed")
    wait_for("a Warning event", lambda: _warnings(attacker, "iris", "ImageNotAllowed"))
    assert not client.AppsV1Api(attacker.admin).list_namespaced_deployment(attacker.namespace).items


# --- Storage: a namespace reads and writes only its own prefix ---------------------------------


def test_a_dataset_cannot_ingest_another_namespaces_snapshot(
    attacker: Tenant, victim: Tenant, trained: dict[str, Any]
) -> None:
    snapshot = victim.status("Dataset", "iris")["uri"] + "/" + layout.DATA_FILE
    for name, uri in (
        ("stolen", snapshot),
        ("everything", f"s3://{BUCKET}/{layout.NAMESPACES}/{victim.namespace}/"),
    ):
        attacker.objects.create(_dataset(name, source={"s3": {"uri": uri}}, target="target"))
        stalled = attacker.wait_condition("Dataset", name, "Stalled", "True", "LocationNotAllowed")
        assert "spec.source.s3.uri" in stalled["message"]
        status = attacker.status("Dataset", name)
        assert "statistics" not in status and "version" not in status
    assert not attacker.jobs(), "no ingest Job ever ran with the victim's URI"


def test_a_dataset_reads_an_upload_in_its_own_prefix(attacker: Tenant, storage: Storage) -> None:
    """The control for the test above: the same kind of source, in the tenant's own prefix."""
    upload = S3Uri(BUCKET, f"{layout.NAMESPACES}/{attacker.namespace}/uploads/data.csv")
    storage.put_bytes(upload, b"x,y\n1,a\n2,b\n3,a\n4,b\n5,a\n6,b\n7,a\n8,b\n9,a\n10,b\n")
    attacker.objects.create(_dataset("own", source={"s3": {"uri": str(upload)}}, target="y"))
    assert attacker.run("modelyard.dev/dataset=own") == 0
    attacker.wait_condition("Dataset", "own", "Ready", "True", "Ingested")


def test_a_dataset_cannot_move_its_storage_into_another_namespaces_prefix(
    attacker: Tenant, victim: Tenant
) -> None:
    prefix = f"{layout.NAMESPACES}/{victim.namespace}/datasets/iris"
    attacker.objects.create(_dataset("moved", storage={"prefix": prefix}))
    stalled = attacker.wait_condition("Dataset", "moved", "Stalled", "True", "StorageNotAllowed")
    assert "spec.storage.prefix" in stalled["message"]
    assert not attacker.jobs()


def test_a_deployment_cannot_serve_another_namespaces_model(
    attacker: Tenant, victim: Tenant, trained: dict[str, Any]
) -> None:
    # The victim's model, digest and card digest: all public in its status (and its server's).
    model = dict(trained["model"])
    attacker.objects.create(model_deployment("stolen", model))
    stalled = attacker.wait_condition(
        "ModelDeployment", "stolen", "Stalled", "True", "LocationNotAllowed"
    )
    assert "spec.model.uri" in stalled["message"]
    assert not client.AppsV1Api(attacker.admin).list_namespaced_deployment(attacker.namespace).items


def test_a_tampered_model_card_is_never_loaded(
    victim: Tenant, trained: dict[str, Any], storage: Storage
) -> None:
    """A bucket writer permutes the card's feature order; the server refuses before unpickling."""
    victim.objects.create(model_deployment("iris", {"trainingJobRef": {"name": "iris"}}))
    pod = wait_for(
        "a model server pod",
        lambda: next(iter(victim.pods("modelyard.dev/modeldeployment=iris")), None),
    )
    card_uri = S3Uri.parse(trained["model"]["uri"].rsplit("/", 1)[0] + "/" + layout.MODEL_CARD)
    card = json.loads(storage.get_bytes(card_uri))
    card["features"] = list(reversed(card["features"]))
    storage.put_bytes(card_uri, json.dumps(card, indent=2).encode(), "application/json")
    assert run_pod(client.CoreV1Api(victim.admin), pod, timeout=120) != 0
    pod = client.CoreV1Api(victim.admin).read_namespaced_pod(pod.metadata.name, victim.namespace)
    message = json.loads(pod.status.container_statuses[0].state.terminated.message)
    assert message["reason"] == "DigestMismatch", message
    assert "model.json" in message["message"]


# --- Results: only the operator's own Job and pods count ---------------------------------------


def _ready_dataset(tenant: Tenant, name: str = "iris") -> None:
    tenant.objects.create(_dataset(name))
    assert tenant.run(f"modelyard.dev/dataset={name}") == 0
    tenant.wait_condition("Dataset", name, "Ready", "True")


def _forged_summary(run: str, version: str) -> dict[str, Any]:
    return {
        "status": "Succeeded",
        "run": run,
        "datasetVersion": version,
        "model": {
            "uri": f"s3://{BUCKET}/elsewhere/model.joblib",
            "digest": FORGED_DIGEST,
            "cardDigest": FORGED_DIGEST,
        },
        "metrics": {"accuracy": 1.0},
        "task": "classification",
    }


def _restricted_pod(command: list[str]) -> dict[str, Any]:
    return {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "train",
                "image": "attacker.example/forger:1",
                "command": command,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "nodeSelector": {"modelyard.dev/test-node": "none"},
    }


def _forge_job(
    tenant: Tenant, name: str, labels: dict[str, str], owner: dict[str, Any] | None
) -> client.V1Job:
    body: dict[str, Any] = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels}, "spec": _restricted_pod(["true"])},
        },
    }
    if owner is not None:
        body["metadata"]["ownerReferences"] = [owner]
    created: client.V1Job = client.BatchV1Api(tenant.api).create_namespaced_job(
        tenant.namespace, body
    )
    return created


def _finish_forged(tenant: Tenant, job: str, summary: dict[str, Any]) -> None:
    """A kubelet runs the forged pod, which writes the forged summary as its message."""
    core = client.CoreV1Api(tenant.admin)
    pod = wait_for(
        f"a pod of Job {job}",
        lambda: next(iter(tenant.pods(f"batch.kubernetes.io/job-name={job}")), None),
    )
    terminate(core, pod, summary)
    wait_for(
        f"Job {job} complete",
        lambda: (
            (
                client.BatchV1Api(tenant.admin)
                .read_namespaced_job(job, tenant.namespace)
                .status.succeeded
                or 0
            )
            >= 1
        ),
    )


def _our_labels(training_job: str, run: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "modelyard",
        "app.kubernetes.io/part-of": "modelyard",
        "app.kubernetes.io/name": "modelyard",
        "app.kubernetes.io/component": "train",
        "modelyard.dev/trainingjob": training_job,
        "modelyard.dev/run": run,
    }


def test_a_job_labelled_like_ours_does_not_write_a_run(attacker: Tenant) -> None:
    _ready_dataset(attacker)
    attacker.objects.create(training_job("iris"))
    attacker.wait_condition("TrainingJob", "iris", "Reconciling", "True", "Training")
    version = attacker.status("Dataset", "iris")["version"]
    _forge_job(attacker, "forged", _our_labels("iris", "run-1"), None)
    _finish_forged(attacker, "forged", _forged_summary("run-1", version))
    # The genuine run is still the one in progress; the forged result is nowhere.
    attacker.wait_condition("TrainingJob", "iris", "Reconciling", "True", "Training")
    status = attacker.status("TrainingJob", "iris")
    assert "model" not in status and status["runs"][0]["phase"] == "Running"
    # The operator's own Job then trains for real, and only its result is recorded.
    assert (
        attacker.run(
            "modelyard.dev/trainingjob=iris,batch.kubernetes.io/job-name="
            + status["runs"][0]["job"]
        )
        == 0
    )
    attacker.wait_condition("TrainingJob", "iris", "Ready", "True", "Succeeded")
    model = attacker.status("TrainingJob", "iris")["model"]
    assert model["digest"] != FORGED_DIGEST
    assert f"/{layout.NAMESPACES}/{attacker.namespace}/models/iris/" in model["uri"]


def test_a_pod_that_claims_our_job_does_not_write_its_result(
    attacker: Tenant, operator: OperatorProcess
) -> None:
    """A pod with the operator's Job's labels and even a controller reference to it, whose
    report, well formed for the run and newer than the genuine one, forges digest and accuracy:
    the Job's own pod's report is the one recorded."""
    _ready_dataset(attacker)
    attacker.objects.create(training_job("iris"))
    attacker.wait_condition("TrainingJob", "iris", "Reconciling", "True", "Training")
    run = attacker.status("TrainingJob", "iris")["runs"][0]
    job = client.BatchV1Api(attacker.admin).read_namespaced_job(run["job"], attacker.namespace)
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    forged = {
        **_forged_summary("run-1", run["datasetVersion"]),
        "model": {
            "uri": env["MODELYARD_OUTPUT_URI"] + layout.MODEL_FILE,  # where the run publishes
            "digest": FORGED_DIGEST,
            "cardDigest": FORGED_DIGEST,
        },
    }
    labels = {
        **job.spec.template.metadata.labels,
        "batch.kubernetes.io/job-name": run["job"],
        "batch.kubernetes.io/controller-uid": job.metadata.uid,
    }
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": run["job"],
        "uid": job.metadata.uid,
        "controller": True,
    }
    core = client.CoreV1Api(attacker.admin)
    genuine = next(iter(attacker.pods(f"batch.kubernetes.io/job-name={run['job']}")))
    # The operator is away while both pods end: it then reads their reports together, and the
    # forged one is the newer.
    operator.stop()
    try:
        assert run_pod(core, genuine) == 0
        batch = client.BatchV1Api(attacker.admin)
        wait_for(  # a pod made after the Job is complete is one the Job controller leaves alone
            f"Job {run['job']} complete",
            lambda: (
                (batch.read_namespaced_job(run["job"], attacker.namespace).status.succeeded) == 1
            ),
        )
        pod = client.CoreV1Api(attacker.api).create_namespaced_pod(
            attacker.namespace,
            {
                "metadata": {"name": "forged", "labels": labels, "ownerReferences": [owner]},
                "spec": _restricted_pod(["true"]),
            },
        )
        time.sleep(1.1)  # a later finishedAt (the kubelet stamps seconds)
        terminate(core, pod, forged)
    finally:
        operator.start()
    attacker.wait_condition("TrainingJob", "iris", "Ready", "True", "Succeeded")
    recorded = attacker.status("TrainingJob", "iris")["runs"][0]
    assert recorded["model"]["digest"] != FORGED_DIGEST, recorded
    assert recorded["metrics"]["accuracy"] != 1.0


def test_a_job_made_in_advance_under_our_name_is_refused(attacker: Tenant) -> None:
    # The TrainingJob waits for its Dataset: time for the attacker to make the run's Job first.
    attacker.objects.create(training_job("iris"))
    attacker.wait_condition("TrainingJob", "iris", "DatasetReady", "False", "DatasetNotFound")
    uid = attacker.seen.get("TrainingJob", "iris")["metadata"]["uid"]  # type: ignore[index]
    name = training_job_name("iris", uid, "run-1")
    owner = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "name": "iris",
        "uid": uid,
        "controller": True,
    }
    _forge_job(attacker, name, _our_labels("iris", "run-1"), owner)
    _ready_dataset(attacker)
    stalled = attacker.wait_condition("TrainingJob", "iris", "Stalled", "True", "ForeignJob")
    assert name in stalled["message"]
    version = attacker.status("Dataset", "iris")["version"]
    _finish_forged(attacker, name, _forged_summary("run-1", version))
    _quiet()
    assert "model" not in attacker.status("TrainingJob", "iris")


def test_a_trainingjob_created_again_under_its_name_adopts_nothing(
    attacker: Tenant, storage: Storage
) -> None:
    _ready_dataset(attacker)
    attacker.objects.create(training_job("iris"))
    assert attacker.run("modelyard.dev/trainingjob=iris") == 0
    first = attacker.wait_condition("TrainingJob", "iris", "Ready", "True") and attacker.status(
        "TrainingJob", "iris"
    )
    first_model = S3Uri.parse(first["model"]["uri"])
    first_bytes = storage.get_bytes(first_model)
    # Deleted with its Job left behind, then created again under the same name.
    client.CustomObjectsApi(attacker.api).delete_namespaced_custom_object(
        GROUP, VERSION, attacker.namespace, "trainingjobs", "iris", propagation_policy="Orphan"
    )
    wait_for("the TrainingJob gone", lambda: attacker.seen.get("TrainingJob", "iris") is None)
    attacker.objects.create(training_job("iris"))
    attacker.wait_condition("TrainingJob", "iris", "Reconciling", "True", "Training")
    run = attacker.status("TrainingJob", "iris")["runs"][0]
    assert run["job"] != first["runs"][0]["job"], "the old Job was adopted"
    assert "model" not in attacker.status("TrainingJob", "iris")
    assert attacker.run(f"batch.kubernetes.io/job-name={run['job']}") == 0
    attacker.wait_condition("TrainingJob", "iris", "Ready", "True", "Succeeded")
    second = attacker.status("TrainingJob", "iris")["model"]
    assert second["uri"] != first["model"]["uri"]
    assert bytes_digest(storage.get_bytes(first_model)) == first["model"]["digest"]
    assert storage.get_bytes(first_model) == first_bytes, "the first model was overwritten"


def test_a_tenant_cannot_write_a_result_into_status(attacker: Tenant) -> None:
    attacker.objects.create(training_job("iris"))
    forged = {
        "status": {"model": {"uri": f"s3://{BUCKET}/x/model.joblib", "digest": FORGED_DIGEST}}
    }
    assert refused(lambda: attacker.patch("TrainingJob", "iris", forged, status=True)) == 403
    assert not attacker.may("patch", "trainingjobs", GROUP, "status")
    assert attacker.may("create", "trainingjobs", GROUP)


# --- Jobs that vanish, and late results --------------------------------------------------------


def test_a_run_whose_job_is_deleted_fails_with_the_reason(attacker: Tenant) -> None:
    _ready_dataset(attacker)
    attacker.objects.create(training_job("iris"))
    attacker.wait_condition("TrainingJob", "iris", "Reconciling", "True", "Training")
    job = attacker.status("TrainingJob", "iris")["runs"][0]["job"]
    client.BatchV1Api(attacker.api).delete_namespaced_job(
        job, attacker.namespace, propagation_policy="Background"
    )
    stalled = attacker.wait_condition("TrainingJob", "iris", "Stalled", "True", "JobVanished")
    assert job in stalled["message"]
    assert attacker.status("TrainingJob", "iris")["runs"][0]["phase"] == "Failed"


def test_an_ingestion_whose_job_vanished_while_the_operator_was_down_fails(
    attacker: Tenant, operator: OperatorProcess
) -> None:
    attacker.objects.create(_dataset("iris"))
    attacker.wait_condition("Dataset", "iris", "Reconciling", "True", "Ingesting")
    job = attacker.status("Dataset", "iris")["ingestJob"]
    operator.stop()
    try:
        client.BatchV1Api(attacker.admin).delete_namespaced_job(job, attacker.namespace)
    finally:
        operator.start()
    attacker.wait_condition("Dataset", "iris", "Stalled", "True", "JobVanished")


def test_a_late_result_of_an_earlier_ingestion_does_not_overwrite_the_newer_one(
    attacker: Tenant,
) -> None:
    """The first ingestion (iris) ends after the spec moved on (wine): its result must not
    become the Dataset's version, nor stop the newer ingestion from being recorded."""
    attacker.objects.create(_dataset("data"))
    attacker.wait_condition("Dataset", "data", "Reconciling", "True", "Ingesting")
    first = attacker.status("Dataset", "data")["ingestJob"]
    attacker.patch("Dataset", "data", {"spec": {"source": {"builtin": {"name": "wine"}}}})
    wait_for(
        "the newer ingestion started",
        lambda: attacker.status("Dataset", "data")["ingestJob"] != first,
    )
    second = attacker.status("Dataset", "data")["ingestJob"]
    assert attacker.run(f"batch.kubernetes.io/job-name={first}") == 0
    _quiet()
    status = attacker.status("Dataset", "data")
    assert (status["phase"], status["ingestJob"]) == ("Ingesting", second)
    assert "version" not in status
    assert attacker.run(f"batch.kubernetes.io/job-name={second}") == 0
    attacker.wait_condition("Dataset", "data", "Ready", "True", "Ingested")
    assert attacker.status("Dataset", "data")["rows"] == 178, "wine's rows, not iris's 150"


# --- Names --------------------------------------------------------------------------------------


def test_a_deployment_name_that_would_take_anothers_canary_is_refused(attacker: Tenant) -> None:
    model = {"trainingJobRef": {"name": "iris"}}
    assert refused(lambda: attacker.objects.create(model_deployment("iris-canary", model))) == 422
    assert refused(lambda: attacker.objects.create(model_deployment("iris.v2", model))) == 422


def test_a_child_name_held_by_something_else_is_never_taken_over(
    attacker: Tenant, victim: Tenant
) -> None:
    _ready_dataset(attacker)
    apps = client.AppsV1Api(attacker.api)
    placeholder = {
        "metadata": {"name": "iris", "labels": {"app": "mine"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "mine"}},
            "template": {
                "metadata": {"labels": {"app": "mine"}},
                "spec": {**_restricted_pod(["true"]), "restartPolicy": "Always"},
            },
        },
    }
    apps.create_namespaced_deployment(attacker.namespace, placeholder)
    canary_like = {**placeholder, "metadata": {"name": "iris-canary", "labels": {"app": "mine"}}}
    apps.create_namespaced_deployment(attacker.namespace, canary_like)
    attacker.objects.create(training_job("iris"))
    assert attacker.run("modelyard.dev/trainingjob=iris") == 0
    attacker.objects.create(model_deployment("iris", {"trainingJobRef": {"name": "iris"}}))
    stalled = attacker.wait_condition("ModelDeployment", "iris", "Stalled", "True", "NameConflict")
    assert "Deployment iris" in stalled["message"]
    mine = client.AppsV1Api(attacker.admin).read_namespaced_deployment("iris", attacker.namespace)
    assert (
        mine.spec.template.metadata.labels == {"app": "mine"} and not mine.metadata.owner_references
    )
    # Without a canary, the operator removes its canary Deployment: never one it does not own.
    client.AppsV1Api(attacker.admin).read_namespaced_deployment("iris-canary", attacker.namespace)


# --- Resources ----------------------------------------------------------------------------------


def test_a_search_too_large_never_starts(attacker: Tenant) -> None:
    _ready_dataset(attacker)
    grid = {"C": [0.01 * i for i in range(1, 31)], "tol": [1e-4 * i for i in range(1, 31)]}
    attacker.objects.create(
        training_job("iris", search={"strategy": "grid", "params": grid, "cv": 2})
    )
    stalled = attacker.wait_condition("TrainingJob", "iris", "Stalled", "True", "SearchTooLarge")
    assert "900 candidates" in stalled["message"]
    assert not attacker.jobs("modelyard.dev/trainingjob=iris")


def test_workload_pods_are_bounded_whatever_the_spec_says(attacker: Tenant) -> None:
    attacker.objects.create(_dataset("iris"))
    job = wait_for("the ingest Job", lambda: next(iter(attacker.jobs()), None))
    assert job.spec.active_deadline_seconds and job.spec.active_deadline_seconds > 0
    pod = job.spec.template.spec
    assert [v.empty_dir.size_limit for v in pod.volumes] == ["8Gi"]
    limits = pod.containers[0].resources.limits
    assert {"cpu", "memory", "ephemeral-storage"} <= limits.keys()
