"""Where the operator's memory goes: `python -m tests.bench.operator.memory [--count N]` runs the
handlers in-process under tracemalloc on a private control plane, applies N Datasets and N
TrainingJobs, waits for their ingest Jobs and prints the allocations still alive, by line."""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
import uuid
from pathlib import Path

from kopf.testing import KopfRunner
from kubernetes import client, config

from tests.bench.operator import procstat, workload
from tests.bench.operator.__main__ import CACHE, _private_plane, _settle, _wait_default_account
from tests.chaos import objects
from tests.plugins.operator import TEST_ENV, apply_crds, modelyard_crds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.operator.memory")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--frames", type=int, default=1, help="stack depth of each allocation")
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:6]
    with _private_plane(CACHE / f"plane-{suffix}") as plane:
        kubeconfig = plane.kubeconfig
        os.environ.update({**TEST_ENV, "KUBECONFIG": str(kubeconfig)})
        api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        apply_crds(config.new_client_from_config(config_file=str(kubeconfig)), modelyard_crds())  # type: ignore[no-untyped-call]
        namespace = f"memory-{suffix}"
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        _wait_default_account(core, namespace)
        tracemalloc.start(args.frames)
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
            _settle(os.getpid())  # what is still allocated now is what the objects cost
            snapshot = tracemalloc.take_snapshot()
            _, peak = tracemalloc.get_traced_memory()
    stats = snapshot.compare_to(baseline, "lineno" if args.frames == 1 else "traceback")
    grown = sum(stat.size_diff for stat in stats)
    print(
        f"{2 * args.count} objects + {args.count} Jobs: {grown / 2**20:.1f} MiB still allocated, "
        f"{grown / (3 * args.count) / 1024:.1f} KiB per watched object; "
        f"traced peak {peak / 2**20:.1f} MiB"
    )
    print(f"process peak RSS (VmHWM) {procstat.memory_kib(os.getpid())['VmHWM'] / 1024:.0f} MiB")
    for stat in stats[: args.top]:
        where = " < ".join(
            f"{Path(frame.filename).name}:{frame.lineno}" for frame in reversed(stat.traceback)
        )
        print(f"{stat.size_diff / 2**20:7.2f} MiB  {stat.count_diff:8d} blocks  {where}")


if __name__ == "__main__":
    main()
