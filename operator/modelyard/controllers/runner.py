"""Starts kopf with Modelyard's handlers and settings: watch timeouts, GitOps-safe bookkeeping,
peering, metrics. `kopf run -m modelyard.controllers.runner` loads exactly the same."""

from __future__ import annotations

import asyncio.sslproto
import functools
import time
from collections.abc import Sequence
from typing import Any

import kopf
from prometheus_client import start_http_server

from modelyard.config import OperatorConfig

# Importing the handler modules registers their handlers with kopf; nothing else names them
# (but managed_fields and object_memory, installed below).
from modelyard.controllers import (  # noqa: F401
    bookkeeping,
    children,
    dataset,
    engine,
    indexes,
    managed_fields,
    modeldeployment,
    object_memory,
    protection,
    trainingjob,
)
from modelyard.controllers.bookkeeping import (
    BOOKKEEPING,
    FINALIZER,
    StatusDerivedDiffBase,
    UnmarkedProgressStorage,
    generation_observed,
)
from modelyard.controllers.context import Context
from modelyard.controllers.kube import Kube

MANAGED = "app.kubernetes.io/managed-by=modelyard"

# A watch with no server-side timeout can go quiet forever on a dropped connection. kopf resumes
# an ended watch from its last resourceVersion (no re-list): reconnecting every few minutes is
# the only periodic work of an idle standalone operator.
WATCH_SERVER_TIMEOUT_SECONDS = 300
WATCH_CLIENT_TIMEOUT_SECONDS = 330
# An API server that went away (restart, network) is noticed within seconds, not minutes.
CONNECT_TIMEOUT_SECONDS = 10
LIST_CHUNK_SIZE = 200
REQUEST_TIMEOUT_SECONDS = 60
ERROR_BACKOFF_SECONDS = 10
# asyncio gives each TLS connection a 256 KiB read buffer for its whole life, and kopf's client
# opens a connection per concurrent request (its pool has no limit): 15 to 20 MiB of the peak at
# 2,000 + 2,000 objects. Two TLS records' worth reads the same bytes in more, smaller reads
# (operator-memory.md).
TLS_READ_BUFFER_BYTES = 32 * 1024
# A replica that died stops being a peer this long after its last keepalive (kopf renews it a few
# seconds before): the time a standby replica waits before it takes over.
PEERING_LIFETIME_SECONDS = 30
WORKER_IDLE_SECONDS = 0.5
WORKER_THREADS = 8

managed_fields.install()
object_memory.install()


def configure(settings: kopf.OperatorSettings) -> None:
    """Settings the operator runs with, in-cluster and in the integration tests alike."""
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_SECONDS
    settings.watching.connect_timeout = CONNECT_TIMEOUT_SECONDS
    # A (re)starting operator lists what exists page by page: thousands of Jobs and custom
    # resources never sit in memory as one response.
    settings.watching.chunk_size = LIST_CHUNK_SIZE
    settings.networking.connect_timeout = CONNECT_TIMEOUT_SECONDS
    settings.networking.request_timeout = REQUEST_TIMEOUT_SECONDS
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER_BYTES
    # An unexpected error (most often: the API server was unreachable) is retried in seconds, so
    # objects converge soon after the API server is back; kopf's default waits a minute.
    settings.execution.default_backoff = ERROR_BACKOFF_SECONDS
    # kopf's worker for an object waits this long for its next event before it exits, holding
    # the last one's body: kopf's 5 s kept thousands of them through a storm (operator-memory.md).
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    # Our CRDs exist before the operator starts (the chart installs them first), and the watched
    # namespaces are named, not patterns: no need to watch CRDs and namespaces. That watch needs
    # cluster-wide RBAC; a namespaced install without it spent a minute in kopf's retries at
    # every start.
    settings.scanning.disabled = True
    # Only our own children, filtered by the API server: other Jobs and Deployments in a busy
    # namespace cost neither memory nor CPU here.
    settings.watching.label_selectors["batch", "jobs"] = MANAGED
    settings.watching.label_selectors["apps", "deployments"] = MANAGED
    settings.watching.label_selectors["", "v1", "pods"] = MANAGED
    settings.watching.field_selectors["", "v1", "events"] = children.JOB_REFUSED_EVENTS
    # kopf's bookkeeping lives in our own annotations, never in spec: Argo CD compares only the
    # fields it applied, so these create no drift, and status stays ours alone. No kind needs a
    # last-handled configuration: its status says what was acted on.
    settings.persistence.progress_storage = UnmarkedProgressStorage(prefix=BOOKKEEPING)
    settings.persistence.diffbase_storage = StatusDerivedDiffBase(
        {
            "Dataset": dataset.handled,
            "TrainingJob": generation_observed,
            "ModelDeployment": generation_observed,
        }
    )
    settings.persistence.finalizer = FINALIZER
    settings.peering.name = "modelyard"
    settings.peering.mandatory = False
    # kopf pauses *every* peer when two share a priority, so replicas of one Deployment must not:
    # the newest wins (a rolling update hands over to the new code at once) and the others stand
    # by until it is gone. Microseconds since the epoch stay below 2**53 (exact in JSON).
    settings.peering.priority = time.time_ns() // 1000
    settings.peering.lifetime = PEERING_LIFETIME_SECONDS
    # Children are applied in worker threads; several objects reconcile at once.
    settings.execution.max_workers = WORKER_THREADS


@kopf.on.startup()
def _on_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    config = OperatorConfig.from_env()
    login = functools.partial(_controllers_login, settings)
    memo["context"] = Context(Kube(login, WORKER_THREADS), config)
    if config.metrics_port:
        start_http_server(config.metrics_port)


@kopf.on.login()
def _login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    return _credentials(settings)


def _credentials(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """In a pod, its service account; elsewhere $KUBECONFIG (or ~/.kube/config). kopf's watches
    and the controllers' own calls (kube.Kube) log in the same way."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(
        settings=settings
    ) or kopf.login_with_kubeconfig(settings=settings)
    return info


def _controllers_login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    info = _credentials(settings)
    if info is None:
        raise kopf.LoginError("no service account token and no kubeconfig to log in with")
    return info


def run(namespaces: Sequence[str], liveness_port: int, standalone: bool) -> None:
    """Run until stopped: all namespaces when none are given."""
    # Every line about an object names it ([namespace/name]), as `kopf run` does by default.
    kopf.configure(verbose=False, log_prefix=True)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz",
        standalone=standalone,
    )
