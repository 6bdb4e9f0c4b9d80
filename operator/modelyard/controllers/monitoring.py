"""ModelDeployment monitoring: every spec.monitoring.interval, gather drift counts and live-quality
sums from every server process of the main track (replicas x workers, each on its own monitoring
port), relay feedback a process could not match to the others, and write status.monitoring with
the Drifted and QualityDegraded conditions; a True one may retrain the model's TrainingJob.

Drift is judged on the sum of every process's counts per bin, not on a mean of per-process
scores: a process that saw ten rows weighs what ten rows weigh. Only answers for the model the
ModelDeployment serves count, so figures of a model being replaced are never attributed to its
successor.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from modelyard.api import GROUP, VERSION
from modelyard.api.modeldeployment import (
    LIVE_LOWER_IS_BETTER,
    LiveMetric,
    ModelDeploymentSpec,
    Monitoring,
)
from modelyard.api.refresh import parse_duration
from modelyard.api.trainingjob import RetrainTrigger
from modelyard.controllers import metrics, provenance, retrain
from modelyard.controllers.conditions import Condition, get_condition, remove_condition
from modelyard.controllers.conditions import set_condition as set_condition_
from modelyard.controllers.context import Context, from_memo, post_event
from modelyard.controllers.fresh import on_fresh, patch_status
from modelyard.controllers.refresh import format_time, parse_time
from modelyard.monitoring import token
from modelyard.monitoring.psi import psi, shares
from modelyard.monitoring.quality import QualitySums
from modelyard.monitoring.report import Feedback, MalformedReport, ProcessReport, parse
from modelyard.reasons import Reason
from modelyard.resources.serving import (
    COMPONENT,
    MAIN,
    MONITOR_PORT_PREFIX,
    TRACK_LABEL,
    deployment_name,
)
from modelyard.resources.serving import selector_labels as server_labels

log = logging.getLogger("modelyard.monitoring")

KIND = "ModelDeployment"
DRIFTED, DEGRADED = "Drifted", "QualityDegraded"
# How often the timer looks at each ModelDeployment with spec.monitoring (and only those); it
# gathers when spec.monitoring.interval has passed since status.monitoring.observedAt, and makes
# no API call otherwise (it reads kopf's copy of the object).
TICK_SECONDS = 5.0
# A server process whose whole answer has not arrived within this long (connecting, sending and
# reading together, however slowly it trickles) counts as unreachable for the round.
TIMEOUT_SECONDS = 5.0
# The most bytes read of one answer. A real one is far smaller: at most 21 bins per feature, and
# at most 10 000 unmatched entries (ids of at most 256 characters, 100 000 values in all).
MAX_ANSWER_BYTES = 8 * 1024 * 1024
READ_CHUNK = 64 * 1024
# Processes asked at once.
CONCURRENCY = 16
# Answers are decoded one at a time: decoded JSON takes several times its size, and the GIL
# serialises the decoding anyway. CONCURRENCY answers read at once hold their bytes only.
_decoding = threading.Lock()
# Relayed feedback per request: a server takes up to monitoring.report.MAX_UNMATCHED.
RELAY_BATCH = 1000
# What one round relays at most, counted once per receiving process: every entry goes to every
# other process, so without a bound the cost grows with the square of the processes, and any
# client of the serving port can fill every process's held feedback. The rest is dropped (the
# operator's log and modelyard_monitoring_relay_dropped_total say how much).
RELAY_MAX_DELIVERIES = 20_000
RELAY_MAX_BYTES = 4 * 1024 * 1024
# Features named in a condition's message and kept in status (its schema's bound).
FEATURES_NAMED, FEATURES_KEPT = 3, 64
# The live metric shown when spec.monitoring.quality does not name one.
DEFAULT_LIVE_METRIC = {"classification": LiveMetric.ACCURACY, "regression": LiveMetric.RMSE}
# The task each live metric measures: accuracy of a regressor is always 0, and a classifier's
# errors are never summed.
METRIC_TASK = {
    LiveMetric.ACCURACY: "classification",
    LiveMetric.MAE: "regression",
    LiveMetric.RMSE: "regression",
}


@dataclass(frozen=True)
class Endpoint:
    """One server process's monitoring port."""

    pod: str
    port: str  # its name, monitor-<worker>
    url: str  # http://<pod IP>:<port>
    token: str = field(repr=False)  # monitoring.token.for_deployment(its MD's uid)


@dataclass
class Gathered:
    """What one round of gathering found, before it is judged."""

    reports: list[ProcessReport] = field(default_factory=list)  # for the served model only
    unreachable: int = 0


