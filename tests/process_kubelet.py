"""A kubelet that runs a pod's workload for real, as a local process, on the control-plane tier.

It takes the pod the Job controller created, resolves its environment as a kubelet does (plain
values, Secret references read from the API server), runs the container's command
(`modelyard-worker …`) from this checkout with that environment, and reports the container's
end in the pod's status: exit code and termination message, cut at the kubelet's 4096 bytes.
So the operator, the workload and the S3 server all do what they would in a cluster; only
images and network namespaces are missing.
"""

from __future__ import annotations

import base64
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from kubernetes import client
from kubernetes.utils import parse_quantity

from tests.kubelet import pods, report_ended, wait_for

# What the kubelet keeps of a termination message (kubernetes/pkg/kubelet: 4096 bytes).
MESSAGE_LIMIT = 4096


def resolved_env(core: client.CoreV1Api, pod: client.V1Pod) -> dict[str, str]:
    """The container's environment as the kubelet would give it: Secret keys looked up, resource
    fields from the container's resources."""
    env: dict[str, str] = {}
    container = pod.spec.containers[0]
    for var in container.env or []:
        if var.value_from is None:
            env[var.name] = var.value or ""
            continue
        if var.value_from.resource_field_ref is not None:
            env[var.name] = _resource_field(container, var.value_from.resource_field_ref)
            continue
        reference = var.value_from.secret_key_ref
        secret = core.read_namespaced_secret(reference.name, pod.metadata.namespace)
        env[var.name] = base64.b64decode(secret.data[reference.key]).decode()
    return env


def _resource_field(container: client.V1Container, field: client.V1ResourceFieldSelector) -> str:
    """A resource's limit or request in units of its divisor, rounded up as the kubelet does; an
    unset limit is the node's capacity, here this machine's CPUs and memory."""
    kind, _, resource = field.resource.partition(".")
    declared = container.resources.limits if kind == "limits" else container.resources.requests
    quantity = (declared or {}).get(resource)
    if quantity is None:
        capacity = {
            "cpu": os.cpu_count() or 1,
            "memory": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
        }
        value = parse_quantity(capacity[resource])
    else:
        value = parse_quantity(quantity)
    return str(math.ceil(value / parse_quantity(field.divisor or "1")))


def run_pod(core: client.CoreV1Api, pod: client.V1Pod, timeout: float = 300) -> int:
    """Run the pod's workload to its end and report it; its exit code."""
    container = pod.spec.containers[0]
    command = list(container.command or [])
    assert command[:1] == ["modelyard-worker"], f"not a Modelyard workload: {command}"
    with tempfile.TemporaryDirectory(prefix="process-kubelet-") as scratch:
        log = Path(scratch) / "termination-log"
        env = {
            **resolved_env(core, pod),
            "HOME": scratch,
            "TMPDIR": scratch,
            "MODELYARD_TERMINATION_LOG": str(log),
            "PATH": "/usr/bin:/bin",
        }
        finished = subprocess.run(
            [sys.executable, "-m", "modelyard.workloads", *command[1:], *(container.args or [])],
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        message = log.read_bytes()[:MESSAGE_LIMIT].decode(errors="replace") if log.exists() else ""
    report_ended(core, pod, finished.returncode, message)
    return finished.returncode


def run_job(core: client.CoreV1Api, namespace: str, selector: str, timeout: float = 60) -> int:
    """Run the first pending pod matching `selector` (a Job's pod); its exit code."""
    pod = wait_for(
        f"a pod matching {selector}",
        lambda: next(
            (p for p in pods(core, namespace, selector) if p.status.phase == "Pending"), None
        ),
        timeout,
    )
    return run_pod(core, pod)
