"""The operator's side of ModelDeployment monitoring and automatic retrains, as pure functions:
aggregation across server processes, the Drifted and QualityDegraded verdicts and their
transitions, the cooldown, the causes runs record, and the Dataset refresh token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from modelyard.api.modeldeployment import Monitoring
from modelyard.api.trainingjob import RetrainTrigger, TrainingJobSpec
from modelyard.controllers import metrics, retrain
from modelyard.controllers.conditions import get_condition
from modelyard.controllers.dataset import REFRESH_ANNOTATION, refresh_token
from modelyard.controllers.monitoring import (
    Aggregate,
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
from modelyard.monitoring.psi import psi, shares
from modelyard.monitoring.quality import QualitySums
from modelyard.monitoring.report import FeatureCounts, ProcessReport
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
    last = {"cause": "Drift in ModelDeployment pm: x", "refresh": token, "requestedAt": "t"}
    annotations = {retrain.RETRAIN_ANNOTATION: token}
    job = ingest_job_name("sensors", "u-1", 1, refresh_token({"annotations": annotations}))
    status = {"lastAutomaticRetrain": last}
    ingesting = dataset(annotations, {"phase": "Ingesting", "ingestJob": job})
    assert retrain.refresh_outcome(status, ingesting) is None
    before = dataset({}, {"phase": "Ready", "ingestJob": "sensors-ingest-old"})
    assert retrain.refresh_outcome(status, before) is None  # the annotation is on its way
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
    metrics.set_monitoring("unit-ns", "pm", {"vibration": 0.6, "load": 0.1}, True, "mae", 1.5, None)
    assert sample("modelyard_modeldeployment_feature_drift_psi", **who, feature="load") == 0.1
    assert sample("modelyard_modeldeployment_drifted", **who) == 1
    assert sample("modelyard_modeldeployment_live_metric", **who, metric="mae") == 1.5
    assert sample("modelyard_modeldeployment_quality_degraded", **who) is None
    metrics.set_monitoring("unit-ns", "pm", {"vibration": 0.1}, False, "mae", None, False)
    assert sample("modelyard_modeldeployment_feature_drift_psi", **who, feature="load") is None
    assert sample("modelyard_modeldeployment_drifted", **who) == 0
    assert sample("modelyard_modeldeployment_live_metric", **who, metric="mae") is None
    metrics.forget_monitoring("unit-ns", "pm")
    assert sample("modelyard_modeldeployment_feature_drift_psi", **who, feature="vibration") is None
    assert sample("modelyard_modeldeployment_drifted", **who) is None
    assert sample("modelyard_modeldeployment_quality_degraded", **who) is None
