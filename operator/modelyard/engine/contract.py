"""What a run on workers agrees on between the operator (which builds the DaskCluster and the
training Job) and the workloads (the Dask client in the training pod, the scheduler and workers).

Every pod of the run, client included, gets the same Dask configuration through `tls_env`: Dask
reads `DASK_*` variables as its configuration, so `distributed.Client(address)` and the `dask
scheduler` / `dask worker` commands all use mutual TLS without a flag of their own.
"""

from __future__ import annotations

import hashlib
from typing import Any

SCHEDULER_PORT = 8786
# Each engine pod's HTTP server, where its readiness probe asks /health. It serves nothing else
# (HEALTH_ONLY_ENV): no dashboard, no metrics, no API that could retire workers.
HEALTH_PORT = 8787
HEALTH_PATH = "/health"
HEALTH_ONLY_ENV = [
    {"name": "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES", "value": '["distributed.http.health"]'},
    {"name": "DASK_DISTRIBUTED__WORKER__HTTP__ROUTES", "value": '["distributed.http.health"]'},
]

# The training pod's environment.
SCHEDULER_ENV = "MODELYARD_DASK_SCHEDULER"  # tls://<cluster>-scheduler.<namespace>.svc:8786
WORKERS_ENV = "MODELYARD_DASK_WORKERS"  # how many workers the run waits for

# The Secret the operator makes for each run: a CA of the run's own (its key is thrown away) and
# one certificate it signed, shared by the scheduler, the workers and the client.
TLS_MOUNT = "/etc/modelyard/dask-tls"
TLS_VOLUME = "dask-tls"
CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"

# A line the training pod prints while its search runs; the operator reads the latest one from
# the pod's log into status.runs[].progress (display only, never a result).
PROGRESS_KEY = "modelyard.progress"


# The dask operator refuses a longer DaskCluster name: "<cluster>-scheduler" names a Service
# (a DNS label, at most 63 characters).
MAX_CLUSTER_NAME = 53


def cluster_name(training_job_child: str) -> str:
    """The DaskCluster of a run is named after the run's training Job, shortened with a hash of
    the whole name when that is too long for the dask operator."""
    if len(training_job_child) <= MAX_CLUSTER_NAME:
        return training_job_child
    digest = hashlib.sha256(training_job_child.encode()).hexdigest()[:8]
    return f"{training_job_child[: MAX_CLUSTER_NAME - 9].rstrip('-')}-{digest}"


def scheduler_address(cluster: str, namespace: str) -> str:
    """The dask operator names the scheduler's Service `<cluster>-scheduler`."""
    return f"tls://{cluster}-scheduler.{namespace}.svc:{SCHEDULER_PORT}"


def tls_env() -> list[dict[str, Any]]:
    """Dask configuration for every pod of a run: encryption required, peers checked against
    the run's CA, the one certificate presented in every role."""
    cert, key = f"{TLS_MOUNT}/{CERT_FILE}", f"{TLS_MOUNT}/{KEY_FILE}"
    values = {
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        "DASK_DISTRIBUTED__COMM__DEFAULT_SCHEME": "tls",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": f"{TLS_MOUNT}/{CA_FILE}",
        "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__CERT": cert,
        "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__KEY": key,
        "DASK_DISTRIBUTED__COMM__TLS__WORKER__CERT": cert,
        "DASK_DISTRIBUTED__COMM__TLS__WORKER__KEY": key,
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": cert,
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": key,
    }
    return [{"name": name, "value": value} for name, value in values.items()]
