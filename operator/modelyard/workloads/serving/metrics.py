"""Prometheus metrics, counted in plain dicts on the hot path and rendered on scrape.

prometheus_client's labelled metrics take a lock and a label lookup per update; counting into
dicts keyed by tuples is several times cheaper, and the library still does the exposition.
With --workers N each process counts its own requests and a scrape reaches one of them; every
series carries a `worker` label (the process id) so the workers' series never collide.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector

from modelyard.workloads.serving.drift import DriftMonitor
from modelyard.workloads.serving.feedback import Labels

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
# Seconds; inference on a loaded scikit-learn model is sub-millisecond to seconds.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.worker = str(os.getpid())
        self.model: str = ""
        self.load_seconds: float | None = None
        self.ready = False
        self.drift: DriftMonitor | None = None
        self.labels: Labels | None = None
        self._requests: dict[tuple[str, int], int] = {}
        # Per (endpoint, code): counts per bucket (last one is +Inf), then the sum.
        self._latency: dict[tuple[str, int], tuple[list[int], list[float]]] = {}
        self._classes: dict[Any, int] = {}
        self._rows = 0
        self._batches = 0
        self._batched = 0
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))
        ProcessCollector(registry=self._registry)

    def request(self, endpoint: str, code: int, seconds: float) -> None:
        key = (endpoint, code)
        self._requests[key] = self._requests.get(key, 0) + 1
        latency = self._latency.get(key)
        if latency is None:
            latency = self._latency[key] = ([0] * (len(BUCKETS) + 1), [0.0])
        latency[0][bisect_left(BUCKETS, seconds)] += 1
        latency[1][0] += seconds

    def predictions(self, labels: list[Any]) -> None:
        self._rows += len(labels)
        classes = self._classes
        for label in labels:
            classes[label] = classes.get(label, 0) + 1

    def rows(self, count: int) -> None:
        self._rows += count

    def batch(self, requests: int) -> None:
        self._batches += 1
        self._batched += requests

    def render(self) -> bytes:
        return generate_latest(self._registry)

    def collect(self) -> Iterator[Metric]:
        worker, model = self.worker, self.model
        requests = CounterMetricFamily(
            "modelyard_server_requests",
            "HTTP requests by endpoint and status code.",
            labels=["model", "endpoint", "status", "worker"],
        )
        for (endpoint, code), count in sorted(self._requests.items()):
            requests.add_metric([model, endpoint, str(code), worker], count)
        yield requests

        latency = HistogramMetricFamily(
            "modelyard_server_request_duration_seconds",
            "Time from a request's last byte to its response being written.",
            labels=["model", "endpoint", "status", "worker"],
        )
        for (endpoint, code), (counts, total) in sorted(self._latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            latency.add_metric([model, endpoint, str(code), worker], buckets, total[0])
        yield latency

        predicted = CounterMetricFamily(
            "modelyard_server_predictions",
            "Predicted rows by class (classifiers).",
            labels=["model", "class", "worker"],
        )
        for label, count in sorted(self._classes.items(), key=lambda item: str(item[0])):
            predicted.add_metric([model, str(label), worker], count)
        yield predicted
        rows = CounterMetricFamily(
            "modelyard_server_predicted_rows", "Rows predicted.", labels=["model", "worker"]
        )
        rows.add_metric([model, worker], self._rows)
        yield rows
        batches = CounterMetricFamily(
            "modelyard_server_batches",
            "Model calls made for batched predictions (adaptive batching); the batched "
            "requests divided by this is the mean batch size.",
            labels=["model", "worker"],
        )
        batches.add_metric([model, worker], self._batches)
        yield batches
        batched = CounterMetricFamily(
            "modelyard_server_batched_requests",
            "Prediction requests answered through adaptive batching.",
            labels=["model", "worker"],
        )
        batched.add_metric([model, worker], self._batched)
        yield batched

        ready = GaugeMetricFamily(
            "modelyard_server_model_ready",
            "1 once the model is loaded.",
            labels=["model", "worker"],
        )
        ready.add_metric([model, worker], 1.0 if self.ready else 0.0)
        yield ready
        if self.load_seconds is not None:
            load = GaugeMetricFamily(
                "modelyard_server_model_load_seconds",
                "Time to fetch, verify and load the model.",
                labels=["model", "worker"],
            )
            load.add_metric([model, worker], self.load_seconds)
            yield load

        if self.drift is not None:
            window = GaugeMetricFamily(
                "modelyard_server_drift_window_rows",
                "Recent input rows the drift scores are computed over.",
                labels=["model", "worker"],
            )
            window.add_metric([model, worker], self.drift.rows)
            yield window
            drift = GaugeMetricFamily(
                "modelyard_server_feature_drift_psi",
                "Population stability index of recent inputs against the training baseline "
                "(< 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift).",
                labels=["model", "feature", "worker"],
            )
            for feature, score in self.drift.scores().items():
                drift.add_metric([model, feature, worker], score)
            yield drift

        if self.labels is not None:
            yield from _quality(self.labels, model, worker)


def _quality(labels: Labels, model: str, worker: str) -> Iterator[Metric]:
    feedback = CounterMetricFamily(
        "modelyard_server_feedback_labels",
        "Ground-truth values received, by outcome: matched (a prediction of this process, "
        "counted in the live metric) or unmatched (held for the operator to relay).",
        labels=["model", "outcome", "worker"],
    )
    feedback.add_metric([model, "matched", worker], labels.matched)
    feedback.add_metric([model, "unmatched", worker], labels.unmatched)
    yield feedback
    sums = labels.sums()
    window = "over this process's last labelled rows"
    live = (
        [("accuracy", f"Share of correct predictions {window}.")]
        if labels.classifier
        else [
            ("mae", f"Mean absolute error {window}."),
            ("rmse", f"Root mean squared error {window}."),
        ]
    )
    for metric, help_text in live:
        value = sums.value(metric)
        gauge = GaugeMetricFamily(
            f"modelyard_server_live_{metric}", help_text, labels=["model", "worker"]
        )
        if value is not None:  # no series before the first label, rather than a made-up value
            gauge.add_metric([model, worker], value)
        yield gauge


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect()
