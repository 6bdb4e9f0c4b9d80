"""The pure child builders: manifests in the shape Kubernetes and the restricted PSS expect."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from modelyard.api.common import StorageSpec
from modelyard.api.dataset import DatasetSpec
from modelyard.api.modeldeployment import ModelDeploymentSpec
from modelyard.api.trainingjob import TrainingJobSpec
from modelyard.config import OperatorConfig
from modelyard.resources.common import EPHEMERAL_STORAGE_REQUEST, child_name
from modelyard.resources.jobs import (
    Owner,
    build_ingest_job,
    build_training_job,
    ingest_job_name,
    training_job_name,
)
from modelyard.resources.router import (
    build_router,
    build_router_config,
    build_track_service,
    nginx_config,
    track_addresses,
)
from modelyard.resources.serving import (
    ModelRef,
    build_deployment,
    build_hpa,
    build_pdb,
    build_service,
    split_replicas,
)
from modelyard.workloads.serving.config import parse
from modelyard.workloads.serving.http import DRAIN_IDLE_SECONDS

CONFIG = OperatorConfig(s3_endpoint="http://10.0.0.1:8333", s3_credentials_secret="s3-creds")
DIGEST = "sha256:" + "ab" * 32
CARD_DIGEST = "sha256:" + "cd" * 32
DATASET = Owner("Dataset", "iris", "ml", "uid-1")
TRAINING_JOB = Owner("TrainingJob", "iris-classifier", "ml", "uid-2")
DEPLOYMENT = Owner("ModelDeployment", "iris", "ml", "uid-3")


def _pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def _assert_restricted(pod_spec: dict[str, Any]) -> None:
    """The `restricted` Pod Security Standard, field by field."""
    pod = pod_spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod_spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
    assert pod_spec["automountServiceAccountToken"] is False


def _validate(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, "1.34.0", strict=True)


def _ingest(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    dataset_spec = DatasetSpec.model_validate(spec or {"source": {"builtin": {"name": "iris"}}})
    return build_ingest_job(
        DATASET,
        dataset_spec,
        ingest_job_name("iris", "uid-1", 1, ""),
        "s3://modelyard/namespaces/ml/datasets/iris/",
        CONFIG,
    )


@pytest.mark.parametrize(
    ("parts", "unique"),
    [
        (("iris", "ingest"), "1/"),
        (("a" * 80, "run-12"), ""),
        (("a" * 80, "ingest"), "7/token"),
    ],
)
def test_child_names_are_deterministic_dns_labels(parts: tuple[str, ...], unique: str) -> None:
    name = child_name(*parts, unique=unique)
    assert name == child_name(*parts, unique=unique)
    assert len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()


def test_ingest_job_name_changes_with_generation_refresh_and_object_only() -> None:
    assert ingest_job_name("iris", "u1", 1, "") == ingest_job_name("iris", "u1", 1, "")
    assert ingest_job_name("iris", "u1", 2, "") != ingest_job_name("iris", "u1", 1, "")
    assert ingest_job_name("iris", "u1", 1, "now") != ingest_job_name("iris", "u1", 1, "")
    # A Dataset created again under the same name never adopts the first one's Job.
    assert ingest_job_name("iris", "u2", 1, "") != ingest_job_name("iris", "u1", 1, "")


def test_training_job_name_differs_for_an_object_created_again() -> None:
    assert training_job_name("tj", "u1", "run-1") == training_job_name("tj", "u1", "run-1")
    assert training_job_name("tj", "u2", "run-1") != training_job_name("tj", "u1", "run-1")
    assert len(training_job_name("t" * 63, "u1", "run-1000")) <= 63


def test_ingest_job_is_owned_hardened_and_valid() -> None:
    job = _ingest()
    _validate(job)
    owner = job["metadata"]["ownerReferences"][0]
    assert owner == {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "Dataset",
        "name": "iris",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert job["metadata"]["labels"]["modelyard.dev/dataset"] == "iris"
    pod = _pod_spec(job)
    _assert_restricted(pod)
    container = pod["containers"][0]
    assert container["command"] == ["modelyard-worker", "ingest"]
    assert container["image"] == CONFIG.trainer_image
    env = {e["name"]: e for e in container["env"]}
    assert json.loads(env["MODELYARD_SPEC"]["value"])["source"] == {"builtin": {"name": "iris"}}
    assert env["MODELYARD_S3_ENDPOINT"]["value"] == "http://10.0.0.1:8333"
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}},
    }
    assert env["MODELYARD_OUTPUT_URI"]["value"] == "s3://modelyard/namespaces/ml/datasets/iris/"
    assert pod["restartPolicy"] == "Never"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert job["spec"]["activeDeadlineSeconds"] == CONFIG.ingest_deadline_seconds
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2, 3, 4]


def test_dataset_storage_override_reaches_the_workload() -> None:
    job = _ingest(
        {
            "source": {"builtin": {"name": "iris"}},
            "storage": {"bucket": "team-data", "credentialsSecretRef": {"name": "team-s3"}},
        }
    )
    env = {e["name"]: e for e in _pod_spec(job)["containers"][0]["env"]}
    assert env["MODELYARD_S3_BUCKET"]["value"] == "team-data"
    assert env["MODELYARD_S3_ENDPOINT"]["value"] == CONFIG.s3_endpoint
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "team-s3"


def test_training_job_honours_limits_resources_and_image() -> None:
    spec = TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "iris"},
            "estimator": {"class": "sklearn.svm.SVC"},
            "backoffLimit": 0,
            "activeDeadlineSeconds": 600,
            "image": "registry.example/trainer:1",
            "resources": {"requests": {"cpu": 2}, "limits": {"memory": "4Gi"}},
        }
    )
    job = build_training_job(
        TRAINING_JOB,
        spec,
        "run-3",
        "s3://modelyard/namespaces/ml/datasets/iris/abc",
        DIGEST,
        StorageSpec(bucket="team-data"),
        "s3://team-data/namespaces/ml/models/iris-classifier/uid-2/run-3/",
        CONFIG,
    )
    _validate(job)
    assert job["metadata"]["name"] == training_job_name("iris-classifier", "uid-2", "run-3")
    assert job["metadata"]["labels"]["modelyard.dev/run"] == "run-3"
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, 600)
    container = _pod_spec(job)["containers"][0]
    assert container["image"] == "registry.example/trainer:1"
    assert container["resources"] == {
        "requests": {
            "cpu": 2,
            "memory": CONFIG.workload_memory_request,
            "ephemeral-storage": EPHEMERAL_STORAGE_REQUEST,
        },
        "limits": {
            "cpu": CONFIG.workload_cpu_limit,
            "memory": "4Gi",
            "ephemeral-storage": CONFIG.workload_tmp_size,
        },
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELYARD_OUTPUT_URI"] == (
        "s3://team-data/namespaces/ml/models/iris-classifier/uid-2/run-3/"
    )
    assert env["MODELYARD_MAX_SEARCH_TRIALS"] == str(CONFIG.max_search_trials)
    # The search's processes: the container's own CPU limit, in whole CPUs.
    cpus = next(e for e in container["env"] if e["name"] == "MODELYARD_CPUS")
    assert cpus["valueFrom"] == {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}}
    assert env["MODELYARD_DATASET_VERSION"] == DIGEST
    assert env["MODELYARD_RUN"] == "run-3"
    assert env["MODELYARD_S3_BUCKET"] == "team-data"


@pytest.mark.parametrize(
    ("total", "percent", "expected"),
    [
        (2, None, (2, 0)),
        (2, 50, (1, 1)),
        (4, 25, (3, 1)),
        (4, 10, (3, 1)),
        (1, 50, (1, 1)),
        (10, 30, (7, 3)),
        (3, 100, (0, 3)),
        (2, 0, (2, 0)),
    ],
)
def test_canary_split_is_proportional_to_one_replica(
    total: int, percent: int | None, expected: tuple[int, int]
) -> None:
    assert split_replicas(total, percent) == expected


def _serving_spec(**fields: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {"model": {"trainingJobRef": {"name": "iris-classifier"}}, **fields}
    )


def test_server_deployment_rolls_without_downtime_and_verifies_digest() -> None:
    deployment = build_deployment(
        DEPLOYMENT,
        _serving_spec(),
        "main",
        ModelRef("s3://m/model.joblib", DIGEST, CARD_DIGEST),
        2,
        CONFIG,
    )
    _validate(deployment)
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = _pod_spec(deployment)
    _assert_restricted(pod)
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELYARD_MODEL_DIGEST"] == DIGEST
    assert env["MODELYARD_MODEL_CARD_DIGEST"] == CARD_DIGEST
    assert env["MODELYARD_MODEL_NAME"] == "iris"
    assert spec["selector"]["matchLabels"]["modelyard.dev/track"] == "main"
    assert (
        pod["terminationGracePeriodSeconds"] > container["lifecycle"]["preStop"]["sleep"]["seconds"]
    )


def test_autoscaled_deployment_leaves_replicas_to_the_hpa() -> None:
    spec = _serving_spec(autoscaling={"minReplicas": 2, "maxReplicas": 5})
    deployment = build_deployment(
        DEPLOYMENT, spec, "main", ModelRef("s3://m/x", DIGEST, CARD_DIGEST), None, CONFIG
    )
    assert "replicas" not in deployment["spec"]
    assert spec.autoscaling is not None
    hpa = build_hpa(DEPLOYMENT, spec.autoscaling)
    _validate(hpa)
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)


def test_the_models_service_fronts_one_track_and_the_pdb_covers_them_all() -> None:
    main = build_deployment(
        DEPLOYMENT, _serving_spec(), "main", ModelRef("s3://m/a", DIGEST, CARD_DIGEST), 1, CONFIG
    )
    canary = build_deployment(
        DEPLOYMENT, _serving_spec(), "canary", ModelRef("s3://m/b", DIGEST, CARD_DIGEST), 1, CONFIG
    )
    router = build_router(DEPLOYMENT, 10, 2, CONFIG)
    pods = {
        d["spec"]["template"]["metadata"]["labels"]["modelyard.dev/track"]: d
        for d in (main, canary, router)
    }
    for track in ("main", "canary", "router"):
        service = build_service(DEPLOYMENT, track)
        _validate(service)
        assert service["metadata"]["name"] == "iris"
        selected = [
            name
            for name, d in pods.items()
            if service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [track]
    pdb = build_pdb(DEPLOYMENT)
    _validate(pdb)
    assert pdb["spec"]["maxUnavailable"] == 1
    for deployment in (main, canary, router):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("percent", [1, 10, 50, 99])
def test_the_router_splits_by_weight_between_the_track_services(percent: int) -> None:
    config = nginx_config(*track_addresses(DEPLOYMENT), percent)
    stable = f"iris-stable.ml.svc.cluster.local:80 weight={100 - percent} "
    canary = f"iris-canary.ml.svc.cluster.local:80 weight={percent} "
    assert stable in config and canary in config
    assert "worker_processes 1;" in config  # one worker: the weights hold exactly
    for track in ("main", "canary"):
        service = build_track_service(DEPLOYMENT, track)
        _validate(service)
        assert service["spec"]["selector"]["modelyard.dev/track"] == track
    assert build_track_service(DEPLOYMENT, "main")["metadata"]["name"] == "iris-stable"


def test_a_new_weight_rolls_the_router_and_its_pods_are_hardened() -> None:
    ten, twenty = build_router(DEPLOYMENT, 10, 1, CONFIG), build_router(DEPLOYMENT, 20, 1, CONFIG)
    _validate(ten)
    _validate(build_router_config(DEPLOYMENT, 10))
    annotation = "modelyard.dev/router-config"
    assert (
        ten["spec"]["template"]["metadata"]["annotations"][annotation]
        != twenty["spec"]["template"]["metadata"]["annotations"][annotation]
    )
    pod = _pod_spec(ten)
    _assert_restricted(pod)
    assert pod["containers"][0]["image"] == CONFIG.router_image
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]
    # Out of the Service's endpoints before nginx gets its (graceful) stop signal.
    assert pod["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": 3}}


def test_the_router_drops_idle_track_connections_before_a_draining_server_would() -> None:
    """Otherwise nginx may send a POST on a pooled connection a stopping server closes under
    it, and answer 502 rather than retry on the other track."""
    config = nginx_config(*track_addresses(DEPLOYMENT), 10)
    upstream = config.split("upstream tracks {", 1)[1].split("}", 1)[0]
    timeout = upstream.split("keepalive_timeout ", 1)[1].split(";", 1)[0]
    assert timeout.endswith("s") and float(timeout[:-1]) < DRAIN_IDLE_SECONDS


def test_the_router_starts_once_both_tracks_answer_through_their_services() -> None:
    """kube-proxy programs a new Service's address seconds after it is created on a busy node;
    a router taking the model's traffic before then hangs or fails its requests."""
    pod = _pod_spec(build_router(DEPLOYMENT, 10, 1, CONFIG))
    probe = pod["containers"][0]["startupProbe"]["httpGet"]
    assert probe["port"] == "http"
    config = build_router_config(DEPLOYMENT, 10)["data"]["nginx.conf"]

    def location(path: str) -> str:
        return config.split(f"location = {path} {{", 1)[1].split("}", 1)[0]

    startup = location(probe["path"])
    assert "proxy_pass http://iris-stable.ml.svc.cluster.local:80/v2/health/live;" in startup
    subrequest = startup.split("auth_request ", 1)[1].split(";", 1)[0]
    assert "proxy_pass http://iris-canary.ml.svc.cluster.local:80/v2/health/live;" in location(
        subrequest
    )
    # A track whose address drops the handshake: the request goes to the other one in seconds.
    assert "proxy_connect_timeout 5s;" in config.split("location / {", 1)[1]


