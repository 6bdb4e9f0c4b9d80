"""Entry point: `python -m tests.bench.operator [--quick] [--profile]` (see the package doc)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from kubernetes import client, config

from modelyard.api import GROUP, VERSION
from modelyard.controllers.kube import Kube
from tests.bench import venvs
from tests.bench.operator import procstat, workload
from tests.bench.operator.report import Results, Storm, WritesRecord, markdown, plot
from tests.chaos import objects
from tests.conftest import REPO
from tests.plugins import controlplane
from tests.plugins.kube import LOCAL_KUBECONFIG, credentials
from tests.plugins.operator import OperatorProcess, apply_crds, modelyard_crds

CACHE = Path.home() / ".cache" / "modelyard" / "bench" / "operator"
DOCS = REPO / "docs" / "benchmarks"
TIMEOUT = 900


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.operator")
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    parser.add_argument("--storm", type=int, help="objects of each kind applied at once")
    parser.add_argument("--population", type=int, help="objects of each kind for the RSS figure")
    parser.add_argument("--idle", type=float, help="seconds of idle CPU measured")
    parser.add_argument("--profile", action="store_true", help="py-spy the operator's storm")
    parser.add_argument("--output", type=Path, default=DOCS, help="where operator.md/png go")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the operator process (e.g. MALLOC_ARENA_MAX=2)",
    )
    parser.add_argument(
        "--shared",
        action="store_true",
        help="use the cluster in $KUBECONFIG instead of a private control plane",
    )
    args = parser.parse_args()
    storm = args.storm or (100 if args.quick else 500)
    population = args.population or (300 if args.quick else 2000)
    idle = args.idle or (10 if args.quick else 30)
    suffix = uuid.uuid4().hex[:6]
    commit = _commit()  # the code the operator process starts with, before anyone edits it
    CACHE.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        plane_pids: dict[str, int] = {}  # a shared cluster's processes are not ours to measure
        if args.shared:
            kubeconfig = Path(os.environ.get("KUBECONFIG") or LOCAL_KUBECONFIG)
        else:
            plane = stack.enter_context(_private_plane(CACHE / f"plane-{suffix}"))
            kubeconfig = plane.kubeconfig
            plane_pids = {name: process.pid for name, process in plane.processes.items()}
        env = dict(item.split("=", 1) for item in args.operator_env)
        results = _bench(kubeconfig, suffix, storm, population, idle, args.profile, env, plane_pids)
    flags = [f for f, on in (("--quick", args.quick), ("--shared", args.shared)) if on]
    flags += [
        f"--{name} {value:g}"
        for name, value in (
            ("storm", args.storm),
            ("population", args.population),
            ("idle", args.idle),
        )
        if value
    ]
    flags += [f"--operator-env {item}" for item in args.operator_env]
    results.command = " ".join(["python -m tests.bench.operator", *flags])
    results.commit = commit
    args.output.mkdir(parents=True, exist_ok=True)
    # The previous run's writes, for the before/after table: whatever run made the page before.
    saved = args.output / "operator.json"
    previous = WritesRecord.load(saved) if saved.exists() else None
    plot(results, args.output / "operator.png")
    (args.output / "operator.md").write_text(markdown(results, "operator.png", previous))
    WritesRecord.of(results).save(saved)
    print((args.output / "operator.md").read_text())


def _commit() -> str:
    """The operator code measured: the commit, marked when the work tree differs from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "operator"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return f"{head} + uncommitted changes" if dirty else head


@contextlib.contextmanager
def _private_plane(state: Path) -> Iterator[controlplane.ControlPlane]:
    """etcd, API server and controller manager of our own: nobody else's load or operator."""
    try:
        with controlplane.running(state) as plane:
            yield plane
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _bench(
    kubeconfig: Path,
    suffix: str,
    storm: int,
    population: int,
    idle: float,
    profile: bool,
    env: dict[str, str],
    plane_pids: dict[str, int],
) -> Results:
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    api.configuration.connection_pool_maxsize = 2 * workload.THREADS
    apply_crds(
        config.new_client_from_config(config_file=str(kubeconfig)),  # type: ignore[no-untyped-call]
        modelyard_crds(),
    )
    core = client.CoreV1Api(api)
    namespace, plain = f"bench-operator-{suffix}", f"bench-plain-{suffix}"
    for name in (namespace, plain):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        _wait_default_account(core, name)
    log = CACHE / f"operator-{suffix}.log"
    operator = OperatorProcess(kubeconfig, namespace, log, env=env, python=venvs.python("operator"))
    try:
        operator.start()
        print(f"operator pid {operator.pid}, log {log}", file=sys.stderr)
        return _run(
            api,
            kubeconfig,
            namespace,
            plain,
            operator,
            storm,
            population,
            idle,
            profile,
            plane_pids,
        )
    finally:
        operator.stop()
        for name in (namespace, plain):
            core.delete_namespace(name)