@dataclass(frozen=True)
class Aggregate:
    rows: int
    features: list[tuple[str, float]]  # (feature, PSI), largest first
    quality: QualitySums
    task: str | None


# --- arithmetic -----------------------------------------------------------------------------


def aggregate(reports: list[ProcessReport]) -> Aggregate:
    """Counts summed per feature and bin across processes, PSI computed from those sums against
    the baseline; quality sums added. A feature whose baseline (`expected`) differs between
    answers is left out: its bins would not line up."""
    counts: dict[str, list[int]] = {}
    expected: dict[str, list[float]] = {}
    disagreeing: set[str] = set()
    for report in reports:
        for feature in report.features:
            name = feature.name
            if name not in expected:
                expected[name], counts[name] = list(feature.expected), list(feature.counts)
            elif expected[name] != feature.expected:
                disagreeing.add(name)
            else:
                counts[name] = [a + b for a, b in zip(counts[name], feature.counts, strict=True)]
    scores = [
        (name, psi(expected[name], shares(counts[name])))
        for name in expected
        if name not in disagreeing and any(counts[name])
    ]
    scores.sort(key=lambda item: (-item[1], item[0]))
    quality = sum((report.quality for report in reports), QualitySums())
    task = reports[0].task if reports else None
    return Aggregate(sum(r.rows for r in reports), scores, quality, task)


@dataclass(frozen=True)
class Verdict:
    """A condition's status, reason and message; `status` None: not judged (no condition)."""

    status: str | None
    reason: str = ""
    message: str = ""


def judge_drift(monitoring: Monitoring, found: Aggregate, servers: int) -> Verdict:
    spec = monitoring.drift
    if spec is None:
        return Verdict(None)
    if found.rows < spec.min_rows:
        return Verdict(
            "Unknown",
            Reason.NotEnoughData,
            f"{found.rows} rows from {servers} server processes; drift is judged from "
            f"{spec.min_rows} (spec.monitoring.drift.minRows)",
        )
    drifted = [(name, score) for name, score in found.features if score > spec.threshold]
    if drifted:
        named = ", ".join(
            f"{name} PSI {score:.2f} > {spec.threshold:g}"
            for name, score in drifted[:FEATURES_NAMED]
        )
        more = len(drifted) - FEATURES_NAMED
        if more > 0:
            named += f" and {more} more"
        return Verdict("True", Reason.DriftDetected, f"{named} over {found.rows} rows")
    top = found.features[0] if found.features else None
    largest = f"; largest {top[0]} PSI {top[1]:.2f}" if top else ""
    return Verdict(
        "False",
        Reason.NoDrift,
        f"no feature's PSI exceeds {spec.threshold:g} over {found.rows} rows{largest}",
    )


def worse(metric: LiveMetric, value: float, minimum: float) -> bool:
    """Whether `value` misses the bar: above it for error metrics, below it otherwise."""
    return value > minimum if metric in LIVE_LOWER_IS_BETTER else value < minimum


def applicable(metric: LiveMetric, task: str | None) -> bool:
    """Whether `metric` measures a model of `task` (unknown before any server answered)."""
    return task is None or METRIC_TASK[metric] == task


def judge_quality(monitoring: Monitoring, found: Aggregate) -> Verdict:
    spec = monitoring.quality
    if spec is None:
        return Verdict(None)
    if not applicable(spec.metric, found.task):
        fitting = " or ".join(str(m) for m, task in METRIC_TASK.items() if task == found.task)
        return Verdict(
            "Unknown",
            Reason.MetricNotApplicable,
            f"spec.monitoring.quality.metric {spec.metric} does not measure a {found.task} "
            f"model; use {fitting}",
        )
    labels = found.quality.labels
    value = found.quality.value(spec.metric)
    if value is None or labels < spec.min_labels:
        return Verdict(
            "Unknown",
            Reason.NotEnoughData,
            f"{labels} labelled predictions; quality is judged from {spec.min_labels} "
            "(spec.monitoring.quality.minLabels)",
        )
    bar = "≤" if spec.metric in LIVE_LOWER_IS_BETTER else "≥"
    if worse(spec.metric, value, spec.minimum):
        wrong = ">" if spec.metric in LIVE_LOWER_IS_BETTER else "<"
        return Verdict(
            "True",
            Reason.QualityDegraded,
            f"{spec.metric} {value:.4g} {wrong} {spec.minimum:g} over {labels} labels",
        )
    return Verdict(
        "False",
        Reason.QualityMet,
        f"{spec.metric} {value:.4g} {bar} {spec.minimum:g} over {labels} labels",
    )


