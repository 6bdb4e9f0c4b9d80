"""What each kind of request in the storm costs the control plane, with no operator running:
`python -m tests.bench.operator.requests [--count N]`.

On a private control plane it makes N of each request the 500 + 500 storm is made of, from the
benchmark's client threads, and prints the CPU the API server, etcd and the Job controller spent
per request. The plain loop's Jobs are counted with the pods the Job controller makes for them,
as in the storm. Nothing watches but the controller manager, so watch fan-out is not in these
figures; the storm's own split is in operator.md."""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from kubernetes import client, config

from modelyard.api import GROUP, VERSION
from modelyard.controllers.kube import Kube
from tests.bench.operator import procstat, workload
from tests.bench.operator.__main__ import CACHE, _private_plane, _quiet, _wait_default_account
from tests.chaos import objects
from tests.plugins.kube import credentials
from tests.plugins.operator import apply_crds, modelyard_crds

# What the operator writes when an ingestion starts: four conditions, the Job's name and uid.
INGESTING = {
    "status": {
        "phase": "Ingesting",
        "ingestJob": "ingest-ds",
        "ingestJobUid": "00000000-0000-0000-0000-000000000000",
        "observedGeneration": 1,
        "lastRefreshTime": "2026-01-01T00:00:00Z",
        "conditions": [
            {
                "type": kind,
                "status": status,
                "reason": "Ingesting",
                "message": "ingest Job ingest-ds is running",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
            for kind, status in (
                ("Ready", "False"),
                ("Reconciling", "True"),
                ("Stalled", "False"),
                ("Ingested", "Unknown"),
            )
        ],
    }
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.operator.requests")
    parser.add_argument("--count", type=int, default=500)
    count = parser.parse_args().count
    suffix = uuid.uuid4().hex[:6]
    with _private_plane(CACHE / f"plane-{suffix}") as plane:
        pids = {name: process.pid for name, process in plane.processes.items()}
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        api.configuration.connection_pool_maxsize = 2 * workload.THREADS
        apply_crds(
            config.new_client_from_config(config_file=str(plane.kubeconfig)),  # type: ignore[no-untyped-call]
            modelyard_crds(),
        )
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        namespace = f"requests-{suffix}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        _wait_default_account(core, namespace)
        names = [f"ds-{i}" for i in range(count)]

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "datasets", objects.dataset(name)
            )

        def patch_status(name: str) -> None:
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "datasets", name, INGESTING
            )

        def patch_label(name: str) -> None:
            body = {"metadata": {"labels": {"bench": "patched"}}}
            custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "datasets", name, body)

        def get(name: str) -> None:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "datasets", name)

        def event(name: str) -> None:
            core.create_namespaced_event(namespace, _event(namespace, name))

        kube = Kube(partial(credentials, plane.kubeconfig), 1)

        def loop(_: list[str]) -> None:
            workload.baseline(kube, namespace, "loop", count, threads=1)

        print(f"| request ({count} of each) | seconds | API server | etcd | Job controller |")
        print("| --- | --- | --- | --- | --- |")
        rows: list[tuple[str, Callable[[list[str]], None]]] = [
            ("Dataset create (8 threads)", partial(workload.run_threaded, create)),
            ("Dataset status patch (8 threads)", partial(workload.run_threaded, patch_status)),
            ("Dataset label patch (8 threads)", partial(workload.run_threaded, patch_label)),
            ("Dataset GET (8 threads)", partial(workload.run_threaded, get)),
            ("Event create (8 threads)", partial(workload.run_threaded, event)),
            ("Job create, the plain loop (its pods included)", loop),
        ]
        for label, run in rows:
            print(_measure(label, run, names, pids), flush=True)


def _measure(
    label: str, run: Callable[[list[str]], None], names: list[str], pids: dict[str, int]
) -> str:
    """One table row: wall seconds, and each process's CPU milliseconds per request, counted
    until the control plane is quiet again (the Job controller's pods come after the loop),
    less what the same processes use at rest over as long."""
    _quiet(pids, window=2, busy=0.1)
    rest_before = procstat.cpu_by_process(pids)
    time.sleep(2)
    before = procstat.cpu_by_process(pids)
    rest = {name: (before[name] - rest_before[name]) / 2 for name in pids}
    started = time.monotonic()
    run(names)
    seconds = time.monotonic() - started
    _quiet(pids, window=2, busy=0.1)
    after, elapsed = procstat.cpu_by_process(pids), time.monotonic() - started
    per = {
        name: max(0.0, 1000 * (after[name] - before[name] - rest[name] * elapsed) / len(names))
        for name in pids
    }
    return (
        f"| {label} | {seconds:.1f} | {per['kube-apiserver']:.1f} ms | {per['etcd']:.1f} ms | "
        f"{per['kube-controller-manager']:.1f} ms |"
    )


def _event(namespace: str, name: str) -> dict[str, Any]:
    """An Event as kopf posts one about a Dataset."""
    return {
        "metadata": {"generateName": f"{name}."},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Dataset",
            "name": name,
            "namespace": namespace,
        },
        "reason": "IngestStarted",
        "message": f"started ingest Job ingest-{name}",
        "type": "Normal",
        "source": {"component": "kopf"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
    }


if __name__ == "__main__":
    main()