def _wait_default_account(core: client.CoreV1Api, namespace: str) -> None:
    """The Job controller cannot make pods before the namespace's default service account."""
    deadline = time.monotonic() + 60
    while not core.list_namespaced_service_account(namespace).items:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default service account in {namespace}")
        time.sleep(0.2)


def _profiler(pid: int, name: str) -> subprocess.Popen[bytes]:
    out = CACHE / f"{name}.txt"
    print(f"profiling into {out}", file=sys.stderr)
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--output",
            str(out),
            "--rate",
            "50",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _run(
    api: client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    plain: str,
    operator: OperatorProcess,
    storm: int,
    population: int,
    idle: float,
    profile: bool,
    plane_pids: dict[str, int],
) -> Results:
    sampler = procstat.Sampler(operator.pid)
    # Everything on this machine the storm keeps busy, the benchmark's own client included.
    measured = {"operator": operator.pid, **plane_pids, "this benchmark": os.getpid()}
    watcher = workload.JobWatch(api, namespace)
    writes = {
        plural: workload.WriteCounter(api, namespace, plural)
        for plural in ("datasets", "trainingjobs")
    }
    events = workload.EventCounter(api, namespace)
    time.sleep(2)  # the operator's watches and ours are open
    spy = _profiler(operator.pid, f"profile-storm-{storm}") if profile else None

    # 1. Datasets and TrainingJobs at once: the Datasets' ingest Jobs appear; TrainingJobs wait.
    sampler.phase = "storm"
    datasets = [f"ds-{i}" for i in range(storm)]
    bodies = []
    for i, name in enumerate(datasets):
        bodies += [objects.dataset(name), objects.training_job(f"tj-{i}", name)]
    started, cpu_before = time.monotonic(), procstat.cpu_by_process(measured)
    created = workload.create_all(api, namespace, bodies)
    seen = watcher.wait([f"modelyard.dev/dataset/{n}" for n in datasets], TIMEOUT)
    cpu_after = procstat.cpu_by_process(measured)
    storm_cpu = {name: cpu_after[name] - cpu_before[name] for name in measured}
    # Every write the storm's objects cause, the TrainingJobs' (which wait) included.
    _settle(operator.pid)
    snapshots = {plural: counter.snapshot() for plural, counter in writes.items()}
    storm_writes = {plural: total / storm for plural, (total, _) in snapshots.items()}
    storm_parts = {
        plural: {part: count / storm for part, count in sorted(parts.items())}
        for plural, (_, parts) in snapshots.items()
    }
    kinds = {"Dataset": "datasets", "TrainingJob": "trainingjobs"}
    for kind, count in events.snapshot().items():
        if kind in kinds:
            storm_parts[kinds[kind]]["Event (core/v1)"] = count / storm
    # Child Jobs the storm made, counted by their owner's label.
    for plural, label in (("datasets", "dataset"), ("trainingjobs", "trainingjob")):
        children = sum(1 for key in list(watcher.seen) if key.startswith(f"modelyard.dev/{label}/"))
        storm_parts[plural]["child Job"] = children / storm
    first = Storm(
        f"{storm} Datasets + {storm} TrainingJobs applied at once → ingest Jobs",
        storm,
        max(seen.values()) - started,
        [seen[f"modelyard.dev/dataset/{n}"] - created[f"Dataset/{n}"] for n in datasets],
    )
    print(f"storm: {first.all_children_seconds:.1f} s", file=sys.stderr)

    # 2. Every ingestion ends: each TrainingJob starts its run.
    sampler.phase = "ingestions end"
    started = time.monotonic()
    workload.finish_ingestions(api, namespace, datasets)
    seen = watcher.wait([f"modelyard.dev/trainingjob/tj-{i}" for i in range(storm)], TIMEOUT)
    # From the moment the Job controller marked the ingest Job Complete (the operator's cue).
    complete = watcher.wait([f"complete/modelyard.dev/dataset/{n}" for n in datasets], TIMEOUT)
    second = Storm(
        f"{storm} ingest Jobs complete at once → train Jobs",
        storm,
        max(seen.values()) - started,
        [
            seen[f"modelyard.dev/trainingjob/tj-{i}"]
            - complete[f"complete/modelyard.dev/dataset/{n}"]
            for i, n in enumerate(datasets)
        ],
    )
    print(f"ingestions end: {second.all_children_seconds:.1f} s", file=sys.stderr)
    notes = []
    if spy:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT, not on SIGTERM
        spy.wait()
        raw = (CACHE / f"profile-storm-{storm}.txt").read_text()
        notes = [
            "",
            "py-spy over both storms (`--profile`), frames holding the most samples:",
            "",
            "| share | frame |",
            "| --- | --- |",
            *(f"| {share:.0%} | `{frame}` |" for share, frame in procstat.profile_summary(raw)),
        ]

    # 3. The baseline, while the operator idles (it does not watch that namespace). Not before
    # the second storm's tail is done (the Job controller's pods for 500 train Jobs, the
    # operator's last writes): the loop would share the cores with it.
    sampler.phase = "baseline"
    _quiet({name: pid for name, pid in measured.items() if name != "this benchmark"}, busy=0.1)
    kube = Kube(functools.partial(credentials, kubeconfig), workload.THREADS)
    loop = workload.baseline(kube, plain, "loop", storm, threads=1)
    threaded = workload.baseline(kube, plain, "threads", storm, threads=workload.THREADS)
    print(f"baseline: {loop:.1f} s", file=sys.stderr)

    # 4. The population for the memory figure: new TrainingJobs train on the ready Datasets.
    sampler.phase = "population"
    extra = range(storm, population)
    bodies = []
    for i in extra:
        bodies += [objects.dataset(f"ds-{i}"), objects.training_job(f"tj-{i}", f"ds-{i % storm}")]
    workload.create_all(api, namespace, bodies)
    watcher.wait(
        [f"modelyard.dev/dataset/ds-{i}" for i in extra]
        + [f"modelyard.dev/trainingjob/tj-{i}" for i in extra],
        TIMEOUT,
    )
    sampler.phase = "settling"
    settled = _settle(operator.pid)
    sampler.phase = "idle"
    cpu_before = procstat.cpu_seconds(operator.pid)
    time.sleep(idle)
    idle_cpu = procstat.cpu_seconds(operator.pid) - cpu_before
    peak = procstat.memory_kib(operator.pid)["VmHWM"] / 1024

    # 5. Everything deleted; the operator releases its finalizers.
    sampler.phase = "deletion"
    deletion = _delete_all(api, namespace)
    sampler.stop()
    return Results(
        command="",
        storms=[first, second],
        baseline_loop_seconds=loop,
        baseline_threads_seconds=threaded,
        baseline_threads=workload.THREADS,
        population=population,
        population_jobs=2 * population,
        peak_rss_mib=peak,
        idle_seconds=idle,
        idle_cpu_seconds=idle_cpu,
        deletion_seconds=deletion,
        rss=sampler.samples,
        storm_cpu_seconds=storm_cpu["operator"],
        # On a shared cluster only the operator and the benchmark were measured: no split.
        storm_cpu_by_process=storm_cpu if plane_pids else {},
        cores=os.cpu_count() or 1,
        writes_per_object=storm_writes,
        writes_by_part=storm_parts,
        notes=[
            f"The operator worked off its backlog {settled:.0f} s after the population's "
            "last child Job appeared; idle CPU is measured after that.",
            *notes,
        ],
    )