def live_metric(monitoring: Monitoring, task: str | None) -> LiveMetric | None:
    if monitoring.quality is not None:
        return monitoring.quality.metric
    return DEFAULT_LIVE_METRIC.get(task or "")


def monitoring_status(
    observed: datetime,
    digest: str,
    found: Aggregate,
    servers: int,
    unreachable: int,
    metric: LiveMetric | None,
) -> dict[str, Any]:
    """status.monitoring as the API has it."""
    status: dict[str, Any] = {
        "observedAt": format_time(observed),
        "modelDigest": digest,
        "servers": servers,
        "unreachable": unreachable,
        "drift": {
            "rows": found.rows,
            "maxPsi": round(found.features[0][1], 6) if found.features else None,
            "features": [
                {"name": name, "psi": round(score, 6)}
                for name, score in found.features[:FEATURES_KEPT]
            ],
        },
        "quality": None,
    }
    if metric is not None:
        value = found.quality.value(metric) if applicable(metric, found.task) else None
        status["quality"] = {
            "metric": str(metric),
            "value": None if value is None else round(value, 6),
            "labels": found.quality.labels,
        }
    return status


def apply_verdicts(
    conditions: list[Condition] | None,
    drift: Verdict,
    quality: Verdict,
    generation: int | None,
) -> list[Condition]:
    """The conditions with Drifted and QualityDegraded as judged (removed when not judged)."""
    updated = list(conditions or [])
    for type_, verdict in ((DRIFTED, drift), (DEGRADED, quality)):
        if verdict.status is None:
            updated = remove_condition(updated, type_)
        else:
            updated = set_condition_(
                updated, type_, verdict.status, verdict.reason, verdict.message, generation
            )
    return updated


def turned_true(before: list[Condition] | None, type_: str, verdict: Verdict) -> bool:
    return verdict.status == "True" and (get_condition(before, type_) or {}).get("status") != (
        "True"
    )


def model_changed(conditions: list[Condition] | None, generation: int | None) -> list[Condition]:
    """A new model serves: what Drifted and QualityDegraded said was about the old one."""
    updated = list(conditions or [])
    for type_ in (DRIFTED, DEGRADED):
        if get_condition(updated, type_) is not None:
            updated = set_condition_(
                updated,
                type_,
                "Unknown",
                Reason.NotEnoughData,
                "a new model serves; its figures are being gathered",
                generation,
            )
    return updated


def without_monitoring(conditions: list[Condition] | None) -> list[Condition]:
    return remove_condition(remove_condition(conditions, DRIFTED), DEGRADED)


def due(body: dict[str, Any], now: datetime) -> bool:
    """Whether spec.monitoring.interval has passed since the last gathering."""
    monitoring = (body.get("spec") or {}).get("monitoring")
    status = body.get("status") or {}
    if monitoring is None or not (status.get("model") or {}).get("digest"):
        return False
    if body["metadata"].get("deletionTimestamp"):
        return False
    observed = parse_time((status.get("monitoring") or {}).get("observedAt"))
    interval = parse_duration(monitoring.get("interval") or "30s")
    return observed is None or now - observed >= interval


# --- finding and asking the servers ----------------------------------------------------------


