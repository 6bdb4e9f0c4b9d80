"""Create → child latency of the operator: N Datasets applied at once, time until each one's
ingest Job exists. Runs the operator in-process against the cluster in $KUBECONFIG (the
control-plane tier is enough: `make cluster-up CLUSTER_NODES=0`).

    export KUBECONFIG=~/.cache/modelyard/cluster/kubeconfig
    .venv/bin/python tests/bench/operator_latency.py --count 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from kopf.testing import KopfRunner
from kubernetes import client, config, watch

GROUP, VERSION = "modelyard.dev", "v1alpha1"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("MODELYARD_METRICS_PORT", "0")
    # Workload pods stay Pending: this measures the operator, not scheduling or images.
    os.environ.setdefault("MODELYARD_WORKLOAD_NODE_SELECTOR", "modelyard.dev/bench=none")
    config.load_kube_config()  # type: ignore[no-untyped-call]
    core, custom, batch = client.CoreV1Api(), client.CustomObjectsApi(), client.BatchV1Api()
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    created: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def watch_jobs() -> None:
        stream = watch.Watch()
        for event in stream.stream(batch.list_namespaced_job, namespace, timeout_seconds=600):
            owner = event["object"].metadata.labels.get("modelyard.dev/dataset")
            if owner and owner not in seen:
                seen[owner] = time.monotonic()
            if len(seen) >= args.count:
                break
        done.set()

    runner = KopfRunner(
        ["run", "--standalone", "--namespace", namespace, "-m", "modelyard.controllers.runner"],
        timeout=600,
    )
    try:
        with runner:
            time.sleep(3)  # kopf's watches are up
            threading.Thread(target=watch_jobs, daemon=True).start()
            time.sleep(1)

            def create(i: int) -> None:
                name = f"ds-{i}"
                body = {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Dataset",
                    "metadata": {"name": name},
                    "spec": {"source": {"builtin": {"name": "iris"}}},
                }
                created[name] = time.monotonic()
                custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "datasets", body)

            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(create, range(args.count)))
            applied = time.monotonic() - started
            done.wait(600)
            total = max(seen.values()) - started
    finally:
        core.delete_namespace(namespace)
    latencies = sorted(seen[name] - created[name] for name in seen)
    print(
        json.dumps(
            {
                "objects": args.count,
                "children": len(seen),
                "apply_seconds": round(applied, 2),
                "all_children_seconds": round(total, 2),
                "latency_p50_seconds": round(statistics.median(latencies), 3),
                "latency_p99_seconds": round(latencies[int(0.99 * (len(latencies) - 1))], 3),
                "latency_max_seconds": round(latencies[-1], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