def test_the_canary_autoscales_within_its_share() -> None:
    spec = _serving_spec(autoscaling={"minReplicas": 2, "maxReplicas": 10})
    assert spec.autoscaling is not None
    canary = build_hpa(DEPLOYMENT, spec.autoscaling, "canary", 25)
    _validate(canary)
    assert canary["metadata"]["name"] == canary["spec"]["scaleTargetRef"]["name"] == "iris-canary"
    assert (canary["spec"]["minReplicas"], canary["spec"]["maxReplicas"]) == (1, 3)


def test_server_reads_the_model_from_its_datasets_storage() -> None:
    model = ModelRef(
        "s3://team-data/models/m.joblib",
        DIGEST,
        CARD_DIGEST,
        StorageSpec(endpoint="http://team-s3:9000", credentialsSecretRef={"name": "team"}),
    )
    deployment = build_deployment(DEPLOYMENT, _serving_spec(), "main", model, 1, CONFIG)
    env = {e["name"]: e for e in _pod_spec(deployment)["containers"][0]["env"]}
    assert env["MODELYARD_S3_ENDPOINT"]["value"] == "http://team-s3:9000"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "team"


def test_workload_pods_have_bounded_scratch_space_cpu_and_placement() -> None:
    config = OperatorConfig(
        workload_tmp_size="1Gi",
        workload_tolerations='[{"key": "gpu", "operator": "Exists"}]',
        workload_affinity='{"nodeAffinity": {}}',
    )
    job = build_ingest_job(
        DATASET,
        DatasetSpec.model_validate({"source": {"builtin": {"name": "iris"}}}),
        "iris-ingest",
        "s3://modelyard/namespaces/ml/datasets/iris/",
        config,
    )
    server = build_deployment(
        DEPLOYMENT, _serving_spec(), "main", ModelRef("s3://m/a", DIGEST, None), 1, config
    )
    for manifest in (job, server):
        _validate(manifest)
        pod = _pod_spec(manifest)
        assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
        limits = pod["containers"][0]["resources"]["limits"]
        assert limits["ephemeral-storage"] == "1Gi" and limits["cpu"] == config.workload_cpu_limit
        assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
        assert pod["affinity"] == {"nodeAffinity": {}}


