"""What serves a ModelDeployment: a Deployment per track (main, canary), one Service over both,
an HPA when autoscaling, a PodDisruptionBudget when more than one replica serves."""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelyard.api.common import StorageSpec
from modelyard.api.modeldeployment import Autoscaling, ModelDeploymentSpec
from modelyard.config import OperatorConfig
from modelyard.monitoring import token
from modelyard.resources.common import (
    PRE_STOP_WAIT,
    TMP_MOUNT,
    Manifest,
    child_name,
    container_security_context,
    labels,
    metadata,
    placement,
    pod_security_context,
    resources,
    storage_env,
    tmp_volume,
)
from modelyard.resources.jobs import Owner
from modelyard.workloads.serving.config import DEFAULT_DRIFT_WINDOW, DEFAULT_FEEDBACK_WINDOW

KIND = "ModelDeployment"
COMPONENT = "server"
PORT = 8080
# Each server process answers the operator's monitoring on its own port: MONITOR_PORT + worker
# index, declared as containerPorts named MONITOR_PORT_PREFIX + index, by which the operator
# finds them.
MONITOR_PORT = 9090
MONITOR_PORT_PREFIX = "monitor-"
SERVICE_PORT = 80
TRACK_LABEL = "modelyard.dev/track"
MAIN, CANARY = "main", "canary"
DRAIN_SECONDS = 10  # the server drains in-flight requests this long on SIGTERM


@dataclass(frozen=True)
class ModelRef:
    uri: str
    digest: str
    card_digest: str | None
    # The storage of the Dataset the model was trained on: its model lives beside it.
    storage: StorageSpec | None = None


def deployment_name(owner: str, track: str) -> str:
    return child_name(owner) if track == MAIN else child_name(owner, CANARY)


def service_name(owner: str) -> str:
    return child_name(owner)


def service_url(owner: str, namespace: str) -> str:
    return f"http://{service_name(owner)}.{namespace}.svc.cluster.local"


def split_replicas(total: int, canary_percent: int | None) -> tuple[int, int]:
    """Main and canary replicas in proportion to `canary_percent`.

    The split is as precise as one replica in `total`: 50 % of 2 is 1 + 1, 10 % of 4 rounds to
    0 — but a canary with a non-zero share always gets at least one replica, and the main track
    keeps at least one while its share is non-zero.
    """
    if not canary_percent:
        return total, 0
    if canary_percent >= 100:
        return 0, max(total, 1)
    canary = max(1, round(total * canary_percent / 100))
    main = max(1, total - canary)
    return main, canary


def build_deployment(
    owner: Owner,
    spec: ModelDeploymentSpec,
    track: str,
    model: ModelRef,
    replicas: int | None,
    config: OperatorConfig,
) -> Manifest:
    """`replicas` None leaves the count to the HPA."""
    name = deployment_name(owner.name, track)
    meta = metadata(name, owner.namespace, KIND, owner.name, owner.uid, COMPONENT)
    meta["labels"][TRACK_LABEL] = track
    selector = {**selector_labels(owner.name), TRACK_LABEL: track}
    pod_labels = {**meta["labels"]}
    env = [
        {"name": "MODELYARD_MODEL_URI", "value": model.uri},
        {"name": "MODELYARD_MODEL_DIGEST", "value": model.digest},
        *(
            [{"name": "MODELYARD_MODEL_CARD_DIGEST", "value": model.card_digest}]
            if model.card_digest
            else []
        ),
        {"name": "MODELYARD_MODEL_NAME", "value": owner.name},
        {"name": "MODELYARD_PORT", "value": str(PORT)},
        {"name": "MODELYARD_MONITOR_PORT", "value": str(MONITOR_PORT)},
        # Derived from the owner's uid, so the operator recomputes it to ask these servers.
        {"name": token.ENV, "value": token.for_deployment(owner.uid)},
        *window_env(spec),
        *batching_env(spec),
        *(
            [{"name": "MODELYARD_WORKERS", "value": str(config.server_workers)}]
            if config.server_workers > 1
            else []
        ),
        {"name": "HOME", "value": "/tmp"},
        *storage_env(config, model.storage, serving=True),
    ]
    pod_spec: Manifest = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": DRAIN_SECONDS + 20,
        "containers": [
            {
                "name": COMPONENT,
                "image": spec.image or config.server_image,
                "imagePullPolicy": config.image_pull_policy,
                "command": ["modelyard-worker", "serve"],
                "env": env,
                "ports": [
                    {"name": "http", "containerPort": PORT, "protocol": "TCP"},
                    *monitor_ports(config.server_workers),
                ],
                # Every second: a new pod serves within a second of its model loading (the
                # kubelet waits a whole period between tries), and a probe is a few µs of work.
                "readinessProbe": {
                    "httpGet": {"path": "/v2/health/ready", "port": "http"},
                    "periodSeconds": 1,
                    "failureThreshold": 2,
                },
                # No startup probe: the server answers /live while its model loads, so liveness
                # needs no grace, and a startup probe would only hold readiness probing back
                # until the kubelet has seen it pass (a period more before the pod serves).
                "livenessProbe": {
                    "httpGet": {"path": "/v2/health/live", "port": "http"},
                    "periodSeconds": 10,
                    "failureThreshold": 3,
                },
                "lifecycle": PRE_STOP_WAIT,
                "resources": resources(spec.resources, config),
                "securityContext": container_security_context(),
                "volumeMounts": [TMP_MOUNT],
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": [tmp_volume(config)],
    }
    pod_spec.update(placement(config))
    deployment_spec: Manifest = {
        "selector": {"matchLabels": selector},
        # Zero downtime: a new pod must be ready before an old one goes.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "minReadySeconds": 1,
        "revisionHistoryLimit": 3,
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {"modelyard.dev/model-digest": model.digest},
            },
            "spec": pod_spec,
        },
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": deployment_spec,
    }


