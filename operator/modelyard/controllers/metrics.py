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
    """Record an object's phase (None: it is gone) and refresh the per-phase counts."""
    with _lock:
        key = (kind, namespace, name)
        if phase is None:
            _phases.pop(key, None)
        else:
            _phases[key] = phase
        counts: dict[str, int] = {}
        for (object_kind, _, _), object_phase in _phases.items():
            if object_kind == kind:
                counts[object_phase] = counts.get(object_phase, 0) + 1
        for known in (
            "Pending",
            "Ingesting",
            "Running",
            "Progressing",
            "Ready",
            "Succeeded",
            "Failed",
        ):
            OBJECTS.labels(kind, known).set(counts.get(known, 0))
