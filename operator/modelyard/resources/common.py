"""What every child object shares: names, labels, owner references, hardened pod settings."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modelyard.api import API_VERSION
from modelyard.api.common import ResourceRequirements, StorageSpec
from modelyard.config import OperatorConfig

Manifest = dict[str, Any]

LABEL_PREFIX = "modelyard.dev"
PART_OF = {"app.kubernetes.io/part-of": "modelyard", "app.kubernetes.io/managed-by": "modelyard"}
# Pods run as this uid; images create it too, but the pod spec must not depend on that.
RUN_AS_USER = 65532
MAX_NAME = 63


def child_name(*parts: str, unique: str = "") -> str:
    """A deterministic DNS-1123 label from `parts`, with a short hash of `unique` when given.

    Retries and restarts compute the same name, so a child is never created twice.
    """
    suffix = f"-{hashlib.sha256(unique.encode()).hexdigest()[:8]}" if unique else ""
    base = "-".join(part for part in parts if part)
    room = MAX_NAME - len(suffix)
    if len(base) > room:
        base = base[: room - 9].rstrip("-") + "-" + hashlib.sha256(base.encode()).hexdigest()[:8]
    return (base + suffix).strip("-")


def labels(kind: str, owner: str, component: str) -> dict[str, str]:
    return {
        **PART_OF,
        "app.kubernetes.io/name": "modelyard",
        "app.kubernetes.io/component": component,
        f"{LABEL_PREFIX}/{kind.lower()}": owner,
    }


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    name: str, namespace: str, kind: str, owner: str, owner_uid: str, component: str
) -> Manifest:
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels(kind, owner, component),
        "ownerReferences": [owner_reference(kind, owner, owner_uid)],
    }


def pod_security_context() -> Manifest:
    """Passes the `restricted` Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}
# A serving pod's wait before its stop signal: endpoints drop a terminating pod a moment after
# the signal would reach it, so no request is sent to a process that stopped accepting.
PRE_STOP_WAIT = {"preStop": {"sleep": {"seconds": 3}}}
EPHEMERAL_STORAGE_REQUEST = "256Mi"


def tmp_volume(config: OperatorConfig) -> Manifest:
    """The only writable place in a workload's file system, bounded: past its size the kubelet
    evicts the pod instead of letting it fill the node's disk."""
    return {"name": "tmp", "emptyDir": {"sizeLimit": config.workload_tmp_size}}


def resources(spec: ResourceRequirements | None, config: OperatorConfig) -> Manifest:
    """The spec's requests/limits, or the operator defaults for what it leaves out. CPU and
    scratch space are limited too: one object must not take every core or the node's disk."""
    requests: dict[str, Any] = {
        "cpu": config.workload_cpu_request,
        "memory": config.workload_memory_request,
        # Without it, the request would default to the limit and every pod would reserve
        # the whole scratch size on its node.
        "ephemeral-storage": EPHEMERAL_STORAGE_REQUEST,
    }
    limits: dict[str, Any] = {
        "cpu": config.workload_cpu_limit,
        "memory": config.workload_memory_limit,
        "ephemeral-storage": config.workload_tmp_size,
    }
    if spec is not None:
        requests.update(spec.requests or {})
        limits.update(spec.limits or {})
    return {"requests": requests, "limits": limits}


def storage_env(
    config: OperatorConfig, override: StorageSpec | None = None, serving: bool = False
) -> list[Manifest]:
    """Where the workload finds S3, with credentials only as a Secret reference. Model servers
    (`serving`) get the read-only serving credentials when the operator has them."""
    endpoint = (override.endpoint if override else None) or config.s3_endpoint
    values = {
        "MODELYARD_S3_ENDPOINT": endpoint,
        "MODELYARD_S3_BUCKET": (override.bucket if override else None) or config.s3_bucket,
        "MODELYARD_S3_PREFIX": (override.prefix if override else None) or config.s3_prefix,
        "AWS_REGION": (override.region if override else None) or config.s3_region,
    }
    env: list[Manifest] = [
        {"name": name, "value": value} for name, value in values.items() if value
    ]
    default_secret = (
        config.s3_serving_credentials_secret or config.s3_credentials_secret
        if serving
        else config.s3_credentials_secret
    )
    secret = (
        override.credentials_secret_ref.name
        if override and override.credentials_secret_ref
        else default_secret
    )
    if secret:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    return env


def placement(config: OperatorConfig) -> Manifest:
    """Pod spec fields for image pulls and node placement that every workload shares."""
    fields: Manifest = {}
    if config.image_pull_secrets:
        fields["imagePullSecrets"] = [{"name": name} for name in config.image_pull_secrets]
    if config.workload_node_selector:
        fields["nodeSelector"] = dict(config.workload_node_selector)
    if config.workload_tolerations:
        fields["tolerations"] = json.loads(config.workload_tolerations)
    if config.workload_affinity:
        fields["affinity"] = json.loads(config.workload_affinity)
    return fields