def window_env(spec: ModelDeploymentSpec) -> list[Manifest]:
    """Windows large enough for what spec.monitoring judges from: each process keeps at least
    minRows input rows and minLabels labelled rows, or a single-process deployment would never
    reach them and its condition would stay Unknown. Only when monitoring is set, so that the
    template of a deployment without it stays as it was."""
    monitoring = spec.monitoring
    env: list[Manifest] = []
    if monitoring is not None and monitoring.drift is not None:
        rows = max(DEFAULT_DRIFT_WINDOW, monitoring.drift.min_rows)
        env.append({"name": "MODELYARD_DRIFT_WINDOW", "value": str(rows)})
    if monitoring is not None and monitoring.quality is not None:
        labels = max(DEFAULT_FEEDBACK_WINDOW, monitoring.quality.min_labels)
        env.append({"name": "MODELYARD_FEEDBACK_WINDOW", "value": str(labels)})
    return env


def batching_env(spec: ModelDeploymentSpec) -> list[Manifest]:
    """Only when spec.batching is set: the server's defaults are the API's, and the template
    of a deployment without it stays as it was."""
    if spec.batching is None:
        return []
    return [
        {"name": "MODELYARD_BATCH_ROWS", "value": str(spec.batching.max_rows)},
        {"name": "MODELYARD_BATCH_WAIT_MS", "value": str(spec.batching.max_wait_milliseconds)},
    ]


def monitor_ports(workers: int) -> list[Manifest]:
    """The containerPorts of the server processes' monitoring ports, one per worker."""
    return [
        {
            "name": f"{MONITOR_PORT_PREFIX}{worker}",
            "containerPort": MONITOR_PORT + worker,
            "protocol": "TCP",
        }
        for worker in range(workers)
    ]


def build_service(owner: Owner, track: str = MAIN, name: str | None = None) -> Manifest:
    """A Service in front of one `track`'s pods. Without `name`, the model's Service (its URL):
    the main track's pods, the canary's when it takes all traffic, or the weighted router's
    while a canary takes a share."""
    meta = metadata(
        name or service_name(owner.name), owner.namespace, KIND, owner.name, owner.uid, COMPONENT
    )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": {**selector_labels(owner.name), TRACK_LABEL: track},
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def build_hpa(
    owner: Owner, autoscaling: Autoscaling, track: str = MAIN, share: int = 100
) -> Manifest:
    """An autoscaler for one track: the canary's scales on its own, up to its `share` (percent)
    of the main track's maximum, since its traffic share is fixed by weight."""
    name = deployment_name(owner.name, track)
    meta = metadata(name, owner.namespace, KIND, owner.name, owner.uid, COMPONENT)
    minimum = autoscaling.min_replicas if track == MAIN else 1
    maximum = max(minimum, math.ceil(autoscaling.max_replicas * share / 100))
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": name,
            },
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def build_pdb(owner: Owner) -> Manifest:
    """At most one server pod down at a time for voluntary disruptions (drains)."""
    meta = metadata(child_name(owner.name), owner.namespace, KIND, owner.name, owner.uid, COMPONENT)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner.name)}},
    }


def selector_labels(owner: str) -> dict[str, str]:
    """The labels every pod serving `owner` carries, whatever its track (router included)."""
    all_labels = labels(KIND, owner, COMPONENT)
    return {
        key: all_labels[key]
        for key in ("app.kubernetes.io/component", "modelyard.dev/modeldeployment")
    }
