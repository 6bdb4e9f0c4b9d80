"""The run's Dask cluster as built: what the dask operator's CRD keeps of it, the pods' hardening,
their environment, ownership and names, and the training Job that uses it."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import dask.config
import dask_kubernetes
import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelyard.api.common import ResourceRequirements
from modelyard.api.trainingjob import TrainingJobSpec, WorkersSpec
from modelyard.config import OperatorConfig
from modelyard.controllers.engine import parse_progress
from modelyard.engine import contract, tls
from modelyard.resources.common import storage_env
from modelyard.resources.dask import (
    build_dask_cluster,
    build_tls_secret,
    tls_secret_name,
)
from modelyard.resources.jobs import Owner, build_training_job, training_job_name

CONFIG = OperatorConfig(s3_endpoint="http://10.0.0.1:8333", s3_credentials_secret="s3-creds")
OWNER = Owner("TrainingJob", "iris-classifier", "ml", "uid-2")
IMAGE = "registry.local/modelyard-trainer:1"
CRDS = (
    Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator/crds"
)
CERTIFICATES = tls.issue("iris-classifier-run-1")
DIGEST = "sha256:" + "ab" * 32


def _workers(**fields: Any) -> WorkersSpec:
    return WorkersSpec.model_validate({"replicas": 3, **fields})


def _cluster(workers: WorkersSpec | None = None, name: str = "iris-classifier-run-1") -> Any:
    return build_dask_cluster(
        OWNER,
        contract.cluster_name(name),
        "run-1",
        workers or _workers(),
        IMAGE,
        storage_env(CONFIG),
        CONFIG,
    )


def _pod_specs(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {role: cluster["spec"][role]["spec"] for role in ("scheduler", "worker")}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / "daskcluster.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _pruned(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """The paths of `value` that the API server would drop, as it prunes what a structural
    schema does not declare."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is None:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return [p for k, v in value.items() for p in _pruned(v, extra, f"{path}.{k}")]
            return []
        return [
            p
            for k, v in value.items()
            for p in (
                _pruned(v, properties[k], f"{path}.{k}") if k in properties else [f"{path}.{k}"]
            )
        ]
    if isinstance(value, list):
        return [p for item in value for p in _pruned(item, schema.get("items") or {}, path)]
    return []


def test_dask_cluster_is_what_the_dask_operators_crd_accepts_and_keeps() -> None:
    cluster = _cluster(_workers(resources={"limits": {"cpu": 2, "memory": "1Gi"}}))
    schema = _crd_schema()
    jsonschema.validate(cluster, schema)
    # Nothing silently dropped on the way in: no hardening field is lost to pruning.
    assert _pruned({k: cluster[k] for k in ("spec",)}, schema) == []
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    assert cluster["kind"] == "DaskCluster"
    assert cluster["spec"]["worker"]["replicas"] == 3


def test_a_field_the_crd_does_not_declare_is_found_as_pruned() -> None:
    """The control for the test above: a field the old pod schema of the CRD lacks."""
    cluster = _cluster()
    cluster["spec"]["worker"]["spec"]["hostUsers"] = False
    assert _pruned({"spec": cluster["spec"]}, _crd_schema()) == [".spec.worker.spec.hostUsers"]


