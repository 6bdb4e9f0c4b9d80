"""Every status a Dataset, TrainingJob or ModelDeployment passes through during a test session,
recorded from the API server as the operator writes it, so that the Argo CD health checks
(gitops/argocd/health) are tested against what the operator really writes.

The e2e tier always records (tests/e2e/recorder.py). Other tiers record when asked:

    MODELYARD_STATUS_RECORDING=/tmp/integration.json .venv/bin/python -m pytest \\
        -p tests.plugins.status_recording tests/integration -m integration

`python -m tests.plugins.status_recording OUT RECORDING...` merges recordings into the checked-in
tests/data/recorded-statuses.json (see `compact`).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from modelyard.controllers.bookkeeping import BOOKKEEPING, FINALIZER
from modelyard.controllers.kube import FIELD_MANAGER
from tests.plugins.kube import Cluster

GROUP, VERSION = "modelyard.dev", "v1alpha1"
PLURALS = {
    "Dataset": "datasets",
    "TrainingJob": "trainingjobs",
    "ModelDeployment": "modeldeployments",
}
ENV = "MODELYARD_STATUS_RECORDING"
CHECKED_IN = Path(__file__).resolve().parents[1] / "data" / "recorded-statuses.json"
# What the health checks and the tests of conditions read of a status; the rest (column
# statistics, run and rollout history, model locations, transition times) is left out of the
# checked-in recording, which stays small enough to review.
HEALTH_FIELDS = ("observedGeneration", "phase", "conditions", "version", "model", "url")
MODEL_FIELDS = ("digest",)
CONDITION_FIELDS = ("type", "status", "reason", "message", "observedGeneration")


@dataclass(frozen=True)
class Step:
    """One state of an object: its generation, its status (None before the operator wrote
    one) and whether it was being deleted."""

    generation: int
    status: dict[str, Any] | None
    deleting: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"generation": self.generation, "deleting": self.deleting, "status": self.status}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        return cls(data["generation"], data["status"], data.get("deleting", False))


@dataclass
class Recorded:
    """The distinct states of one object, in the order the API server reported them."""

    kind: str
    namespace: str
    name: str
    uid: str
    steps: list[Step] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "steps": [step.to_json() for step in self.steps],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recorded:
        steps = [Step.from_json(step) for step in data["steps"]]
        return cls(data["kind"], data["namespace"], data["name"], data["uid"], steps)


def load(path: Path) -> list[Recorded]:
    return [Recorded.from_json(item) for item in json.loads(path.read_text())["objects"]]


def dump(path: Path, objects: list[Recorded], source: str) -> None:
    """JSON with one line per object and per step: a refresh reads as a diff of states."""

    def line(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)

    blocks = []
    for item in objects:
        fields = {k: v for k, v in item.to_json().items() if k != "steps"}
        steps = ",\n".join(f"   {line(step.to_json())}" for step in item.steps)
        blocks.append(f' {line(fields)[:-1]}, "steps": [\n{steps}\n ]}}')
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",\n".join(blocks)
    path.write_text(f'{{"source": {line(source)}, "objects": [\n{body}\n]}}\n')


def _operator_status(entry: dict[str, Any]) -> bool:
    """A managedFields entry of a status the operator wrote (most objects carry neither its
    finalizer nor kopf's annotations: only those a ModelDeployment uses have the finalizer)."""
    return entry.get("manager") == FIELD_MANAGER and entry.get("subresource") == "status"


class StatusRecorder:
    """Watches the three kinds in every namespace, from threads, until stopped.

    Objects that already exist when it starts are left out: their earlier states are unknown,
    and on the shared cluster they are someone else's. So are objects no operator ever handled
    (neither its finalizer, its kopf bookkeeping annotations nor a status it wrote ever on them):
    their statuses, if any, are a test's own writes. A kind whose CRD is not installed yet (the
    e2e tier installs it with the chart) is watched once it is.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._objects: dict[str, Recorded] = {}
        self._existing: set[str] = set()
        self._handled: set[str] = set()
        self._lock = threading.Lock()
        #: The last reason a watch had to start over, to explain an empty recording.
        self.last_error = ""
        self._stop = threading.Event()
        self._listed = {kind: threading.Event() for kind in PLURALS}
        self._threads = [
            threading.Thread(target=self._watch, args=(kind,), daemon=True, name=f"record-{kind}")
            for kind in PLURALS
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def objects(self) -> list[Recorded]:
        """What was recorded so far, a copy."""
        with self._lock:
            return [
                Recorded(o.kind, o.namespace, o.name, o.uid, list(o.steps))
                for o in self._objects.values()
                if o.uid in self._handled
            ]

    def _observe(self, kind: str, body: dict[str, Any], initial: bool) -> None:
        meta = body.get("metadata") or {}
        uid = meta.get("uid")
        if not uid:
            return
        with self._lock:
            if initial and uid not in self._objects:
                self._existing.add(uid)
            if uid in self._existing:
                return
            if (
                FINALIZER in (meta.get("finalizers") or [])
                or any(key.startswith(f"{BOOKKEEPING}/") for key in meta.get("annotations") or {})
                or any(_operator_status(entry) for entry in meta.get("managedFields") or [])
            ):
                self._handled.add(uid)
            recorded = self._objects.setdefault(
                uid, Recorded(kind, meta.get("namespace", ""), meta.get("name", ""), uid)
            )
            step = Step(
                int(meta.get("generation") or 0),
                body.get("status") or None,
                meta.get("deletionTimestamp") is not None,
            )
            if not recorded.steps or recorded.steps[-1] != step:
                recorded.steps.append(step)

    def _watch(self, kind: str) -> None:
        initial = True
        while not self._stop.is_set():
            try:
                with self.cluster.api_client() as api:
                    custom = client.CustomObjectsApi(api)
                    listing = cast(
                        dict[str, Any],
                        custom.list_cluster_custom_object(
                            GROUP, VERSION, PLURALS[kind], _request_timeout=30
                        ),
                    )
                    for item in listing["items"]:
                        self._observe(kind, item, initial)
                    initial = False
                    self._listed[kind].set()
                    self._stream(custom, kind, listing["metadata"]["resourceVersion"])
            except ApiException as error:
                # 404: the CRD is not there (yet, or any more); 410: the watch fell too far
                # behind and starts over from a new list.
                if error.status not in (404, 410):
                    raise
                if error.status == 404 and initial:
                    # Nothing can exist before the CRD does: whatever comes later is new.
                    initial = False
                    self._listed[kind].set()
            except Exception as error:  # the API server restarted or moved (a node joined)
                self.last_error = f"{PLURALS[kind]}: {error!r}"
            self._stop.wait(1)

    def _stream(self, custom: client.CustomObjectsApi, kind: str, resource_version: str) -> None:
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        while not self._stop.is_set():
            # Short server-side timeouts, so that stop() is noticed within seconds.
            for event in stream.stream(  # type: ignore[no-untyped-call]
                custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                PLURALS[kind],
                resource_version=resource_version,
                timeout_seconds=5,
                _request_timeout=30,
            ):
                if event["type"] == "ERROR":
                    raise ApiException(status=event["raw_object"].get("code", 500))
                body = event["raw_object"]
                resource_version = body["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._observe(kind, body, initial=False)
                if self._stop.is_set():
                    return
            resource_version = stream.resource_version or resource_version

    def wait_listed(self, timeout: float = 60) -> None:
        """Until each kind was listed once: objects created from then on are recorded whole."""
        deadline = time.monotonic() + timeout
        for kind, listed in self._listed.items():
            if not listed.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"could not list {PLURALS[kind]} to start recording")


def _reduced(status: dict[str, Any] | None) -> dict[str, Any] | None:
    if status is None:
        return None
    reduced = {k: v for k, v in status.items() if k in HEALTH_FIELDS}
    if isinstance(reduced.get("model"), dict):
        reduced["model"] = {k: v for k, v in reduced["model"].items() if k in MODEL_FIELDS}
    if isinstance(reduced.get("conditions"), list):
        reduced["conditions"] = [
            {k: v for k, v in condition.items() if k in CONDITION_FIELDS}
            for condition in reduced["conditions"]
        ]
    return reduced


def compact(objects: list[Recorded]) -> list[Recorded]:
    """For checking in: each status reduced to what the health checks read, namespaces that
    tests made up with a random suffix named by order of appearance, and steps that became
    equal merged. The states and their order are the recorded ones."""
    names: dict[str, str] = {}
    result = []
    for item in objects:
        namespace = names.setdefault(item.namespace, f"ns-{len(names) + 1}")
        steps: list[Step] = []
        for step in item.steps:
            reduced = Step(step.generation, _reduced(step.status), step.deleting)
            if not steps or steps[-1] != reduced:
                steps.append(reduced)
        result.append(Recorded(item.kind, namespace, item.name, item.uid, steps))
    return result


@contextmanager
def recording(cluster: Cluster) -> Iterator[StatusRecorder]:
    recorder = StatusRecorder(cluster)
    recorder.start()
    try:
        recorder.wait_listed()
        yield recorder
    finally:
        recorder.stop()


def recording_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$MODELYARD_STATUS_RECORDING, else recorded-statuses.json under pytest's base temp dir."""
    value = os.environ.get(ENV)
    if value:
        return Path(value)
    return tmp_path_factory.getbasetemp() / "recorded-statuses.json"


@pytest.fixture(scope="session")
def status_recorder(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StatusRecorder]:
    """Records from the session's `kube` cluster; the recording is written at the end."""
    cluster: Cluster = request.getfixturevalue("kube")
    with recording(cluster) as recorder:
        yield recorder
    path = recording_path(tmp_path_factory)
    dump(path, recorder.objects(), f"pytest {' '.join(request.config.invocation_params.args)}")
    print(f"\nrecorded statuses: {path}")


@pytest.fixture(scope="session", autouse=True)
def _record_when_asked(request: pytest.FixtureRequest) -> None:
    """With `-p tests.plugins.status_recording` and $MODELYARD_STATUS_RECORDING set, any tier
    records; without the variable nothing starts (a unit test run needs no cluster)."""
    if os.environ.get(ENV):
        request.getfixturevalue("status_recorder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help=f"the merged recording, e.g. {CHECKED_IN}")
    parser.add_argument("recordings", type=Path, nargs="+", help="recordings of test sessions")
    args = parser.parse_args()
    objects = [item for path in args.recordings for item in load(path)]
    sources = [json.loads(path.read_text())["source"] for path in args.recordings]
    dump(args.out, compact(objects), "; ".join(sources))
    counts = {kind: sum(1 for o in objects if o.kind == kind) for kind in PLURALS}
    steps = sum(len(o.steps) for o in compact(objects))
    print(f"wrote {args.out}: {counts}, {steps} distinct states")


if __name__ == "__main__":
    main()
