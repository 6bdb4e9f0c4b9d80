"""Where the operator's memory goes: `python -m tests.bench.operator.memory [--count N]` runs the
handlers in-process under tracemalloc on a private control plane, applies N Datasets and N
TrainingJobs, waits for their ingest Jobs and prints the allocations still alive, by line."""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
import uuid

from kopf.testing import KopfRunner
from kubernetes import client, config

from tests.bench.operator import procstat, workload
from tests.bench.operator.__main__ import CACHE, _private_plane, _wait_default_account
from tests.chaos import objects
from tests.plugins.operator import TEST_ENV, apply_crds, modelyard_crds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.operator.memory")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:6]
    with _private_plane(CACHE / f"plane-{suffix}") as kubeconfig:
        os.environ.update({**TEST_ENV, "KUBECONFIG": str(kubeconfig)})
        api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        apply_crds(config.new_client_from_config(config_file=str(kubeconfig)), modelyard_crds())  # type: ignore[no-untyped-call]
        namespace = f"memory-{suffix}"
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        _wait_default_account(core, namespace)
        tracemalloc.start(1)
        runner = KopfRunner(
            ["run", "--standalone", "--namespace", namespace, "-m", "modelyard.controllers.runner"],
            timeout=900,
        )
        with runner:
            watcher = workload.JobWatch(api, namespace)
            time.sleep(3)
            baseline = tracemalloc.take_snapshot()
            bodies = []
            for i in range(args.count):
                bodies += [objects.dataset(f"ds-{i}"), objects.training_job(f"tj-{i}", f"ds-{i}")]
            workload.create_all(api, namespace, bodies)
            watcher.wait([f"modelyard.dev/dataset/ds-{i}" for i in range(args.count)], 900)
            time.sleep(10)  # settled: what is still allocated is what the objects cost
            snapshot = tracemalloc.take_snapshot()
            _, peak = tracemalloc.get_traced_memory()
    stats = snapshot.compare_to(baseline, "lineno")
    grown = sum(stat.size_diff for stat in stats)
    print(
        f"{2 * args.count} objects + {args.count} Jobs: {grown / 2**20:.1f} MiB still allocated, "
        f"{grown / (3 * args.count) / 1024:.1f} KiB per watched object; "
        f"traced peak {peak / 2**20:.1f} MiB"
    )
    print(f"process peak RSS (VmHWM) {procstat.memory_kib(os.getpid())['VmHWM'] / 1024:.0f} MiB")
    for stat in stats[: args.top]:
        print(f"{stat.size_diff / 2**20:7.2f} MiB  {stat.count_diff:8d} blocks  {stat.traceback}")


if __name__ == "__main__":
    main()