def endpoints(context: Context, body: dict[str, Any]) -> list[Endpoint]:
    """The monitoring ports of the main track's ready server pods: pods made by a ReplicaSet
    of the ModelDeployment's own Deployment (by UID) from that Deployment's template."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    deployment = context.kube.get(
        "apps/v1", "Deployment", namespace, deployment_name(meta["name"], MAIN)
    )
    if deployment is None or provenance.controller_uid(deployment["metadata"]) != meta["uid"]:
        return []
    selector = ",".join(
        f"{k}={v}" for k, v in {**server_labels(meta["name"]), TRACK_LABEL: MAIN}.items()
    )
    template = deployment["spec"]["template"]["spec"]
    sets = {
        replica_set["metadata"]["uid"]
        for replica_set in context.kube.list_objects("apps/v1", "ReplicaSet", namespace, selector)
        if provenance.controller_uid(replica_set["metadata"]) == deployment["metadata"]["uid"]
    }
    bearer = token.for_deployment(meta["uid"])
    found = []
    for pod in context.kube.list_objects("v1", "Pod", namespace, selector):
        pod_meta, status = pod["metadata"], pod.get("status") or {}
        if (
            pod_meta.get("deletionTimestamp")
            or provenance.controller_uid(pod_meta) not in sets
            or not provenance.same_workload(pod["spec"], template)
            or not status.get("podIP")
            or (get_condition(status.get("conditions"), "Ready") or {}).get("status") != "True"
        ):
            continue
        host = status["podIP"]
        host = f"[{host}]" if ":" in host else host
        for container in pod["spec"]["containers"]:
            if container["name"] != COMPONENT:
                continue
            for port in container.get("ports") or []:
                if str(port.get("name", "")).startswith(MONITOR_PORT_PREFIX):
                    url = f"http://{host}:{port['containerPort']}"
                    found.append(Endpoint(pod_meta["name"], port["name"], url, bearer))
    return found


def _post(endpoint: Endpoint, path: str, document: dict[str, Any]) -> bytearray:
    """POST `document` to the process with its bearer token; the answer's body. Everything,
    from connecting to the answer's last byte, within TIMEOUT_SECONDS: a socket's timeout only
    bounds each read, and an answer trickled byte by byte would hold the round for ever."""
    url = urllib.parse.urlsplit(endpoint.url)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=TIMEOUT_SECONDS)
    cut = threading.Event()

    def cut_off() -> None:  # wakes the read blocked on the socket
        cut.set()
        sock = connection.sock  # None once closed
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    try:
        connection.connect()
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), cut_off)
        watchdog.start()
        try:
            connection.request(
                "POST",
                path,
                json.dumps(document).encode(),
                {
                    "Content-Type": "application/json",
                    token.HEADER: token.header_value(endpoint.token),
                },
            )
            answer = connection.getresponse()
            if answer.status != 200:
                raise OSError(f"answered HTTP {answer.status} {answer.reason}")
            body = bytearray()
            while chunk := answer.read(READ_CHUNK):
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise MalformedReport(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        finally:
            watchdog.cancel()
        if cut.is_set():
            raise TimeoutError(f"no whole answer within {TIMEOUT_SECONDS:g} s")
    except http.client.HTTPException as error:  # not HTTP, or cut off mid-answer
        if cut.is_set():
            raise TimeoutError(f"no whole answer within {TIMEOUT_SECONDS:g} s") from error
        raise OSError(f"not an HTTP answer: {error!r}") from error
    finally:
        connection.close()
    return body


def collect(endpoint: Endpoint) -> ProcessReport | None:
    """The process's report, or None when it did not answer with one."""
    try:
        body = _post(endpoint, "/monitoring/collect", {})
        with _decoding:
            return parse(json.loads(body))
    except (OSError, ValueError) as error:  # refused, timed out, an HTTP error, not our format
        log.info("monitoring: %s %s did not answer: %s", endpoint.pod, endpoint.port, error)
        return None


def to_relay(
    answers: list[tuple[Endpoint, ProcessReport]],
) -> tuple[list[tuple[Endpoint, Feedback]], int]:
    """The unmatched feedback this round relays, taken from every process in turn so that one
    flooded process does not crowd out the others, within RELAY_MAX_DELIVERIES and
    RELAY_MAX_BYTES; and how many entries are dropped. Nothing with a single process: no other
    could hold the request."""
    held = sum(len(report.unmatched) for _, report in answers)
    others = len(answers) - 1
    if others < 1:
        return [], 0
    chosen: list[tuple[Endpoint, Feedback]] = []
    deliveries = size = 0
    queues = [(source, iter(report.unmatched)) for source, report in answers if report.unmatched]
    while queues:
        remaining = []
        for source, queue in queues:
            item = next(queue, None)
            if item is None:
                continue
            cost = len(json.dumps({"id": item.id, "truth": item.truth})) * others
            if deliveries + others > RELAY_MAX_DELIVERIES or size + cost > RELAY_MAX_BYTES:
                return chosen, held - len(chosen)
            deliveries, size = deliveries + others, size + cost
            chosen.append((source, item))
            remaining.append((source, queue))
        queues = remaining
    return chosen, held - len(chosen)


def relay(answers: list[tuple[Endpoint, ProcessReport]]) -> int:
    """Hand the processes' unmatched feedback to all the other processes: the one that
    answered the request counts it; the others drop it. Returns how many entries the round's
    budget dropped."""
    chosen, dropped = to_relay(answers)
    calls = []
    for target, _ in answers:
        feedback = [
            {"id": item.id, "truth": item.truth} for source, item in chosen if source != target
        ]
        for start in range(0, len(feedback), RELAY_BATCH):
            calls.append((target, feedback[start : start + RELAY_BATCH]))

    def send(call: tuple[Endpoint, list[dict[str, Any]]]) -> None:
        target, batch = call
        try:
            _post(target, "/monitoring/feedback", {"feedback": batch})
        except (OSError, ValueError) as error:
            log.info("monitoring: relay to %s %s failed: %s", target.pod, target.port, error)

    if calls:
        with ThreadPoolExecutor(min(CONCURRENCY, len(calls))) as pool:
            list(pool.map(send, calls))
    return dropped