def test_model_servers_use_the_read_only_serving_credentials() -> None:
    config = OperatorConfig(s3_credentials_secret="rw", s3_serving_credentials_secret="ro")
    server = build_deployment(
        DEPLOYMENT, _serving_spec(), "main", ModelRef("s3://m/a", DIGEST, None), 1, config
    )
    env = {e["name"]: e for e in _pod_spec(server)["containers"][0]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "ro"
    assert "MODELYARD_MODEL_CARD_DIGEST" not in env  # a run from before card digests
    job = _ingest()
    assert {e["name"]: e for e in _pod_spec(job)["containers"][0]["env"]}["AWS_SECRET_ACCESS_KEY"][
        "valueFrom"
    ]["secretKeyRef"]["name"] == CONFIG.s3_credentials_secret


@pytest.mark.parametrize(
    ("monitoring", "windows"),
    [
        # Larger than the servers keep by default: each process keeps that many.
        (
            {
                "drift": {"minRows": 5000},
                "quality": {"metric": "accuracy", "minimum": 0.9, "minLabels": 20_000},
            },
            {"MODELYARD_DRIFT_WINDOW": "5000", "MODELYARD_FEEDBACK_WINDOW": "20000"},
        ),
        # Smaller: the servers' defaults stay.
        (
            {"drift": {"minRows": 200}, "quality": {"metric": "accuracy", "minimum": 0.9}},
            {"MODELYARD_DRIFT_WINDOW": "1000", "MODELYARD_FEEDBACK_WINDOW": "10000"},
        ),
        ({"drift": {"minRows": 100_000}}, {"MODELYARD_DRIFT_WINDOW": "100000"}),
        # Without judging, nothing is set: the template stays as it was before monitoring.
        ({}, {}),
        (None, {}),
    ],
)
def test_servers_keep_at_least_the_rows_monitoring_judges_from(
    monitoring: dict[str, Any] | None, windows: dict[str, str]
) -> None:
    spec = _serving_spec(**({"monitoring": monitoring} if monitoring is not None else {}))
    deployment = build_deployment(
        DEPLOYMENT, spec, "main", ModelRef("s3://m/a", DIGEST, None), 1, CONFIG
    )
    _validate(deployment)
    env = {e["name"]: e.get("value") for e in _pod_spec(deployment)["containers"][0]["env"]}
    assert {name: env[name] for name in env if name.endswith("_WINDOW")} == windows


@pytest.mark.parametrize(
    ("batching", "settings"),
    [
        ({"maxRows": 1}, (1, 0.0)),  # off
        ({"maxRows": 64, "maxWaitMilliseconds": 5}, (64, 0.005)),
        ({}, (256, 0.0)),  # the API's defaults are the server's
        (None, (256, 0.0)),
    ],
)
def test_the_servers_batch_as_the_spec_says(
    batching: dict[str, Any] | None, settings: tuple[int, float]
) -> None:
    spec = _serving_spec(**({"batching": batching} if batching is not None else {}))
    deployment = build_deployment(
        DEPLOYMENT, spec, "main", ModelRef("s3://m/a", DIGEST, None), 1, CONFIG
    )
    _validate(deployment)
    env = {e["name"]: e.get("value") for e in _pod_spec(deployment)["containers"][0]["env"]}
    if batching is None:  # the template stays as it was before batching had a setting
        assert not [name for name in env if name.startswith("MODELYARD_BATCH")]
    given = {name: value for name, value in env.items() if value is not None}
    server = parse(["--model-uri", "s3://models/a/model.joblib"], env=given)
    assert (server.batch_rows, server.batch_wait_seconds) == settings
