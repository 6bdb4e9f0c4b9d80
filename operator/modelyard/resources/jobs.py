"""Jobs that run the trainer image: one per Dataset ingestion, one per TrainingJob run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelyard.api.common import StorageSpec
from modelyard.api.dataset import DatasetSpec
from modelyard.api.sources import SOURCE_SECRET_ENV
from modelyard.api.trainingjob import TrainingJobSpec
from modelyard.config import OperatorConfig
from modelyard.engine.contract import cluster_name
from modelyard.exitcodes import (
    EXIT_ENGINE_LOST,
    EXIT_INVALID_DATA,
    EXIT_OBJECTIVE_NOT_MET,
    EXIT_USAGE,
)
from modelyard.resources import dask
from modelyard.resources.common import (
    TMP_MOUNT,
    Manifest,
    child_name,
    container_security_context,
    metadata,
    placement,
    pod_security_context,
    resources,
    storage_env,
    tmp_volume,
)

INGEST_COMPONENT = "ingest"
TRAIN_COMPONENT = "train"
INGEST_BACKOFF_LIMIT = 2
DETERMINISTIC_EXIT_CODES = (EXIT_USAGE, EXIT_OBJECTIVE_NOT_MET, EXIT_INVALID_DATA)
# Where the operator tells a workload to publish: it chooses every storage key.
OUTPUT_URI = "MODELYARD_OUTPUT_URI"
# The one Secret value an ingest pod gets for its source (sql: a URI, api: header lines).


@dataclass(frozen=True)
class Owner:
    """The custom resource a child belongs to."""

    kind: str
    name: str
    namespace: str
    uid: str


def ingest_job_name(dataset: str, uid: str, generation: int, refresh: str) -> str:
    """Changes with the spec (generation) and with the refresh annotation, and differs for a
    Dataset created again under the same name (uid): a new object never adopts an old Job."""
    return child_name(dataset, "ingest", unique=f"{uid}/{generation}/{refresh}")


def training_job_name(training_job: str, uid: str, run: str) -> str:
    return child_name(training_job, run, unique=uid)


def build_ingest_job(
    owner: Owner, spec: DatasetSpec, job_name: str, output_uri: str, config: OperatorConfig
) -> Manifest:
    """`output_uri`: the prefix the operator chose for the Dataset's versions."""
    env = [
        {"name": "MODELYARD_SPEC", "value": _spec_json(spec)},
        {"name": "MODELYARD_NAMESPACE", "value": owner.namespace},
        {"name": "MODELYARD_NAME", "value": owner.name},
        {"name": OUTPUT_URI, "value": output_uri},
        *_settings_env(
            {
                "MODELYARD_HTTP_ALLOWED_NETWORKS": ",".join(config.http_allowed_networks),
                "MODELYARD_HTTP_DENIED_NETWORKS": ",".join(config.http_denied_networks),
            }
        ),
        *storage_env(config, spec.storage),
        *source_secret_env(spec),
    ]
    return _job(
        owner,
        job_name,
        INGEST_COMPONENT,
        ["modelyard-worker", "ingest"],
        env,
        config.trainer_image,
        resources(None, config),
        INGEST_BACKOFF_LIMIT,
        config.ingest_deadline_seconds,
        config,
    )


def source_secret_env(spec: DatasetSpec) -> list[Manifest]:
    """The Secret key a sql or api source names, as SOURCE_SECRET_ENV: by reference, so its
    value never passes through the operator, and a missing Secret stops the pod from starting
    (CreateContainerConfigError, reported as a stall)."""
    source = spec.source
    ref = (
        source.sql.connection_secret_ref
        if source.sql is not None
        else source.api.headers_secret_ref
        if source.api is not None
        else None
    )
    if ref is None:
        return []
    return [
        {
            "name": SOURCE_SECRET_ENV,
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        }
    ]


def build_training_job(
    owner: Owner,
    spec: TrainingJobSpec,
    run: str,
    dataset_uri: str,
    dataset_version: str,
    dataset_storage: StorageSpec | None,
    output_uri: str,
    config: OperatorConfig,
) -> Manifest:
    """A run reads its Dataset's storage and writes the model beside it, at `output_uri` (the
    prefix the operator chose for this run)."""
    env: list[Manifest] = [
        {"name": "MODELYARD_SPEC", "value": _spec_json(spec)},
        {"name": "MODELYARD_NAMESPACE", "value": owner.namespace},
        {"name": "MODELYARD_NAME", "value": owner.name},
        {"name": "MODELYARD_UID", "value": owner.uid},
        {"name": "MODELYARD_RUN", "value": run},
        {"name": "MODELYARD_DATASET_URI", "value": dataset_uri},
        {"name": "MODELYARD_DATASET_VERSION", "value": dataset_version},
        {"name": OUTPUT_URI, "value": output_uri},
        {"name": "MODELYARD_MAX_SEARCH_TRIALS", "value": str(config.max_search_trials)},
        # The search runs one process per whole CPU of the container's limit (rounded up by
        # the kubelet; the node's allocatable CPUs when there is no limit).
        {
            "name": "MODELYARD_CPUS",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}},
        },
        *storage_env(config, dataset_storage),
    ]
    name = training_job_name(owner.name, owner.uid, run)
    cluster = cluster_name(name)
    if spec.workers is not None:
        env += dask.training_env(cluster, owner.namespace, spec.workers)
    job = _job(
        owner,
        name,
        TRAIN_COMPONENT,
        ["modelyard-worker", "train"],
        env,
        spec.image or config.trainer_image,
        resources(spec.resources, config),
        spec.backoff_limit,
        spec.active_deadline_seconds,
        config,
    )
    job["metadata"]["labels"]["modelyard.dev/run"] = run
    job["spec"]["template"]["metadata"]["labels"]["modelyard.dev/run"] = run
    if spec.workers is not None:
        pod_spec = job["spec"]["template"]["spec"]
        pod_spec["containers"][0]["volumeMounts"].append(dask.TLS_VOLUME_MOUNT)
        pod_spec["volumes"].append(dask.tls_volume(cluster))
        # A lost engine fails the run at once: the workload gives up only after the engine's
        # own retries, and a new pod would start the whole run again on the same cluster.
        job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"].append(
            EXIT_ENGINE_LOST
        )
    return job


def _settings_env(values: dict[str, str]) -> list[Manifest]:
    return [{"name": name, "value": value} for name, value in values.items() if value]


def _spec_json(spec: Any) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


def _job(
    owner: Owner,
    name: str,
    component: str,
    command: list[str],
    env: list[Manifest],
    image: str,
    container_resources: Manifest,
    backoff_limit: int,
    deadline: int | None,
    config: OperatorConfig,
) -> Manifest:
    meta = metadata(name, owner.namespace, owner.kind, owner.name, owner.uid, component)
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [
            {
                "name": component,
                "image": image,
                "imagePullPolicy": config.image_pull_policy,
                "command": command,
                "env": [*env, {"name": "HOME", "value": "/tmp"}],
                "resources": container_resources,
                "securityContext": container_security_context(),
                "volumeMounts": [TMP_MOUNT],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": [tmp_volume(config)],
    }
    pod_spec.update(placement(config))
    job_spec: Manifest = {
        "backoffLimit": backoff_limit,
        # Bad input, bad data and a missed objective fail the same way every time: no retries.
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"operator": "In", "values": list(DETERMINISTIC_EXIT_CODES)},
                }
            ]
        },
        "ttlSecondsAfterFinished": config.job_ttl_seconds,
        "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod_spec},
    }
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}