@pytest.mark.parametrize("role", ["scheduler", "worker"])
def test_engine_pods_pass_the_restricted_standard_and_are_valid_pods(role: str) -> None:
    pod_spec = _pod_specs(_cluster())[role]
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec},
        "1.34.0",
        strict=True,
    )
    pod = pod_spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod_spec["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["enableServiceLinks"] is False
    assert container["image"] == IMAGE
    # Writable: /tmp only, bounded; the TLS material read-only from the run's Secret.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/tmp", contract.TLS_MOUNT}
    assert mounts[contract.TLS_MOUNT]["readOnly"] is True
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["tmp"]["emptyDir"]["sizeLimit"] == CONFIG.workload_tmp_size
    secret = volumes[contract.TLS_VOLUME]["secret"]
    assert secret["secretName"] == tls_secret_name("iris-classifier-run-1")
    assert secret["defaultMode"] & 0o007 == 0  # not world-readable


def test_scheduler_serves_tls_only_and_is_ready_when_it_listens() -> None:
    cluster = _cluster()
    (scheduler,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    command = scheduler["command"]
    assert command[:2] == ["dask", "scheduler"]
    assert command[command.index("--protocol") + 1] == "tls"
    assert command[command.index("--port") + 1] == str(contract.SCHEDULER_PORT)
    # The unauthenticated dashboard is not on the pod network.
    _assert_ready_on_health_only(scheduler)
    assert scheduler["ports"][0]["containerPort"] == contract.SCHEDULER_PORT
    service = cluster["spec"]["scheduler"]["service"]
    assert service["type"] == "ClusterIP"
    assert [p["port"] for p in service["ports"]] == [contract.SCHEDULER_PORT]
    assert service["selector"] == {
        "dask.org/cluster-name": "iris-classifier-run-1",
        "dask.org/component": "scheduler",
    }
    assert _env(scheduler)["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"


def _assert_ready_on_health_only(container: dict[str, Any]) -> None:
    """Ready when the process serves HTTP on the port its command names, and that server answers
    /health alone: no dashboard, metrics or API (which could retire workers) on plain HTTP."""
    command, env = container["command"], _env(container)
    port = int(command[command.index("--dashboard-address") + 1].rpartition(":")[2])
    probe = container["readinessProbe"]["httpGet"]
    (declared,) = [p for p in container["ports"] if p["name"] == probe["port"]]
    assert (declared["containerPort"], probe["path"]) == (port, "/health")
    role = container["name"].upper()
    assert env[f"DASK_DISTRIBUTED__{role}__HTTP__ROUTES"] == '["distributed.http.health"]'


def test_workers_join_the_runs_scheduler_over_tls_with_their_container_limits() -> None:
    workers = _workers(resources={"limits": {"cpu": "1500m", "memory": "768Mi"}})
    (worker,) = _cluster(workers)["spec"]["worker"]["spec"]["containers"]
    env = _env(worker)
    address = contract.scheduler_address("iris-classifier-run-1", "ml")
    assert address.startswith("tls://")
    # Set by us, so the dask operator does not add its tcp:// default.
    assert env["DASK_SCHEDULER_ADDRESS"] == address
    for variable in contract.tls_env():
        assert env[variable["name"]] == variable["value"]
    command = worker["command"]
    assert command[:3] == ["dask", "worker", address]
    # The kubelet fills these in: threads from the CPU limit (rounded up), memory in bytes.
    assert command[command.index("--nthreads") + 1] == "$(MODELYARD_CPUS)"
    assert env["MODELYARD_CPUS"] == {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}}
    assert command[command.index("--memory-limit") + 1] == "$(MODELYARD_MEMORY_LIMIT)"
    assert env["MODELYARD_MEMORY_LIMIT"]["resourceFieldRef"]["resource"] == "limits.memory"
    assert command[command.index("--name") + 1] == "$(DASK_WORKER_NAME)"
    assert command[command.index("--local-directory") + 1].startswith("/tmp/")
    _assert_ready_on_health_only(worker)
    assert worker["resources"]["limits"]["cpu"] == "1500m"
    assert worker["resources"]["limits"]["memory"] == "768Mi"
    # Workers read the snapshot's row groups: the training pod's storage, by Secret reference.
    assert env["MODELYARD_S3_ENDPOINT"] == CONFIG.s3_endpoint
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}
    }


@pytest.mark.parametrize("data_parallel", [True, False])
def test_data_parallel_workers_do_not_spill_the_parts_lightgbm_holds(data_parallel: bool) -> None:
    (worker,) = _cluster(_workers(dataParallel=data_parallel))["spec"]["worker"]["spec"][
        "containers"
    ]
    env = {name: value for name, value in _env(worker).items() if isinstance(value, str)}
    # As Dask reads its configuration from the container's environment.
    memory = dask.config.collect_env(env).get("distributed", {}).get("worker", {}).get("memory", {})
    if data_parallel:
        assert memory == {"target": False, "spill": False}
    else:
        assert memory == {}


