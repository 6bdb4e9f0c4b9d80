"""`modelyard logs tj/NAME [--run N] [--follow]`: the training pod's logs of a run (default: the
latest); `ds/NAME` gives the latest ingestion's. Pods are found by the labels the operator sets."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from modelyard.api.dataset import Dataset
from modelyard.api.trainingjob import TrainingJob
from modelyard.cli.errors import CliError, UsageError
from modelyard.cli.kubeclient import Kube, Options
from modelyard.cli.refs import Ref, parse_ref
from modelyard.resources.common import LABEL_PREFIX
from modelyard.resources.jobs import TRAIN_COMPONENT

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
START_TIMEOUT = 300


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "logs", parents=parents, help="logs of a training run (or of a Dataset's ingestion)"
    )
    parser.add_argument("resource", help="tj/NAME, or ds/NAME for the latest ingestion")
    parser.add_argument("--run", help="run number or id, e.g. 2 or run-2 (default: the latest)")
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing as the pod writes"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ref = parse_ref(args.resource, TrainingJob.info.kind, Dataset.info.kind)
    if args.run and ref.info.kind != TrainingJob.info.kind:
        raise UsageError("--run selects a TrainingJob's run; a Dataset has ingestions")
    kube = Kube.connect(Options.from_args(args))
    try:
        selector, what = pod_selector(ref, kube.get(ref), args.run)
        pods: list[Any] = sorted(kube.pods(selector), key=lambda p: p.metadata.creation_timestamp)
        if not pods:
            raise CliError(
                f"{what} has no pods: not started yet, or removed after the Job finished "
                "(the chart's workloads.jobTTLSeconds)"
            )
        for index, pod in enumerate(pods):
            last = index == len(pods) - 1
            if len(pods) > 1:
                print(f"==> pod/{pod.metadata.name} ({pod.status.phase}) <==", flush=True)
            _print_log(kube, pod, follow=args.follow and last)
    finally:
        kube.close()
    return 0


def pod_selector(ref: Ref, obj: dict[str, Any], run: str | None) -> tuple[str, str]:
    """The label selector of the pods of the run (or ingestion) asked for, and its name."""
    status = obj.get("status") or {}
    if ref.info.kind == Dataset.info.kind:
        job = status.get("ingestJob")
        if not job:
            raise CliError(f"{ref} has not started an ingestion yet")
        return f"{JOB_NAME_LABEL}={job}", f"{ref} (Job {job})"
    runs = [r["id"] for r in status.get("runs") or []]
    if not runs:
        raise CliError(f"{ref} has no runs yet ({status.get('phase') or 'Pending'})")
    wanted = runs[-1] if run is None else run if run.startswith("run-") else f"run-{run}"
    if wanted not in runs:
        raise CliError(f"{ref} has no run {wanted} (it has {', '.join(runs)})")
    # The training pod's, not those of the run's Dask cluster (which carry the same labels).
    return (
        f"{LABEL_PREFIX}/trainingjob={ref.name},{LABEL_PREFIX}/run={wanted},"
        f"app.kubernetes.io/component={TRAIN_COMPONENT}",
        f"{ref} {wanted}",
    )


def _print_log(kube: Kube, pod: Any, follow: bool) -> None:
    name = pod.metadata.name
    if pod.status.phase == "Pending":
        if not follow:
            raise CliError(f"pod/{name} has not started yet; use --follow to wait for it")
        kube.wait_started(name, START_TIMEOUT)
    container = pod.spec.containers[0].name
    out = sys.stdout.buffer
    for chunk in kube.log(name, container, follow):
        out.write(chunk)
        out.flush()
