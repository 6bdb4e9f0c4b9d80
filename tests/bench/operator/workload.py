"""What the benchmark does to the cluster: objects applied in bulk, their child Jobs watched,
ingestions finished as a kubelet would, and the plain-script baseline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, watch

from modelyard.api import GROUP, VERSION
from modelyard.api.dataset import DatasetSpec
from modelyard.config import OperatorConfig
from modelyard.controllers.kube import Kube
from modelyard.resources.jobs import Owner, build_ingest_job, ingest_job_name
from tests.chaos.objects import dataset
from tests.kubelet import finish_pod, ingest_pods_of, ingest_summary

# The bench's own client threads: as many as the operator's worker threads.
THREADS = 8
Seen = Callable[[str, dict[str, Any]], None]  # called with each watch event's type and object


def follow(seen: Seen, list_call: Callable[..., Any], *args: Any) -> None:
    """Watch what `list_call(*args)` lists, on a daemon thread, for good.

    Events arrive as plain JSON (`deserialize=False`): the client's typed models cost 0.78 ms
    per Job event against 0.02 ms for the JSON alone, on the two cores the benchmark measures.
    A watch that ends resumes from the last version seen; one that fails (dropped, or its
    version expired) lists everything again, so `seen` must take an object it already saw
    without counting it twice, and an object written more than once while the watch was down
    shows once. With `deserialize=False` the client reports an expired version (410) as a
    KeyError, not as an ApiException, so telling the two failures apart would lean on that."""

    def run() -> None:
        version = None
        while True:
            try:
                for event in watch.Watch().stream(
                    list_call,
                    *args,
                    resource_version=version,
                    timeout_seconds=300,
                    deserialize=False,
                ):
                    seen(event["type"], event["object"])
                    version = event["object"]["metadata"]["resourceVersion"]
            except Exception:
                version = None
                time.sleep(0.5)

    threading.Thread(target=run, daemon=True).start()


class JobWatch:
    """When each child Job was first seen, keyed "<owner label>/<owner name>"."""

    OWNER_LABELS = ("modelyard.dev/dataset", "modelyard.dev/trainingjob")

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self._changed = threading.Condition()
        follow(self._saw, client.BatchV1Api(api).list_namespaced_job, namespace)

    def _saw(self, kind: str, job: dict[str, Any]) -> None:
        labels = job["metadata"].get("labels") or {}
        keys = [f"{label}/{labels[label]}" for label in self.OWNER_LABELS if label in labels]
        conditions = (job.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Complete" and c["status"] == "True" for c in conditions):
            keys += [f"complete/{key}" for key in keys]
        with self._changed:
            for key in keys:
                self.seen.setdefault(key, time.monotonic())
            self._changed.notify_all()

    def wait(self, keys: Iterable[str], timeout: float) -> dict[str, float]:
        wanted = set(keys)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not wanted <= self.seen.keys():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = len(wanted - self.seen.keys())
                    raise TimeoutError(f"{missing} of {len(wanted)} child Jobs missing")
                self._changed.wait(min(remaining, 1))
            return {key: self.seen[key] for key in wanted}


def create_all(
    api: client.ApiClient, namespace: str, bodies: list[dict[str, Any]]
) -> dict[str, float]:
    """Create the objects from THREADS threads; when each one's create returned, by kind/name."""
    custom = client.CustomObjectsApi(api)
    plurals = {"Dataset": "datasets", "TrainingJob": "trainingjobs"}
    created: dict[str, float] = {}

    def create(body: dict[str, Any]) -> None:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plurals[body["kind"]], body
        )
        created[f"{body['kind']}/{body['metadata']['name']}"] = time.monotonic()

    run_threaded(create, bodies)
    return created


def run_threaded(function: Callable[[Any], None], items: Iterable[Any]) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(function, item) for item in items]:
            future.result()


def finish_ingestions(api: client.ApiClient, namespace: str, names: list[str]) -> dict[str, float]:
    """Each Dataset's ingest pod ends with a summary, as the workload would; when, by name."""
    core = client.CoreV1Api(api)
    finished: dict[str, float] = {}

    def finish(index_name: tuple[int, str]) -> None:
        index, name = index_name
        version = f"sha256:{index:064x}"
        finish_pod(core, namespace, ingest_pods_of(name), ingest_summary(version), timeout=600)
        finished[name] = time.monotonic()

    run_threaded(finish, list(enumerate(names)))
    return finished