def test_scheduler_gets_the_training_containers_resources_as_it_holds_the_same_data() -> None:
    spec = ResourceRequirements(limits={"memory": "6Gi"}, requests={"memory": "6Gi"})
    cluster = build_dask_cluster(
        OWNER,
        contract.cluster_name("iris-classifier-run-1"),
        "run-1",
        _workers(),
        IMAGE,
        storage_env(CONFIG),
        CONFIG,
        scheduler_resources=spec,
    )
    (scheduler,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    assert scheduler["resources"]["limits"]["memory"] == "6Gi"
    assert scheduler["resources"]["requests"]["memory"] == "6Gi"


def test_workers_get_the_operator_defaults_for_what_the_spec_leaves_out() -> None:
    (worker,) = _cluster()["spec"]["worker"]["spec"]["containers"]
    assert worker["resources"]["limits"]["cpu"] == CONFIG.workload_cpu_limit
    assert worker["resources"]["limits"]["memory"] == CONFIG.workload_memory_limit
    assert worker["resources"]["limits"]["ephemeral-storage"] == CONFIG.workload_tmp_size


def test_no_secret_material_in_any_pod_spec() -> None:
    text = json.dumps(_cluster())
    for pem in (CERTIFICATES.key_pem, CERTIFICATES.cert_pem, CERTIFICATES.ca_pem):
        body = pem.decode().splitlines()[1]
        assert body not in text
        assert base64.b64encode(pem).decode()[:40] not in text


def test_cluster_is_owned_by_the_trainingjob_and_labelled_like_its_children() -> None:
    cluster = _cluster()
    meta = cluster["metadata"]
    assert meta["name"] == "iris-classifier-run-1" and meta["namespace"] == "ml"
    (owner,) = meta["ownerReferences"]
    assert owner["kind"] == "TrainingJob" and owner["uid"] == "uid-2"
    assert owner["controller"] is True
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "modelyard"
    assert meta["labels"]["modelyard.dev/trainingjob"] == "iris-classifier"
    assert meta["labels"]["modelyard.dev/run"] == "run-1"
    # Not "train": the operator's training-pod handlers never take an engine pod for the run's.
    assert meta["labels"]["app.kubernetes.io/component"] == "engine"


def test_tls_secret_is_owned_by_the_cluster_and_holds_the_runs_material() -> None:
    secret = build_tls_secret(OWNER, "iris-classifier-run-1", "uid-cluster", "run-1", CERTIFICATES)
    kubernetes_validate.validate(secret, "1.34.0", strict=True)
    assert secret["type"] == "Opaque"
    meta = secret["metadata"]
    assert meta["name"] == tls_secret_name("iris-classifier-run-1")
    (owner,) = meta["ownerReferences"]
    assert (owner["apiVersion"], owner["kind"], owner["uid"]) == (
        "kubernetes.dask.org/v1",
        "DaskCluster",
        "uid-cluster",
    )
    # Deleting the cluster must not wait for rights on its finalizers.
    assert not owner.get("blockOwnerDeletion")
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert data == {
        contract.CA_FILE: CERTIFICATES.ca_pem,
        contract.CERT_FILE: CERTIFICATES.cert_pem,
        contract.KEY_FILE: CERTIFICATES.key_pem,
    }


@pytest.mark.parametrize("length", [10, 53, 54, 63])
def test_names_fit_what_the_dask_operator_derives_from_them(length: int) -> None:
    job = ("j" * (length - 2)) + "-1"
    cluster = contract.cluster_name(job)
    assert cluster == contract.cluster_name(job)  # every retry finds the same cluster
    # The dask operator's scheduler Service and worker group label.
    assert len(f"{cluster}-scheduler") <= 63 and len(f"{cluster}-default") <= 63
    assert cluster[0].isalnum() and cluster[-1].isalnum()
    assert len(tls_secret_name(cluster)) <= 63
    if length <= contract.MAX_CLUSTER_NAME:
        assert cluster == job


def test_long_training_job_names_get_distinct_clusters() -> None:
    first = training_job_name("t" * 63, "uid-1", "run-1")
    second = training_job_name("t" * 63, "uid-1", "run-2")
    assert contract.cluster_name(first) != contract.cluster_name(second)


def _training_spec(workers: dict[str, Any] | None) -> TrainingJobSpec:
    spec: dict[str, Any] = {
        "datasetRef": {"name": "iris"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
    }
    if workers is not None:
        spec["workers"] = workers
    return TrainingJobSpec.model_validate(spec)


def _training_job(workers: dict[str, Any] | None) -> dict[str, Any]:
    return build_training_job(
        OWNER,
        _training_spec(workers),
        "run-1",
        "s3://modelyard/namespaces/ml/datasets/iris/versions/x/",
        DIGEST,
        None,
        "s3://modelyard/namespaces/ml/models/iris-classifier/uid-2/run-1/",
        CONFIG,
    )


def test_training_job_of_a_run_on_workers_is_the_clusters_client() -> None:
    job = _training_job({"replicas": 3})
    name = job["metadata"]["name"]
    pod_spec = job["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    env = _env(container)
    cluster = contract.cluster_name(name)
    assert env[contract.SCHEDULER_ENV] == contract.scheduler_address(cluster, "ml")
    assert env[contract.WORKERS_ENV] == "3"
    for variable in contract.tls_env():
        assert env[variable["name"]] == variable["value"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == contract.TLS_MOUNT)
    assert mount["readOnly"] is True
    volume = next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == tls_secret_name(cluster)
    kubernetes_validate.validate(job, "1.34.0", strict=True)
    # A lost engine fails the Job at once: the workload gave up after the engine's retries.
    (rule,) = job["spec"]["podFailurePolicy"]["rules"]
    assert 6 in rule["onExitCodes"]["values"]


def test_training_job_without_workers_has_nothing_of_the_engine() -> None:
    job = _training_job(None)
    container = job["spec"]["template"]["spec"]["containers"][0]
    names = {e["name"] for e in container["env"]}
    assert contract.SCHEDULER_ENV not in names
    assert not any(name.startswith("DASK_") for name in names)
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]


def test_builders_do_not_change_their_inputs() -> None:
    workers = _workers(resources={"limits": {"cpu": 2}})
    before = copy.deepcopy(workers)
    _cluster(workers)
    assert workers == before


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ('{"modelyard.progress": {"trialsDone": 3, "trialsTotal": 64}}\n', (3, 64)),
        (
            '{"modelyard.progress": {"trialsDone": 3, "trialsTotal": 64}}\n'
            "fitting…\n"
            '{"modelyard.progress": {"trialsDone": 9, "trialsTotal": 64}}\n',
            (9, 64),
        ),
        # The latest well-formed line counts; malformed ones are skipped.
        (
            '{"modelyard.progress": {"trialsDone": 5, "trialsTotal": 64}}\n'
            '{"modelyard.progress": {"trialsDone": 70, "trialsTotal": 64}}\n'
            '{"modelyard.progress": {"trialsDone": -1, "trialsTotal": 64}}\n'
            '{"modelyard.progress": {"trialsDone": true, "trialsTotal": 64}}\n'
            '{"modelyard.progress": {"trialsDone": "7", "trialsTotal": 64}}\n'
            '{"modelyard.progress": {"trialsDone": 1, "trialsTotal": 99999999999}}\n'
            '{"modelyard.progress": [1, 2]}\n'
            '["modelyard.progress"]\n'
            "modelyard.progress: {not json\n",
            (5, 64),
        ),
        ("no progress here\n", None),
        ("", None),
    ],
)
def test_progress_is_read_from_the_latest_well_formed_line(
    log: str, expected: tuple[int, int] | None
) -> None:
    assert parse_progress(log) == expected
