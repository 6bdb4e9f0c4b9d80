"""What one setting does to the operator's memory and idle CPU, without the whole benchmark:
`python -m tests.bench.operator.rss [--count N] [--operator-env KEY=VALUE]...`.

On a private control plane, the operator process (as `modelyard operator` runs it) gets one ready
Dataset, then N Datasets and N TrainingJobs that train on it: N ingest and N train Jobs appear.
Once the operator settled, it prints the peak and current resident set, where the resident
memory lies (main heap, thread arenas, other mappings: /proc/PID/smaps) and the idle CPU."""

from __future__ import annotations

import argparse
import re
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config

from tests.bench import venvs
from tests.bench.operator import procstat, workload
from tests.bench.operator.__main__ import CACHE, _private_plane, _settle, _wait_default_account
from tests.chaos import objects
from tests.kubelet import finish_pod, ingest_pods_of, ingest_summary, wait_for
from tests.plugins.operator import OperatorProcess, apply_crds, modelyard_crds

TIMEOUT = 900
READY = "ds-ready"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.operator.rss")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=30)
    parser.add_argument("--operator-env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.operator_env)
    suffix = uuid.uuid4().hex[:6]
    with _private_plane(CACHE / f"plane-{suffix}") as plane:
        measure(plane.kubeconfig, f"rss-{suffix}", args.count, args.idle, env)


def measure(kubeconfig: Path, namespace: str, count: int, idle: float, env: dict[str, str]) -> None:
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    api.configuration.connection_pool_maxsize = 2 * workload.THREADS
    apply_crds(config.new_client_from_config(config_file=str(kubeconfig)), modelyard_crds())  # type: ignore[no-untyped-call]
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    _wait_default_account(core, namespace)
    operator = OperatorProcess(
        kubeconfig,
        namespace,
        CACHE / f"operator-{namespace}.log",
        env=env,
        python=venvs.python("operator"),
    )
    operator.start()
    try:
        watcher = workload.JobWatch(api, namespace)
        started_rss = procstat.memory_kib(operator.pid)["VmRSS"] / 1024
        names = objects.Objects(api, namespace)
        names.create(objects.dataset(READY))
        finish_pod(core, namespace, ingest_pods_of(READY), ingest_summary("sha256:" + "0" * 64))
        wait_for(f"Dataset {READY} ready", lambda: _ready(names.get("Dataset", READY)), 120)
        started = time.monotonic()
        bodies = []
        for i in range(count):
            bodies += [objects.dataset(f"ds-{i}"), objects.training_job(f"tj-{i}", READY)]
        workload.create_all(api, namespace, bodies)
        watcher.wait(
            [f"modelyard.dev/dataset/ds-{i}" for i in range(count)]
            + [f"modelyard.dev/trainingjob/tj-{i}" for i in range(count)],
            TIMEOUT,
        )
        children = time.monotonic() - started
        settled = _settle(operator.pid)
        before = procstat.cpu_seconds(operator.pid)
        time.sleep(idle)
        idle_cpu = procstat.cpu_seconds(operator.pid) - before
        memory = procstat.memory_kib(operator.pid)
        print(f"env {env or '(none)'}: {count} Datasets + {count} TrainingJobs + {2 * count} Jobs")
        print(f"  all child Jobs after {children:.1f} s; settled {settled:.0f} s later")
        print(
            f"  RSS at start {started_rss:.0f} MiB, peak {memory['VmHWM'] / 1024:.0f} MiB, "
            f"now {memory['VmRSS'] / 1024:.0f} MiB; threads {_threads(operator.pid)}"
        )
        for region, kib in _regions(operator.pid).items():
            print(f"    {region:<28} {kib / 1024:7.1f} MiB resident")
        print(f"  idle CPU {idle_cpu:.2f} CPU-s over {idle:.0f} s ({100 * idle_cpu / idle:.2f} %)")
    finally:
        operator.stop()


def _ready(dataset: dict[str, Any] | None) -> bool | None:
    condition = objects.ready(dataset or {})
    return (condition is not None and condition["status"] == "True") or None


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def _regions(pid: int) -> dict[str, int]:
    """Resident KiB by kind of mapping: glibc's main heap, anonymous mappings (thread arenas of up
    to 64 MiB, large mallocs, thread stacks), shared libraries."""
    regions: dict[str, int] = {}
    name = ""
    header = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$")
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            match = header.match(line)
            if match:
                path = match.group(1)
                name = (
                    "[heap] (main arena)"
                    if path == "[heap]"
                    else "anonymous (arenas, mmaps)"
                    if not path
                    else "[stack]"
                    if path.startswith("[stack")
                    else "libraries and files"
                )
            elif line.startswith("Rss:"):
                regions[name] = regions.get(name, 0) + int(line.split()[1])
    return dict(sorted(regions.items(), key=lambda item: -item[1]))


if __name__ == "__main__":
    main()
