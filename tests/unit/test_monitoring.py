"""The operator's side of ModelDeployment monitoring and automatic retrains, as pure functions:
aggregation across server processes, the Drifted and QualityDegraded verdicts and their
transitions, the cooldown, the causes runs record, and the Dataset refresh token."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from urllib3.exceptions import ReadTimeoutError

from modelyard.api.modeldeployment import Monitoring
from modelyard.api.trainingjob import RetrainTrigger, TrainingJobSpec
from modelyard.controllers import metrics, retrain
from modelyard.controllers import monitoring as gatherer
from modelyard.controllers.conditions import get_condition
from modelyard.controllers.dataset import REFRESH_ANNOTATION, refresh_token
from modelyard.controllers.monitoring import (
    Aggregate,
    Endpoint,
    Verdict,
    aggregate,
    apply_verdicts,
    due,
    judge_drift,
    judge_quality,
    model_changed,
    monitoring_status,
    turned_true,
    without_monitoring,
)
from modelyard.controllers.refresh import format_time
from modelyard.controllers.trainingjob import _run_cause
from modelyard.monitoring import token
from modelyard.monitoring.psi import psi, shares
from modelyard.monitoring.quality import QualitySums
from modelyard.monitoring.report import (
    MAX_UNMATCHED,
    FeatureCounts,
    Feedback,
    MalformedReport,
    ProcessReport,
    parse,
)
from modelyard.resources.jobs import ingest_job_name
from tests.unit.argocd_health import assess, find_lua

DIGEST = "sha256:" + "a" * 64
BASELINE = [0.25, 0.25, 0.25, 0.25]


def report(
    counts: dict[str, list[int]],
    quality: QualitySums | None = None,
    expected: list[float] | None = None,
    model: str = DIGEST,
) -> ProcessReport:
    return ProcessReport(
        model=model,
        worker="0",
        task="classification",
        rows=max((sum(c) for c in counts.values()), default=0),
        features=[FeatureCounts(name, c, expected or BASELINE) for name, c in counts.items()],
        quality=quality or QualitySums(),
    )


# --- aggregation across processes ---------------------------------------------------------------


def test_psi_is_computed_from_the_summed_counts_not_from_a_mean_of_per_process_scores() -> None:
    # A busy process that matches the baseline and a quiet one that sees one bin only.
    busy = report({"vibration": [250, 250, 250, 250]})
    quiet = report({"vibration": [0, 0, 0, 10]})
    found = aggregate([busy, quiet])
    summed = [250, 250, 250, 260]
    assert found.rows == 1010
    assert found.features == [("vibration", pytest.approx(psi(BASELINE, shares(summed))))]
    mean_of_scores = (psi(BASELINE, shares([250] * 4)) + psi(BASELINE, shares([0, 0, 0, 10]))) / 2
    assert found.features[0][1] < 0.01 < mean_of_scores


def test_features_are_ranked_by_psi_and_one_with_a_disagreeing_baseline_is_left_out() -> None:
    first = report({"a": [10, 10, 10, 10], "b": [40, 0, 0, 0]})
    second = report({"a": [10, 10, 10, 10], "b": [40, 0, 0, 0]})
    other_baseline = report({"c": [5, 5, 5, 5]}, expected=[0.7, 0.1, 0.1, 0.1])
    same_name_other_bins = report({"a": [1, 2, 3, 4]}, expected=[0.1, 0.2, 0.3, 0.4])
    found = aggregate([first, second, other_baseline, same_name_other_bins])
    assert [name for name, _ in found.features] == ["b", "c"]  # "a" disagrees; b drifted most
    assert found.features[0][1] > found.features[1][1]


def test_quality_sums_add_up_across_processes() -> None:
    found = aggregate(
        [
            report({}, QualitySums(labels=30, correct=27)),
            report({}, QualitySums(labels=10, correct=3)),
        ]
    )
    assert found.quality == QualitySums(labels=40, correct=30)
    assert found.quality.value("accuracy") == 0.75


def test_status_names_the_model_its_figures_are_for_and_lists_features_largest_first() -> None:
    found = Aggregate(1200, [("vibration", 0.61), ("temperature", 0.1)], QualitySums(), "x")
    observed = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)
    status = monitoring_status(observed, DIGEST, found, 4, 1, None)
    assert status["modelDigest"] == DIGEST
    assert (status["servers"], status["unreachable"]) == (4, 1)
    assert status["drift"]["maxPsi"] == 0.61
    assert [f["name"] for f in status["drift"]["features"]] == ["vibration", "temperature"]


# --- verdicts ---------------------------------------------------------------------------------


def monitoring(**spec: Any) -> Monitoring:
    return Monitoring.model_validate(spec)


def test_drift_is_unknown_below_min_rows_true_above_threshold_false_otherwise() -> None:
    spec = monitoring(drift={"threshold": 0.25, "minRows": 1000})
    few = Aggregate(999, [("vibration", 3.0)], QualitySums(), "classification")
    assert judge_drift(spec, few, 4).status == "Unknown"
    assert judge_drift(spec, few, 4).reason == "NotEnoughData"
    drifted = Aggregate(1200, [("vibration", 0.61), ("load", 0.1)], QualitySums(), "regression")
    verdict = judge_drift(spec, drifted, 4)
    assert (verdict.status, verdict.reason) == ("True", "DriftDetected")
    assert verdict.message == "vibration PSI 0.61 > 0.25 over 1200 rows"
    calm = Aggregate(1200, [("vibration", 0.2)], QualitySums(), "regression")
    assert (judge_drift(spec, calm, 4).status, judge_drift(spec, calm, 4).reason) == (
        "False",
        "NoDrift",
    )


def test_drift_message_names_at_most_three_features() -> None:
    spec = monitoring(drift={"threshold": 0.1, "minRows": 10})
    features = [(f"f{i}", 1.0 - i / 10) for i in range(5)]
    verdict = judge_drift(spec, Aggregate(50, features, QualitySums(), None), 1)
    assert verdict.message.startswith("f0 PSI 1.00 > 0.1, f1 PSI 0.90 > 0.1, f2 PSI 0.80 > 0.1")
    assert "and 2 more" in verdict.message


def test_without_drift_or_quality_spec_there_is_no_verdict() -> None:
    found = Aggregate(5000, [("x", 9.0)], QualitySums(labels=100), "classification")
    assert judge_drift(monitoring(), found, 1).status is None
    assert judge_quality(monitoring(), found).status is None


@pytest.mark.parametrize(
    ("metric", "minimum", "sums", "expected"),
    [
        ("accuracy", 0.8, QualitySums(labels=100, correct=70), "True"),
        ("accuracy", 0.8, QualitySums(labels=100, correct=80), "False"),
        # Error metrics: lower is better, the minimum is the most allowed.
        ("mae", 2.0, QualitySums(labels=100, sum_abs_error=250.0), "True"),
        ("mae", 2.0, QualitySums(labels=100, sum_abs_error=150.0), "False"),
        ("rmse", 1.0, QualitySums(labels=100, sum_squared_error=400.0), "True"),
        ("accuracy", 0.8, QualitySums(labels=10, correct=0), "Unknown"),
    ],
)
def test_quality_verdict_follows_the_metric_direction(
    metric: str, minimum: float, sums: QualitySums, expected: str
) -> None:
    spec = monitoring(quality={"metric": metric, "minimum": minimum, "minLabels": 50})
    verdict = judge_quality(spec, Aggregate(0, [], sums, None))
    assert verdict.status == expected


def test_a_warning_is_due_only_on_the_transition_to_true() -> None:
    true = Verdict("True", "DriftDetected", "x PSI 1.00 > 0.25 over 300 rows")
    conditions = apply_verdicts(None, Verdict("Unknown", "NotEnoughData", ""), Verdict(None), 1)
    assert turned_true(conditions, "Drifted", true)
    conditions = apply_verdicts(conditions, true, Verdict(None), 1)
    assert not turned_true(conditions, "Drifted", true)  # still True: no second event
    conditions = apply_verdicts(conditions, Verdict("False", "NoDrift", ""), Verdict(None), 1)
    assert turned_true(conditions, "Drifted", true)
    assert get_condition(conditions, "QualityDegraded") is None


def test_a_new_model_resets_what_the_conditions_said_about_the_old_one() -> None:
    true = Verdict("True", "DriftDetected", "x PSI 1.00 > 0.25 over 300 rows")
    conditions = apply_verdicts(None, true, Verdict(None), 1)
    reset = model_changed(conditions, 1)
    drifted = get_condition(reset, "Drifted")
    assert drifted is not None
    assert (drifted["status"], drifted["reason"]) == ("Unknown", "NotEnoughData")
    assert get_condition(reset, "QualityDegraded") is None
    assert get_condition(without_monitoring(reset), "Drifted") is None


def test_a_drifted_model_that_serves_is_still_healthy_for_argo_cd() -> None:
    lua = find_lua()
    if lua is None:
        pytest.skip("lua5.1 is not installed (make test-deps)")
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Serving",
        "message": "2 replicas serve",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    true = Verdict("True", "DriftDetected", "vibration PSI 0.61 > 0.25 over 1200 rows")
    quality = Verdict("True", "QualityDegraded", "accuracy 0.5 < 0.8 over 100 labels")
    conditions = apply_verdicts([ready], true, quality, 2)
    body = {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "pm", "namespace": "ml", "generation": 2},
        "spec": {},
        "status": {"observedGeneration": 2, "phase": "Ready", "conditions": conditions},
    }
    assert assess("ModelDeployment", body, lua).status == "Healthy"


def test_gathering_is_due_once_the_interval_has_passed_since_the_last() -> None:
    now = datetime(2026, 12, 5, 7, 0, 0, tzinfo=UTC)
    body: dict[str, Any] = {
        "metadata": {"name": "pm"},
        "spec": {"monitoring": {"interval": "30s"}},
        "status": {"model": {"digest": DIGEST}},
    }
    assert due(body, now)
    body["status"]["monitoring"] = {"observedAt": format_time(now - timedelta(seconds=29))}
    assert not due(body, now)
    body["status"]["monitoring"] = {"observedAt": format_time(now - timedelta(seconds=30))}
    assert due(body, now)
    assert not due({**body, "status": {}}, now)  # nothing served yet: nothing to gather


# --- retrains ---------------------------------------------------------------------------------


def test_cooldown_counts_from_the_last_request() -> None:
    last = {"requestedAt": "2026-12-05T07:00:00Z"}
    assert retrain.cooldown_end(last, "1h30m") == datetime(2026, 12, 5, 8, 30, tzinfo=UTC)
    assert retrain.cooldown_end(None, "1h") is None


def test_a_retrain_is_pending_until_its_run_starts_or_it_is_abandoned() -> None:
    last = {"requestedAt": "2026-12-05T07:00:00Z", "refresh": "retrain-x", "cause": "c"}
    assert retrain.pending(last)
    assert not retrain.pending(retrain.started(last, "run-4"))
    assert not retrain.pending(retrain.abandoned(last))
    assert not retrain.pending(None)


def test_the_cause_names_the_trigger_the_deployment_and_the_evidence() -> None:
    cause = retrain.cause_of(
        RetrainTrigger.DRIFT, "pm-server", "vibration PSI 0.61 > 0.25 over 1200 rows"
    )
    assert cause == "Drift in ModelDeployment pm-server: vibration PSI 0.61 > 0.25 over 1200 rows"


def test_refresh_tokens_sort_by_time() -> None:
    earlier = retrain.refresh_token(datetime(2026, 12, 5, 7, 0, 0, 1, tzinfo=UTC))
    later = retrain.refresh_token(datetime(2026, 12, 5, 7, 0, 1, tzinfo=UTC))
    assert earlier < later
    assert len(later) <= 63


def dataset(annotations: dict[str, str], status: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": "sensors", "uid": "u-1", "generation": 1, "annotations": annotations}
    return {"metadata": meta, "status": status}


def test_ingest_job_names_of_datasets_never_retrained_stay_as_they_were() -> None:
    plain = {"annotations": {REFRESH_ANNOTATION: "7"}}
    assert refresh_token(plain) == "7"
    retrained = {"annotations": {REFRESH_ANNOTATION: "7", retrain.RETRAIN_ANNOTATION: "retrain-x"}}
    assert refresh_token(retrained) != refresh_token(plain)
    assert ingest_job_name("sensors", "u-1", 1, refresh_token(retrained)) != ingest_job_name(
        "sensors", "u-1", 1, refresh_token(plain)
    )


def test_the_run_starts_once_the_refresh_the_retrain_asked_for_has_ingested() -> None:
    token = "retrain-20261205t070000000000z"
    last = {"cause": "Drift in ModelDeployment pm: x", "refresh": token, "requestedAt": ASKED}
    annotations = {retrain.RETRAIN_ANNOTATION: token}
    job = ingest_job_name("sensors", "u-1", 1, refresh_token({"annotations": annotations}))
    status = {"lastAutomaticRetrain": last}
    ingesting = dataset(annotations, {"phase": "Ingesting", "ingestJob": job})
    assert retrain.refresh_outcome(status, ingesting) is None
    # Annotated, and the Dataset controller has yet to start the ingestion.
    before = dataset(annotations, {"phase": "Ready", "ingestJob": "sensors-ingest-old"})
    assert retrain.refresh_outcome(status, before, SOON) is None
    ready = dataset(annotations, {"phase": "Ready", "ingestJob": job})
    assert retrain.refresh_outcome(status, ready) == retrain.Outcome(run_cause=last["cause"])
    failed = dataset(
        annotations,
        {
            "phase": "Failed",
            "ingestJob": job,
            "conditions": [{"type": "Ready", "reason": "SourceNotFound", "message": "gone"}],
        },
    )
    outcome = retrain.refresh_outcome(status, failed)
    assert outcome is not None and outcome.abandoned is not None
    assert "SourceNotFound: gone" in outcome.abandoned
    assert retrain.refresh_outcome({}, ready) is None


ASKED = "2026-12-05T07:00:00Z"
SOON, LATE = (datetime(2026, 12, 5, 7, m, tzinfo=UTC) for m in (2, 10))


def test_a_newer_retrain_token_on_the_dataset_serves_the_older_request() -> None:
    # Two TrainingJobs on one Dataset asked a moment apart: B's token replaced A's.
    token_a, token_b = "retrain-20261205t070000000000z", "retrain-20261205t070003000000z"
    status_a = {
        "lastAutomaticRetrain": {"cause": "Drift in ModelDeployment a: x", "refresh": token_a}
        | {"requestedAt": ASKED}
    }
    annotations = {retrain.RETRAIN_ANNOTATION: token_b}
    job = ingest_job_name("sensors", "u-1", 1, refresh_token({"annotations": annotations}))
    ingesting = dataset(annotations, {"phase": "Ingesting", "ingestJob": job})
    assert retrain.refresh_outcome(status_a, ingesting, LATE) is None  # waits for B's ingestion
    ready = dataset(annotations, {"phase": "Ready", "ingestJob": job})
    assert retrain.refresh_outcome(status_a, ready, LATE) == retrain.Outcome(
        run_cause="Drift in ModelDeployment a: x"
    )


def test_a_refresh_that_never_starts_abandons_the_retrain_within_a_bound() -> None:
    token = "retrain-20261205t070000000000z"
    status = {"lastAutomaticRetrain": {"cause": "c", "refresh": token, "requestedAt": ASKED}}
    # The annotation never landed (removed, or an older operator crashed before writing it):
    # the Dataset's ingestion is one from before the request.
    old_job = ingest_job_name("sensors", "u-1", 1, refresh_token({"annotations": {}}))
    idle = dataset(
        {}, {"phase": "Ready", "ingestJob": old_job, "lastRefreshTime": "2026-12-04T00:00:00Z"}
    )
    assert retrain.refresh_outcome(status, idle, SOON) is None
    outcome = retrain.refresh_outcome(status, idle, LATE)
    assert outcome is not None and outcome.abandoned is not None
    assert "did not start the refresh within 10 minutes" in outcome.abandoned
    # The Dataset controller refused the refresh before making a Job: abandoned at once, with
    # the Dataset's reason.
    refused = dataset(
        {retrain.RETRAIN_ANNOTATION: token},
        {
            "phase": "Failed",
            "ingestJob": old_job,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "LocationNotAllowed", "message": "m"}
            ],
        },
    )
    outcome = retrain.refresh_outcome(status, refused, SOON)
    assert outcome == retrain.Outcome(
        abandoned="Dataset sensors refused the refresh: LocationNotAllowed: m"
    )


def training_spec(**extra: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "sensors"},
            "estimator": {"class": "sklearn.ensemble.RandomForestClassifier"},
            **extra,
        }
    )


def test_every_run_records_why_it_started() -> None:
    version, other = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    spec = training_spec(retrainOn=["DatasetChange"])
    assert _run_cause(spec, None, 1, version, None) == "first run (generation 1)"
    latest = {"generation": 1, "datasetVersion": other}
    assert _run_cause(spec, latest, 3, version, None) == "spec changed (generation 3)"
    assert _run_cause(spec, latest, 1, version, None) == f"new Dataset version {version}"
    assert _run_cause(training_spec(), latest, 1, version, None) is None
    # A retrain's refresh trains on the current version even unchanged, without DatasetChange.
    same = {"generation": 1, "datasetVersion": version}
    assert _run_cause(training_spec(), same, 1, version, "Drift in …") == "Drift in …"


# --- operator metrics -------------------------------------------------------------------------


def sample(name: str, **labels: str) -> float | None:
    value: float | None = REGISTRY.get_sample_value(name, labels)
    return value


def test_monitoring_series_follow_the_deployment_and_go_with_it() -> None:
    who = {"namespace": "unit-ns", "modeldeployment": "pm"}
    features = {"vibration": 0.6, "load": 0.1}
    metrics.set_monitoring("unit-ns", "pm", DIGEST, features, "True", "mae", 1.5, None)
    assert sample("modelyard_modeldeployment_feature_drift_psi", **who, feature="load") == 0.1
    assert sample("modelyard_modeldeployment_drifted", **who) == 1
    assert sample("modelyard_modeldeployment_live_metric", **who, metric="mae") == 1.5
    assert sample("modelyard_modeldeployment_quality_degraded", **who) is None
    metrics.set_monitoring(
        "unit-ns", "pm", DIGEST, {"vibration": 0.1}, "False", "mae", None, "False"
    )
    assert sample("modelyard_modeldeployment_feature_drift_psi", **who, feature="load") is None
    assert sample("modelyard_modeldeployment_drifted", **who) == 0
    assert sample("modelyard_modeldeployment_live_metric", **who, metric="mae") is None
    metrics.forget_monitoring("unit-ns", "pm")
    assert sample("modelyard_modeldeployment_feature_drift_psi", **who, feature="vibration") is None
    assert sample("modelyard_modeldeployment_drifted", **who) is None
    assert sample("modelyard_modeldeployment_quality_degraded", **who) is None


def test_a_dip_to_unknown_keeps_the_last_verdict_for_the_same_model_only() -> None:
    who = {"namespace": "unit-ns", "modeldeployment": "dip"}
    metrics.set_monitoring("unit-ns", "dip", DIGEST, {}, "True", None, None, "False")
    # A pod restarted: too few rows for now. The alert's `for:` window must not start again.
    metrics.set_monitoring("unit-ns", "dip", DIGEST, {}, "Unknown", None, None, "Unknown")
    assert sample("modelyard_modeldeployment_drifted", **who) == 1
    assert sample("modelyard_modeldeployment_quality_degraded", **who) == 0
    # Another model serves: what was found about the old one no longer holds.
    other = "sha256:" + "b" * 64
    metrics.set_monitoring("unit-ns", "dip", other, {}, "Unknown", None, None, "Unknown")
    assert sample("modelyard_modeldeployment_drifted", **who) is None
    assert sample("modelyard_modeldeployment_quality_degraded", **who) is None
    metrics.forget_monitoring("unit-ns", "dip")


# --- quality metric and task ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "task", "sums"),
    [
        # A regressor's accuracy is always 0: it would be Degraded, and retrain, for ever.
        ("accuracy", "regression", QualitySums(labels=500, sum_squared_error=0.1)),
        # A classifier's errors are never summed: it would always meet the bar.
        ("rmse", "classification", QualitySums(labels=500, correct=10)),
    ],
)
def test_a_live_metric_that_does_not_fit_the_models_task_is_not_judged(
    metric: str, task: str, sums: QualitySums
) -> None:
    spec = monitoring(quality={"metric": metric, "minimum": 0.5})
    found = Aggregate(0, [], sums, task)
    verdict = judge_quality(spec, found)
    assert (verdict.status, verdict.reason) == ("Unknown", "MetricNotApplicable")
    assert verdict.message.startswith(f"spec.monitoring.quality.metric {metric} does not")
    status = monitoring_status(datetime.now(UTC), DIGEST, found, 1, 0, spec.quality.metric)
    assert status["quality"] == {"metric": metric, "value": None, "labels": 500}


# --- asking the servers -----------------------------------------------------------------------

REPORT = ProcessReport(DIGEST, "0", "classification", 0).to_json()


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], str]]:
    """A loopback HTTP server answering every POST with the given function; its URL."""
    servers: list[ThreadingHTTPServer] = []

    def serve(answer: Callable[[BaseHTTPRequestHandler], None]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                answer(self)

            def log_message(self, *_: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield serve
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def reply(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_the_gatherer_bears_the_deployments_monitoring_token(server: Any) -> None:
    seen: list[tuple[str, str | None]] = []

    def answer(handler: BaseHTTPRequestHandler) -> None:
        seen.append((handler.path, handler.headers.get("Authorization")))
        if handler.path == "/monitoring/collect":
            reply(
                handler, json.dumps(REPORT | {"unmatched": [{"id": "r1", "truth": [1]}]}).encode()
            )
        else:
            reply(handler, b'{"matched": 0}')

    bearer = token.for_deployment("uid-of-the-modeldeployment")
    endpoints = [Endpoint(f"pod-{i}", "monitor-0", server(answer), bearer) for i in range(2)]
    reports = [gatherer.collect(endpoint) for endpoint in endpoints]
    assert all(reports)
    gatherer.relay([(e, r) for e, r in zip(endpoints, reports, strict=True) if r is not None])
    assert (
        sorted(path for path, _ in seen)
        == ["/monitoring/collect"] * 2 + ["/monitoring/feedback"] * 2
    )
    assert {header for _, header in seen} == {f"Bearer {bearer}"}


def test_an_answer_trickled_past_the_deadline_counts_as_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each byte comes well within the timeout; the whole answer does not.
    monkeypatch.setattr(gatherer, "TIMEOUT_SECONDS", 0.5)
    listener = socket.create_server(("127.0.0.1", 0))
    body = json.dumps(REPORT).encode()
    body = body[:-1] + b" " * 20 + b"}"

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            try:
                for byte in body:
                    connection.sendall(bytes([byte]))
                    time.sleep(0.1 if byte == 32 else 0)
            except OSError:
                pass  # cut off by the gatherer

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    assert gatherer.collect(Endpoint("pod", "monitor-0", url, "t")) is None
    thread.join()
    listener.close()


def test_an_answer_larger_than_the_cap_is_not_read(server: Any) -> None:
    # A valid report, padded past the cap: a real one is far smaller.
    body = json.dumps(REPORT).encode()
    padded = body[:-1] + b" " * (gatherer.MAX_ANSWER_BYTES - len(body) + 1) + b"}"
    url = server(lambda handler: reply(handler, padded))
    assert gatherer.MAX_ANSWER_BYTES <= 8 * 1024 * 1024
    assert gatherer.collect(Endpoint("pod", "monitor-0", url, "t")) is None
    url = server(lambda handler: reply(handler, body))
    assert gatherer.collect(Endpoint("pod", "monitor-0", url, "t")) is not None


def test_a_report_with_more_bins_than_any_baseline_has_is_malformed() -> None:
    feature = {"name": "f", "counts": [0] * 65, "expected": [0.0] * 65}
    with pytest.raises(MalformedReport, match="counts: more than 64"):
        parse(REPORT | {"drift": {"rows": 0, "features": [feature]}})


def flooded(processes: int) -> list[tuple[Endpoint, ProcessReport]]:
    """Every process holds all the feedback it may, for ids no process holds."""
    return [
        (
            Endpoint(f"pod-{p}", "monitor-0", f"http://10.0.0.{p}:9090", "t"),
            ProcessReport(
                DIGEST,
                "0",
                "regression",
                0,
                unmatched=[Feedback(f"{p}-{i}", [1.0]) for i in range(MAX_UNMATCHED)],
            ),
        )
        for p in range(processes)
    ]


@pytest.mark.parametrize("processes", [2, 16])
def test_relaying_stays_within_a_budget_per_round_shared_by_every_process(
    processes: int,
) -> None:
    answers = flooded(processes)
    chosen, dropped = gatherer.to_relay(answers)
    deliveries = len(chosen) * (processes - 1)
    assert deliveries <= gatherer.RELAY_MAX_DELIVERIES
    assert dropped == processes * MAX_UNMATCHED - len(chosen)
    # Taken from every process in turn: a flooded one does not crowd out the others.
    per_source = [sum(1 for source, _ in chosen if source == e) for e, _ in answers]
    assert max(per_source) - min(per_source) <= 1


def test_a_single_process_relays_nothing() -> None:
    assert gatherer.to_relay(flooded(1)) == ([], 0)


# --- which deployments retrain ------------------------------------------------------------------


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ml", "name": "pm", "uid": "u"},
        "spec": {"model": {"trainingJobRef": {"name": "tj"}}, **spec},
        "status": {"model": {"trainingJob": "tj", "digest": DIGEST}},
    }


@pytest.mark.parametrize(
    "spec",
    [
        # A pinned run (a rollback): a new run could never serve here.
        {"model": {"trainingJobRef": {"name": "tj", "run": "run-2"}}},
        # A canary takes a share: a person is deciding between two models.
        {
            "canary": {
                "model": {"trainingJobRef": {"name": "tj", "run": "run-3"}},
                "trafficPercent": 10,
            }
        },
    ],
)
def test_a_deployment_whose_new_run_could_not_serve_asks_for_no_retrain(
    spec: dict[str, Any],
) -> None:
    # No API may be touched: nothing to read, nothing to write.
    context: Any = SimpleNamespace(kube=None)
    retrain.consider(context, deployment(**spec), RetrainTrigger.DRIFT, "x PSI 0.9 > 0.2")
    assert not retrain.follows_latest(deployment(**spec))
    idle_canary = {"model": {"trainingJobRef": {"name": "tj", "run": "run-3"}}, "trafficPercent": 0}
    assert retrain.follows_latest(deployment(canary=idle_canary))
    assert retrain.follows_latest(deployment())


def test_a_failed_dataset_annotation_leaves_no_retrain_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Dataset is annotated before the retrain is recorded: a call that fails in between
    # (here a timeout of the client, which is no ApiException) leaves nothing pending.
    written: list[dict[str, Any]] = []
    body = {
        "metadata": {"namespace": "ml", "name": "tj", "resourceVersion": "1"},
        "spec": {
            "datasetRef": {"name": "sensors"},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "retrainOn": ["Drift"],
        },
        "status": {"runs": [{"id": "run-1", "phase": "Succeeded"}]},
    }
    context: Any = SimpleNamespace(kube=SimpleNamespace(custom=lambda *_: {"metadata": {}}))

    def timed_out(*_: Any) -> None:
        raise ReadTimeoutError(None, "/apis", "read timed out")  # type: ignore[arg-type]

    monkeypatch.setattr(retrain, "_annotate", timed_out)
    monkeypatch.setattr(retrain, "patch_status", lambda _c, _k, _b, patch: written.append(patch))
    with pytest.raises(ReadTimeoutError):
        retrain._request(context, body, deployment(), RetrainTrigger.DRIFT, "c", datetime.now(UTC))
    assert written == []


def test_a_retrain_whose_refresh_was_refused_is_abandoned_by_the_next_trigger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No Dataset event comes for a refresh that never started: the next gathering that finds
    # the retrain pending abandons it, so that later retrains are not blocked for ever.
    written: list[dict[str, Any]] = []
    events: list[tuple[str, str]] = []
    token_ = "retrain-20261205t070000000000z"
    last = {"cause": "Drift in ModelDeployment pm: x", "refresh": token_, "requestedAt": ASKED}
    body = {
        "metadata": {"namespace": "ml", "name": "tj", "resourceVersion": "1"},
        "spec": {
            "datasetRef": {"name": "sensors"},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "retrainOn": ["Drift"],
        },
        "status": {"runs": [{"id": "run-1", "phase": "Succeeded"}], "lastAutomaticRetrain": last},
    }
    refused = dataset(
        {retrain.RETRAIN_ANNOTATION: token_},
        {
            "phase": "Failed",
            "ingestJob": "sensors-ingest-old",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "StorageNotAllowed", "message": "m"}
            ],
        },
    )
    context: Any = SimpleNamespace(kube=SimpleNamespace(custom=lambda *_: refused))
    monkeypatch.setattr(retrain, "patch_status", lambda _c, _k, _b, patch: written.append(patch))
    monkeypatch.setattr(
        retrain, "post_event", lambda _b, reason, message, **_: events.append((reason, message))
    )
    retrain._request(context, body, deployment(), RetrainTrigger.DRIFT, "c", SOON)
    assert written == [{"lastAutomaticRetrain": {**last, "refresh": None}}]
    assert events == [
        (
            "RetrainAbandoned",
            "Drift in ModelDeployment pm: x: Dataset sensors refused the refresh: "
            "StorageNotAllowed: m",
        )
    ]