def baseline(kube: Kube, namespace: str, prefix: str, count: int, threads: int) -> float:
    """Seconds a plain script takes to create `count` ingest Jobs with the operator's client."""
    config = OperatorConfig(workload_node_selector=(("modelyard.dev/test-node", "none"),))
    spec = DatasetSpec.model_validate(dataset("spec")["spec"])
    jobs = []
    for index in range(count):
        name = f"{prefix}-{index}"
        job = build_ingest_job(
            Owner("Dataset", name, namespace, "0"),
            spec,
            ingest_job_name(name, "0", 1, ""),
            f"s3://modelyard/namespaces/{namespace}/datasets/{name}/",
            config,
        )
        # Nothing owns these: no owner reference for the garbage collector to act on.
        del job["metadata"]["ownerReferences"]
        jobs.append(job)
    started = time.monotonic()
    if threads == 1:
        for job in jobs:
            kube.create(job)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(kube.create, jobs))
    return time.monotonic() - started


# What a write changed, from the difference between an object's consecutive watch events.
CREATE, FINALIZER, BOOKKEEPING, ANNOTATION, STATUS, OTHER = (
    "create",
    "finalizer",
    "kopf annotation",
    "annotation",
    "status",
    "other",
)
KOPF_PREFIX = "operator.modelyard.dev/"


def classify(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """The parts of an object one write changed: one write can change several (kopf patches
    its finalizer and annotations together when it can)."""
    if old is None:
        return [CREATE]
    old_meta, new_meta = old["metadata"], new["metadata"]
    changed = []
    if old_meta.get("finalizers") != new_meta.get("finalizers"):
        changed.append(FINALIZER)
    old_notes, new_notes = old_meta.get("annotations") or {}, new_meta.get("annotations") or {}
    keys = {k for k in old_notes.keys() | new_notes.keys() if old_notes.get(k) != new_notes.get(k)}
    if any(k.startswith(KOPF_PREFIX) for k in keys):
        changed.append(BOOKKEEPING)
    if any(not k.startswith(KOPF_PREFIX) for k in keys):
        changed.append(ANNOTATION)
    if old.get("status") != new.get("status"):
        changed.append(STATUS)
    rest = ("spec", "labels", "deletionTimestamp", "ownerReferences")
    if old.get("spec") != new.get("spec") or any(
        old_meta.get(k) != new_meta.get(k) for k in rest[1:]
    ):
        changed.append(OTHER)
    return changed or [OTHER]


class WriteCounter:
    """Watch events on one plural: every write to an object (create, finalizer, status,
    kopf's annotations) is one event. Evidence of what each reconcile costs the API server;
    `by_part` says what each write changed ("finalizer+kopf annotation" when one write did
    both)."""

    def __init__(self, api: client.ApiClient, namespace: str, plural: str) -> None:
        self.events = 0
        self.by_part: dict[str, int] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        list_call = client.CustomObjectsApi(api).list_namespaced_custom_object
        follow(self._saw, list_call, GROUP, VERSION, namespace, plural)

    def snapshot(self) -> tuple[int, dict[str, int]]:
        with self._lock:
            return self.events, dict(self.by_part)

    def _saw(self, kind: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        with self._lock:
            if kind == "DELETED":
                self._last.pop(name, None)
                return
            if (
                self._last.get(name, {}).get("metadata", {}).get("resourceVersion")
                == (body["metadata"]["resourceVersion"])
            ):
                return  # the same version again from a re-opened watch: no write
            part = "+".join(classify(self._last.get(name), body))
            self._last[name] = body
            self.events += 1
            self.by_part[part] = self.by_part.get(part, 0) + 1


class EventCounter:
    """Kubernetes Events the operator records about one kind of object (new and repeated)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.by_kind: dict[str, int] = {}
        self._lock = threading.Lock()
        self._counted: set[tuple[str, str]] = set()  # (uid, resourceVersion): each write once
        follow(self._saw, client.CoreV1Api(api).list_namespaced_event, namespace)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.by_kind)

    def _saw(self, kind: str, event: dict[str, Any]) -> None:
        meta = event["metadata"]
        write = (meta["uid"], meta["resourceVersion"])
        if kind not in ("ADDED", "MODIFIED") or write in self._counted:
            return
        self._counted.add(write)
        with self._lock:
            involved = event["involvedObject"]["kind"]
            self.by_kind[involved] = self.by_kind.get(involved, 0) + 1
