"""The operator's own Prometheus metrics: reconciles, errors, durations, objects by phase."""

from __future__ import annotations

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
