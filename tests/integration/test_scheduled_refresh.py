"""Scheduled refresh on a real API server with the operator as its own process: refreshes come
due, never overlap, an outage's missed slots run once, a suspended schedule starts nothing, and an
unchanged source keeps its version and retrains nothing.

Mostly waiting (about four minutes): 1m is the shortest interval the API allows, and the operator
is killed for longer than two of them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelyard.api import GROUP, VERSION
from modelyard.controllers.dataset import REFRESH_ANNOTATION
from modelyard.controllers.refresh import parse_time
from tests.chaos.objects import Objects, training_job
from tests.conftest import PLURALS
from tests.kubelet import (
    ingest_summary,
    model_digest_of,
    pods,
    terminate,
    train_summary,
    version_of,
    wait_for,
)
from tests.plugins.kube import Cluster
from tests.plugins.operator import OperatorProcess

pytestmark = pytest.mark.integration

INTERVAL_SECONDS = 60


def dataset(name: str, refresh: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {
            "source": {"builtin": {"name": "iris"}},
            "target": "target",
            "refresh": refresh,
        },
    }


class HoldingKubelet:
    """A kubelet stand-in in a thread: every workload pod succeeds at once (an ingest pod with
    its Dataset's one unchanging version: the source never changes), except the ingest pods of
    the Dataset named by `holding`, which keep running until their Job is in `released` (or
    `holding` is cleared)."""

    def __init__(self, api: client.ApiClient, namespace: str, holding: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.holding: str | None = holding
        self.released: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pass(self) -> None:
        for pod in pods(self.core, self.namespace, "app.kubernetes.io/managed-by=modelyard"):
            labels = pod.metadata.labels or {}
            if pod.status.phase in ("Succeeded", "Failed") or pod.metadata.deletion_timestamp:
                continue
            if (
                labels.get("modelyard.dev/dataset") == self.holding
                and labels.get("batch.kubernetes.io/job-name") not in self.released
            ):
                continue
            if "modelyard.dev/run" in labels:
                name, run = labels["modelyard.dev/trainingjob"], labels["modelyard.dev/run"]
                env = {var.name: var.value for var in pod.spec.containers[0].env or []}
                summary = train_summary(
                    run, env["MODELYARD_DATASET_VERSION"], model_digest_of(name, run), 0.9
                )
            elif "modelyard.dev/dataset" in labels:
                summary = ingest_summary(version_of(labels["modelyard.dev/dataset"]))
            else:
                continue
            terminate(self.core, pod, summary)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self._pass()
            except client.ApiException:
                continue  # a pod that went meanwhile: the next pass sees the rest

    def __enter__(self) -> HoldingKubelet:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class Api(Objects):
    def status(self, name: str) -> dict[str, Any]:
        return (self.get("Dataset", name) or {}).get("status") or {}

    def ingest_jobs(self, name: str) -> list[client.V1Job]:
        found = self.batch.list_namespaced_job(
            self.namespace, label_selector=f"modelyard.dev/dataset={name}"
        ).items
        return sorted(found, key=lambda job: job.metadata.creation_timestamp)

    def wait_jobs(self, name: str, count: int, timeout: float = 60) -> list[client.V1Job]:
        return wait_for(
            f"{count} ingest Jobs of {name}",
            lambda: (lambda jobs: jobs if len(jobs) >= count else None)(self.ingest_jobs(name)),
            timeout,
        )

    def wait_ready_with(self, name: str, job: str) -> dict[str, Any]:
        return wait_for(
            f"{name} Ready after {job}",
            lambda: (
                lambda s: s if s.get("phase") == "Ready" and s.get("ingestJob") == job else None
            )(self.status(name)),
        )

    def patch_dataset(self, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS["Dataset"], name, body
        )

    def event_messages(self, name: str, reason: str) -> list[str]:
        return [
            event.message
            for event in self.core.list_namespaced_event(self.namespace).items
            if event.involved_object.name == name and event.reason == reason
        ]


def wait_until(moment: datetime) -> None:
    """Sleep until the API server's clock (the same host's) passes `moment`."""
    wait_for(f"time past {moment}", lambda: time.time() > moment.timestamp(), timeout=300)


def assert_no_overlap(jobs: list[client.V1Job]) -> None:
    """Each ingest Job completed before the next one was created (by the API server's times)."""
    for earlier, later in itertools.pairwise(jobs):
        assert earlier.status.completion_time is not None, earlier.metadata.name
        assert earlier.status.completion_time <= later.metadata.creation_timestamp, (
            f"{later.metadata.name} started while {earlier.metadata.name} was running"
        )


@pytest.fixture
def api(crds: Cluster, namespace: str) -> Iterator[Api]:
    handle = Api(crds.api_client(), namespace)
    yield handle
    handle.custom.api_client.close()


def test_scheduled_refreshes_never_overlap_and_missed_slots_run_once(
    api: Api, crds: Cluster, namespace: str, tmp_path: Path
) -> None:
    operator = OperatorProcess(crds.kubeconfig, namespace, tmp_path / "operator.log")
    operator.start()
    try:
        with HoldingKubelet(crds.api_client(), namespace, holding="fresh") as kubelet:
            _scenario(api, operator, kubelet)
    finally:
        operator.stop()


def _scenario(api: Api, operator: OperatorProcess, kubelet: HoldingKubelet) -> None:
    api.create(dataset("fresh", {"interval": "1m"}))
    follower = training_job("follower", "fresh")
    follower["spec"]["retrainOn"] = ["DatasetChange"]
    api.create(follower)
    api.create(dataset("paused", {"interval": "1m", "suspend": True}))
    api.create(dataset("broken", {"schedule": "99 * * * *"}))

    # The first ingestion starts the interval: the status write that records its start names
    # the next refresh, due a minute after it began (not a timer tick later).
    first = api.wait_jobs("fresh", 1)[0]
    recorded = wait_for(
        "the first start recorded",
        lambda: (lambda s: s if s.get("lastRefreshTime") else None)(api.status("fresh")),
    )
    assert recorded.get("nextRefreshTime"), recorded
    kubelet.released.add(first.metadata.name)
    status = api.wait_ready_with("fresh", first.metadata.name)
    started = parse_time(status["lastRefreshTime"])
    assert started == first.metadata.creation_timestamp
    assert (parse_time(status["nextRefreshTime"]) - started).total_seconds() == INTERVAL_SECONDS

    # A schedule croniter refuses: a condition naming the field; ingestion and manual refresh
    # still work.
    condition = wait_for(
        "broken's RefreshScheduled condition",
        lambda: next(
            (
                c
                for c in api.status("broken").get("conditions") or []
                if c["type"] == "RefreshScheduled"
            ),
            None,
        ),
    )
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSchedule")
    assert condition["message"].startswith("spec.refresh.schedule: ")
    initial = api.wait_jobs("broken", 1)[0].metadata.name
    api.wait_ready_with("broken", initial)
    api.patch_dataset("broken", {"metadata": {"annotations": {REFRESH_ANNOTATION: "1"}}})
    # The refresh's Job is the one that is not the first, not the later by creation time: both
    # may be created in the same second, the timestamps' resolution (CI63 waited for the first).
    refreshed = [j.metadata.name for j in api.wait_jobs("broken", 2)]
    assert len(refreshed) == 2
    api.wait_ready_with("broken", next(name for name in refreshed if name != initial))
    assert "nextRefreshTime" not in api.status("broken")

    # The first scheduled refresh; its pod keeps running, and the operator is killed for longer
    # than two intervals.
    second = api.wait_jobs("fresh", 2, timeout=INTERVAL_SECONDS + 30)[-1]
    operator.kill()
    killed = time.time()
    wait_for(
        "two intervals without the operator",
        lambda: time.time() - killed > 2 * INTERVAL_SECONDS + 5,
        timeout=300,
    )
    operator.start()

    # Slots passed, but an ingestion is running: the due slot waits for it (past its due time and
    # a few of the operator's ticks), and no second Job starts beside it.
    due = parse_time(api.status("fresh")["nextRefreshTime"])
    assert due is not None
    wait_until(due)
    time.sleep(25)  # two ticks of the operator's 10 s timer, and some
    assert [j.metadata.name for j in api.ingest_jobs("fresh")] == [
        first.metadata.name,
        second.metadata.name,
    ]

    # It ends: ONE catch-up refresh for all the missed slots, and the next counts from its start.
    kubelet.holding = None
    third = api.wait_jobs("fresh", 3)[-1]
    status = api.wait_ready_with("fresh", third.metadata.name)
    assert parse_time(status["lastRefreshTime"]) == third.metadata.creation_timestamp
    next_due = wait_for(
        "the next refresh counted from the catch-up",
        lambda: (lambda t: t if t and parse_time(t) > third.metadata.creation_timestamp else None)(
            api.status("fresh").get("nextRefreshTime")
        ),
    )
    assert (
        parse_time(next_due) - third.metadata.creation_timestamp
    ).total_seconds() == INTERVAL_SECONDS
    jobs = api.ingest_jobs("fresh")
    assert [j.metadata.name for j in jobs] == [
        first.metadata.name,
        second.metadata.name,
        third.metadata.name,
    ], "exactly one catch-up refresh"
    assert_no_overlap(jobs)

    # An unchanged source: the same version, one history entry, and no new training run.
    status = api.status("fresh")
    assert status["version"] == version_of("fresh")
    assert [h["version"] for h in status["history"]] == [version_of("fresh")]
    follower = api.get("TrainingJob", "follower") or {}
    assert [run["id"] for run in follower["status"]["runs"]] == ["run-1"]
    slots = api.event_messages("fresh", "ScheduledRefresh")
    assert len(slots) == 2, slots  # the held refresh and the catch-up

    # Suspended from the start: the whole time, its first ingestion only and no next time.
    assert len(api.ingest_jobs("paused")) == 1
    assert "nextRefreshTime" not in api.status("paused")
    assert not api.event_messages("paused", "ScheduledRefresh")