def _settle(pid: int, window: float = 5, busy: float = 0.02) -> float:
    """Wait until the operator has worked off its backlog: less than `busy` of a core over a
    `window`. Seconds it took."""
    return _quiet({"operator": pid}, window, busy)


def _quiet(pids: dict[str, int], window: float = 5, busy: float = 0.02) -> float:
    """Wait until each process uses less than `busy` of a core over a `window`. Seconds it
    took."""
    started = time.monotonic()
    while time.monotonic() - started < TIMEOUT:
        before = procstat.cpu_by_process(pids)
        time.sleep(window)
        after = procstat.cpu_by_process(pids)
        if all((after[name] - before[name]) / window < busy for name in pids):
            break
    return time.monotonic() - started


def _delete_all(api: client.ApiClient, namespace: str) -> float:
    """Delete every Dataset and TrainingJob; seconds until the operator released them all."""
    custom = client.CustomObjectsApi(api)
    started = time.monotonic()
    while True:
        left = False
        for plural in ("trainingjobs", "datasets"):
            items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
            left = left or bool(items)
            if any(not item["metadata"].get("deletionTimestamp") for item in items):
                # Again when a delete-collection timed out (504) part way: it stops there.
                with contextlib.suppress(client.ApiException):
                    custom.delete_collection_namespaced_custom_object(
                        GROUP, VERSION, namespace, plural
                    )
        if not left:
            return time.monotonic() - started
        if time.monotonic() - started > TIMEOUT:
            raise TimeoutError(f"objects in {namespace} still not deleted after {TIMEOUT} s")
        time.sleep(2)


if __name__ == "__main__":
    main()
