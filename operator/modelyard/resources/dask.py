"""A run's Dask cluster: the DaskCluster the dask-kubernetes operator turns into a scheduler and
workers, and the Secret with the run's TLS material that every pod of the run mounts.

The dask operator copies the DaskCluster's labels onto the Deployments, Service and pods it
makes, and owns them through the DaskCluster: deleting the DaskCluster (at the end of the run, or
by garbage collection when the TrainingJob goes) removes all of them, and the Secret with them.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from modelyard.api.common import ResourceRequirements
from modelyard.api.trainingjob import WorkersSpec
from modelyard.config import OperatorConfig
from modelyard.engine import contract
from modelyard.engine.tls import RunCertificates
from modelyard.resources.common import (
    TMP_MOUNT,
    Manifest,
    container_security_context,
    labels,
    owner_reference,
    placement,
    pod_security_context,
    resources,
    tmp_volume,
)

if TYPE_CHECKING:  # jobs.py builds the training Job with this module's help
    from modelyard.resources.jobs import Owner

API_VERSION = "kubernetes.dask.org/v1"
KIND = "DaskCluster"
COMPONENT = "engine"
RUN_LABEL = "modelyard.dev/run"
# Labels the dask operator puts on what it makes.
CLUSTER_LABEL = "dask.org/cluster-name"
DASK_COMPONENT_LABEL = "dask.org/component"
HEALTH_PORT_NAME = "http-health"
# The dask operator looks the scheduler's port up by this name.
COMM_PORT_NAME = "tcp-comm"
LOCAL_DIRECTORY = "/tmp/dask"
# A data-parallel fit holds every part its worker computed until LightGBM is done with them:
# spilling parts to disk, Dask's default past 70 % of the memory limit, frees nothing then,
# costs the writes, and fails on the LightGBM sockets among the worker's data.
NO_SPILL_ENV = [
    {"name": "DASK_DISTRIBUTED__WORKER__MEMORY__TARGET", "value": "False"},
    {"name": "DASK_DISTRIBUTED__WORKER__MEMORY__SPILL", "value": "False"},
]
# Environment of a worker container that its command reads ($(VAR) is expanded by the kubelet).
CPUS_ENV = "MODELYARD_CPUS"
MEMORY_ENV = "MODELYARD_MEMORY_LIMIT"
WORKER_NAME_ENV = "DASK_WORKER_NAME"  # set by the dask operator: the worker's Deployment name


def tls_secret_name(cluster: str) -> str:
    # A cluster name is a Job name (at most 63 characters); a Secret name may be 253.
    return f"{cluster}-tls"


def engine_labels(owner: Owner, run: str) -> dict[str, str]:
    return {**labels(owner.kind, owner.name, COMPONENT), RUN_LABEL: run}


def build_tls_secret(
    owner: Owner, cluster: str, cluster_uid: str, run: str, certificates: RunCertificates
) -> Manifest:
    """Owned by the DaskCluster (`cluster_uid`): it goes when the run's cluster goes, and with
    it when the TrainingJob goes, with no delete right on Secrets for the operator."""
    data = {
        contract.CA_FILE: certificates.ca_pem,
        contract.CERT_FILE: certificates.cert_pem,
        contract.KEY_FILE: certificates.key_pem,
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": tls_secret_name(cluster),
            "namespace": owner.namespace,
            "labels": engine_labels(owner, run),
            # Not a controller reference, and not blocking the DaskCluster's deletion (which
            # would need the right to set finalizers on DaskClusters).
            "ownerReferences": [
                {"apiVersion": API_VERSION, "kind": KIND, "name": cluster, "uid": cluster_uid}
            ],
        },
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def tls_volume(cluster: str) -> Manifest:
    # Readable by the pod's group (fsGroup), not by the world.
    return {
        "name": contract.TLS_VOLUME,
        "secret": {"secretName": tls_secret_name(cluster), "defaultMode": 0o440},
    }


TLS_VOLUME_MOUNT = {"name": contract.TLS_VOLUME, "mountPath": contract.TLS_MOUNT, "readOnly": True}


def build_dask_cluster(
    owner: Owner,
    cluster: str,
    run: str,
    workers: WorkersSpec,
    image: str,
    storage: list[Manifest],
    config: OperatorConfig,
    scheduler_resources: ResourceRequirements | None = None,
) -> Manifest:
    """`cluster`: contract.cluster_name of the run's training Job; `image`: the one that Job
    runs; `storage`: the S3 environment of that Job (workers read the snapshot's row groups);
    `scheduler_resources`: the training container's (spec.resources): in a search the scheduler
    holds the same data as the training pod, the training split, in the task graph."""
    address = contract.scheduler_address(cluster, owner.namespace)
    scheduler = _container(
        "scheduler",
        image,
        [
            "dask",
            "scheduler",
            "--protocol",
            "tls",
            "--port",
            str(contract.SCHEDULER_PORT),
            # Plain HTTP without authentication, so it answers /health and nothing else.
            "--dashboard-address",
            f"0.0.0.0:{contract.HEALTH_PORT}",
        ],
        [*contract.tls_env(), *contract.HEALTH_ONLY_ENV],
        resources(scheduler_resources, config),
        config,
    )
    scheduler["ports"] = [
        {"name": COMM_PORT_NAME, "containerPort": contract.SCHEDULER_PORT, "protocol": "TCP"},
        _health_port(),
    ]
    scheduler["readinessProbe"] = _health_probe()
    worker = _container(
        "worker",
        image,
        [
            "dask",
            "worker",
            address,
            "--nthreads",
            f"$({CPUS_ENV})",
            "--memory-limit",
            f"$({MEMORY_ENV})",
            "--local-directory",
            LOCAL_DIRECTORY,
            "--name",
            f"$({WORKER_NAME_ENV})",
            "--dashboard-address",
            f"0.0.0.0:{contract.HEALTH_PORT}",
        ],
        [
            *contract.tls_env(),
            *contract.HEALTH_ONLY_ENV,
            {"name": "DASK_SCHEDULER_ADDRESS", "value": address},
            # The kubelet rounds the CPU limit up to whole cores (at least one) and gives the
            # memory limit in bytes: a worker uses what its container may, no more.
            {
                "name": CPUS_ENV,
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}},
            },
            {
                "name": MEMORY_ENV,
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1"}},
            },
            *storage,
            *(NO_SPILL_ENV if workers.data_parallel else []),
        ],
        resources(workers.resources, config),
        config,
    )
    # Ready once the worker process serves (it registers with the scheduler as it starts), so
    # status.runs[].progress.workersReady does not count a worker that is still starting. Not a
    # TCP probe of the Dask port: every probe would log a failed TLS handshake.
    worker["ports"] = [_health_port()]
    worker["readinessProbe"] = _health_probe()
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": cluster,
            "namespace": owner.namespace,
            "labels": engine_labels(owner, run),
            "ownerReferences": [owner_reference(owner.kind, owner.name, owner.uid)],
        },
        "spec": {
            "scheduler": {
                "spec": _pod_spec(cluster, scheduler, config),
                "service": {
                    "type": "ClusterIP",
                    "selector": {CLUSTER_LABEL: cluster, DASK_COMPONENT_LABEL: "scheduler"},
                    "ports": [
                        {
                            "name": COMM_PORT_NAME,
                            "protocol": "TCP",
                            "port": contract.SCHEDULER_PORT,
                            "targetPort": COMM_PORT_NAME,
                        }
                    ],
                },
            },
            "worker": {"replicas": workers.replicas, "spec": _pod_spec(cluster, worker, config)},
        },
    }


def training_env(cluster: str, namespace: str, workers: WorkersSpec) -> list[Manifest]:
    """What the run's training pod needs to use the cluster as a client."""
    return [
        {"name": contract.SCHEDULER_ENV, "value": contract.scheduler_address(cluster, namespace)},
        {"name": contract.WORKERS_ENV, "value": str(workers.replicas)},
        *contract.tls_env(),
    ]


def _health_port() -> Manifest:
    return {"name": HEALTH_PORT_NAME, "containerPort": contract.HEALTH_PORT, "protocol": "TCP"}


def _health_probe() -> Manifest:
    return {
        "httpGet": {"path": contract.HEALTH_PATH, "port": HEALTH_PORT_NAME},
        "periodSeconds": 5,
    }


def _container(
    name: str,
    image: str,
    command: list[str],
    env: list[Manifest],
    container_resources: Manifest,
    config: OperatorConfig,
) -> Manifest:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "command": command,
        "env": [*env, {"name": "HOME", "value": "/tmp"}],
        # The DaskCluster's schema types every quantity as a string.
        "resources": {
            key: {resource: str(value) for resource, value in values.items()}
            for key, values in container_resources.items()
        },
        "securityContext": container_security_context(),
        "volumeMounts": [TMP_MOUNT, TLS_VOLUME_MOUNT],
    }


def _pod_spec(cluster: str, container: Manifest, config: OperatorConfig) -> Manifest:
    spec: Manifest = {
        "automountServiceAccountToken": False,
        # Nothing of the namespace's other Services in the environment.
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [tmp_volume(config), tls_volume(cluster)],
    }
    spec.update(placement(config))
    return spec
