"""The operator's own Prometheus metrics: reconciles, errors, durations, objects by phase, and
what the monitoring of ModelDeployments found."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "modelyard_reconciles_total", "Reconciliations by kind and result.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "modelyard_reconcile_duration_seconds", "Time to reconcile one object.", ["kind"]
)
OBJECTS = Gauge("modelyard_objects", "Objects by kind and phase.", ["kind", "phase"])
RUNS = Counter(
    "modelyard_trainingjob_runs_total",
    "Finished training runs by TrainingJob and result.",
    ["namespace", "trainingjob", "result"],
)

_phases: dict[tuple[str, str, str], str] = {}
_lock = threading.Lock()


@contextmanager
def reconciling(kind: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except Exception:
        RECONCILES.labels(kind, "error").inc()
        raise
    else:
        RECONCILES.labels(kind, "success").inc()
    finally:
        RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)


def set_phase(kind: str, namespace: str, name: str, phase: str | None) -> None:
    """Record an object's phase (None: it is gone); the per-phase gauges move by one, so the
    cost does not grow with the number of objects."""
    with _lock:
        key = (kind, namespace, name)
        previous = _phases.pop(key, None) if phase is None else _phases.get(key)
        if phase is not None:
            _phases[key] = phase
        if previous == phase:
            return
        if previous is not None:
            OBJECTS.labels(kind, previous).dec()
        if phase is not None:
            OBJECTS.labels(kind, phase).inc()


# What the monitoring of ModelDeployments found, per ModelDeployment: the series of one that is
# deleted (or of a feature no longer reported) are removed, not left at their last value.
FEATURE_DRIFT = Gauge(
    "modelyard_modeldeployment_feature_drift_psi",
    "PSI of a feature over recent requests of all the servers of a ModelDeployment.",
    ["namespace", "modeldeployment", "feature"],
)
DRIFTED = Gauge(
    "modelyard_modeldeployment_drifted",
    "1 while the ModelDeployment's Drifted condition is True, 0 while False.",
    ["namespace", "modeldeployment"],
)
LIVE_METRIC = Gauge(
    "modelyard_modeldeployment_live_metric",
    "The live metric from feedback over all the servers of a ModelDeployment.",
    ["namespace", "modeldeployment", "metric"],
)
QUALITY_DEGRADED = Gauge(
    "modelyard_modeldeployment_quality_degraded",
    "1 while the ModelDeployment's QualityDegraded condition is True, 0 while False.",
    ["namespace", "modeldeployment"],
)

RELAY_DROPPED = Counter(
    "modelyard_monitoring_relay_dropped_total",
    "Unmatched feedback entries not relayed to the other server processes of a "
    "ModelDeployment: over the budget of one gathering round.",
    ["namespace", "modeldeployment"],
)

# Per ModelDeployment: the features and metric with a series, and the model they are about.
_monitored: dict[tuple[str, str], tuple[frozenset[str], str | None, str]] = {}


def set_monitoring(
    namespace: str,
    name: str,
    model: str,
    features: dict[str, float],
    drifted: str | None,
    metric: str | None,
    value: float | None,
    degraded: str | None,
) -> None:
    """Record what a gathering of `model`'s servers found. `drifted` and `degraded` are the
    conditions' statuses: None (not judged) removes the series; Unknown (too few rows for now,
    e.g. while a pod restarts) keeps the last 0 or 1 for the same model, so that an alert's
    `for:` window does not start again; a None value removes the live metric's series."""
    key = (namespace, name)
    with _lock:
        old_features, old_metric, old_model = _monitored.get(key, (frozenset(), None, model))
        for feature in old_features - features.keys():
            FEATURE_DRIFT.remove(namespace, name, feature)
        for feature, psi in features.items():
            FEATURE_DRIFT.labels(namespace, name, feature).set(psi)
        if old_metric is not None and (old_metric != metric or value is None):
            LIVE_METRIC.remove(namespace, name, old_metric)
        kept_metric = metric if value is not None else None
        if metric is not None and value is not None:
            LIVE_METRIC.labels(namespace, name, metric).set(value)
        for gauge, judged in ((DRIFTED, drifted), (QUALITY_DEGRADED, degraded)):
            if judged in ("True", "False"):
                gauge.labels(namespace, name).set(int(judged == "True"))
            elif judged is None or old_model != model:  # a new model's figures say nothing yet
                _remove(gauge, namespace, name)
        _monitored[key] = (frozenset(features), kept_metric, model)


def relay_dropped(namespace: str, name: str, entries: int) -> None:
    RELAY_DROPPED.labels(namespace, name).inc(entries)


def forget_monitoring(namespace: str, name: str) -> None:
    """Remove every monitoring series of a ModelDeployment (deleted, or no longer monitored)."""
    with _lock:
        features, metric, _ = _monitored.pop((namespace, name), (frozenset(), None, ""))
        for feature in features:
            FEATURE_DRIFT.remove(namespace, name, feature)
        if metric is not None:
            LIVE_METRIC.remove(namespace, name, metric)
        _remove(DRIFTED, namespace, name)
        _remove(QUALITY_DEGRADED, namespace, name)
        _remove(RELAY_DROPPED, namespace, name)


def _remove(series: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set
        series.remove(*labels)