def gather(context: Context, body: dict[str, Any]) -> Gathered:
    """Ask every process; keep the answers for the served model; relay unmatched feedback."""
    digest = ((body.get("status") or {}).get("model") or {}).get("digest")
    targets = endpoints(context, body)
    if not targets:
        return Gathered()
    with ThreadPoolExecutor(min(CONCURRENCY, len(targets))) as pool:
        reports = list(pool.map(collect, targets))
    answers = [(t, r) for t, r in zip(targets, reports, strict=True) if r is not None]
    dropped = relay(answers)
    if dropped:
        meta = body["metadata"]
        log.warning(
            "monitoring: %s/%s: dropped %d unmatched feedback entries over this round's relay "
            "budget (%d deliveries, %d bytes)",
            meta["namespace"],
            meta["name"],
            dropped,
            RELAY_MAX_DELIVERIES,
            RELAY_MAX_BYTES,
        )
        metrics.relay_dropped(meta["namespace"], meta["name"], dropped)
    return Gathered(
        [report for _, report in answers if report.model == digest],
        unreachable=len(targets) - len(answers),
    )


# --- the timer --------------------------------------------------------------------------------


def _has_monitoring(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("monitoring"))


@kopf.timer(GROUP, VERSION, "modeldeployments", interval=TICK_SECONDS, when=_has_monitoring)
def monitoring_tick(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    plain = dict(body)
    if due(plain, datetime.now(UTC)):
        with metrics.reconciling(KIND):
            monitor(from_memo(memo), plain)


@kopf.on.delete(GROUP, VERSION, "modeldeployments", optional=True)
def monitoring_deleted(body: kopf.Body, **_: Any) -> None:
    metrics.forget_monitoring(body["metadata"]["namespace"], body["metadata"]["name"])


def monitor(context: Context, body: dict[str, Any]) -> None:
    """One round: gather, write status and conditions, post events, export metrics, and ask
    for a retrain while a condition is True."""
    meta = body["metadata"]
    try:
        spec = ModelDeploymentSpec.model_validate(body["spec"])
    except ValidationError:
        return  # the reconcile reports it
    if spec.monitoring is None:
        return
    digest = body["status"]["model"]["digest"]
    observed = datetime.now(UTC)
    # Gathered once, outside the write's retries: a collect hands over unmatched feedback once.
    gathered = gather(context, body)
    found = aggregate(gathered.reports)
    servers = len(gathered.reports)
    drift = judge_drift(spec.monitoring, found, servers)
    quality = judge_quality(spec.monitoring, found)
    metric = live_metric(spec.monitoring, found.task)
    status = monitoring_status(observed, digest, found, servers, gathered.unreachable, metric)

    def write(fresh: dict[str, Any]) -> dict[str, Any] | None:
        current = fresh.get("status") or {}
        if (current.get("model") or {}).get("digest") != digest:
            return None  # another model serves since: these figures are not its
        before = current.get("conditions")
        generation = fresh["metadata"].get("generation")
        conditions = apply_verdicts(before, drift, quality, generation)
        patch_status(context, KIND, fresh, {"monitoring": status, "conditions": conditions})
        for type_, verdict in ((DRIFTED, drift), (DEGRADED, quality)):
            if turned_true(before, type_, verdict):
                post_event(fresh, verdict.reason, verdict.message, warning=True)
        return fresh

    written = on_fresh(context, KIND, meta["namespace"], meta["name"], write)
    if written is None:
        return
    quality_status = status["quality"] or {}
    metrics.set_monitoring(
        meta["namespace"],
        meta["name"],
        digest,
        dict(found.features),
        drift.status,
        quality_status.get("metric"),
        quality_status.get("value"),
        quality.status,
    )
    for trigger, verdict in (
        (RetrainTrigger.DRIFT, drift),
        (RetrainTrigger.QUALITY_DEGRADED, quality),
    ):
        if verdict.status == "True":
            # Each for its own trigger; the second finds the first pending.
            retrain.consider(context, written, trigger, verdict.message)
