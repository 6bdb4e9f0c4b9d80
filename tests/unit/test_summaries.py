"""A workload's summary is recorded only in the shape, and for the location and inputs, the
operator asked for: whatever else a pod writes in its termination message is refused."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard import summaries
from modelyard.api.dataset import DataFormat
from modelyard.reasons import Reason
from modelyard.storage.uri import S3Uri

VERSION = "sha256:" + "1" * 64
DIGEST = "sha256:" + "a" * 64
DATASETS = S3Uri.parse("s3://modelyard/namespaces/ml/datasets/iris/")
OUTPUT = S3Uri.parse("s3://modelyard/namespaces/ml/models/tj/uid-1/run-1/")


def _ingest(**changes: Any) -> dict[str, Any]:
    summary = {
        "status": "Succeeded",
        "version": VERSION,
        "uri": f"{DATASETS}{'1' * 64}",
        "rows": 150,
        "statistics": [
            {"name": "x", "type": "float", "count": 150, "nulls": 0, "p50": 1.0},
        ],
    }
    return {**summary, **changes}


def _train(**changes: Any) -> dict[str, Any]:
    summary = {
        "status": "Succeeded",
        "run": "run-1",
        "datasetVersion": VERSION,
        "model": {"uri": f"{OUTPUT}model.joblib", "digest": DIGEST, "cardDigest": DIGEST},
        "metrics": {"accuracy": 0.9},
        "params": {"C": 1},
        "task": "classification",
    }
    return {**summary, **changes}


def test_an_ingestion_published_where_it_was_told_is_recorded() -> None:
    result = summaries.expect_ingest(_ingest(), DATASETS)
    assert (result.version, result.rows) == (VERSION, 150)
    # Fields status does not declare are dropped, not refused.
    assert result.statistics[0].to_dict() == {
        "name": "x",
        "type": "float",
        "count": 150,
        "nulls": 0,
    }


@pytest.mark.parametrize("source_format", [f.value for f in DataFormat])
def test_every_format_a_source_reports_is_recorded(source_format: str) -> None:
    """Files, API pages and query rows: a new kind of source must not be refused as malformed."""
    result = summaries.expect_ingest(_ingest(format=source_format), DATASETS)
    assert result.format == source_format


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"format": "xml"}, "format"),
        ({"uri": "s3://modelyard/namespaces/other/datasets/iris/" + "1" * 64}, "not the location"),
        ({"uri": f"{DATASETS}{'2' * 64}"}, "not the location"),
        ({"version": "md5:abc"}, "version"),
        ({"rows": -1}, "rows"),
        ({"statistics": "lots"}, "statistics"),
    ],
)
def test_an_ingestion_reported_elsewhere_or_malformed_is_rejected(
    changes: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(summaries.Rejected, match=complaint):
        summaries.expect_ingest(_ingest(**changes), DATASETS)


def test_a_run_trained_as_asked_is_recorded() -> None:
    result = summaries.expect_training(_train(), "run-1", VERSION, OUTPUT)
    assert result.model.card_digest == DIGEST
    assert result.metrics == {"accuracy": 0.9}


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"run": "run-2"}, "run run-2"),
        ({"datasetVersion": "sha256:" + "2" * 64}, "dataset version"),
        (
            {
                "model": {
                    "uri": "s3://modelyard/x/model.joblib",
                    "digest": DIGEST,
                    "cardDigest": DIGEST,
                }
            },
            "not at",
        ),
        ({"model": {"uri": f"{OUTPUT}model.joblib", "digest": DIGEST}}, "cardDigest"),
        ({"metrics": {"accuracy": float("nan")}}, "metrics"),
        ({"metrics": {"made_up": 1.0}}, "metrics"),
        ({"task": "clustering"}, "task"),
    ],
)
def test_a_run_reported_for_other_inputs_or_malformed_is_rejected(
    changes: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(summaries.Rejected, match=complaint):
        summaries.expect_training(_train(**changes), "run-1", VERSION, OUTPUT)


def test_failures_keep_only_reasons_modelyard_documents() -> None:
    known = summaries.failure({"status": "Failed", "reason": "SchemaMismatch", "message": "x"})
    assert known is not None and known.reason == Reason.SchemaMismatch
    made_up = summaries.failure({"status": "Failed", "reason": "AllGood", "message": "x"})
    assert made_up is not None and made_up.reason == Reason.JobFailed
    assert summaries.failure({"status": "Succeeded"}) is None


REPORT = {
    "uri": f"{OUTPUT}report/report.html",
    "digest": DIGEST,
    "plots": ["confusion_matrix.png", "roc.png"],
    "findings": [{"reason": "ClassImbalance", "message": "class 2 holds 4% of the rows"}],
}
OTHER_RUN = S3Uri.parse("s3://modelyard/namespaces/ml/models/tj/uid-1/run-0/")
ENTRY = {"rank": 1, "estimator": "sklearn.naive_bayes.GaussianNB", "score": 0.9, "scoreStd": 0.02}


def test_a_run_with_its_leaderboard_and_report_is_recorded() -> None:
    summary = _train(
        estimator="sklearn.naive_bayes.GaussianNB",
        leaderboard=[ENTRY, {**ENTRY, "rank": 2, "score": 0.8}],
        report=REPORT,
    )
    result = summaries.expect_training(summary, "run-1", VERSION, OUTPUT)
    assert result.estimator == "sklearn.naive_bayes.GaussianNB"
    assert [e.rank for e in result.leaderboard or []] == [1, 2]
    assert result.report is not None and result.report.plots == REPORT["plots"]
    assert result.report.findings[0].reason == "ClassImbalance"


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        # Another run's report, another namespace's: only the run's own location counts.
        ({"report": {**REPORT, "uri": f"{OTHER_RUN}report/report.html"}}, "report at"),
        (
            {"report": {**REPORT, "uri": "s3://modelyard/namespaces/other/report.html"}},
            "report at",
        ),
        ({"report": {**REPORT, "plots": ["../../model.joblib"]}}, "PNG file name"),
        ({"report": {**REPORT, "plots": ["sub/roc.png"]}}, "PNG file name"),
        ({"report": {**REPORT, "findings": REPORT["findings"] * 17}}, "findings"),
        ({"report": {**REPORT, "digest": "md5:x"}}, "digest"),
        ({"leaderboard": [{**ENTRY, "rank": r} for r in range(1, 7)]}, "leaderboard"),
        ({"leaderboard": [{**ENTRY, "score": float("nan")}]}, "leaderboard"),
        ({"leaderboard": [{**ENTRY, "rank": 0}]}, "leaderboard"),
        ({"estimator": "x" * 129}, "estimator"),
    ],
)
def test_a_leaderboard_or_report_out_of_bounds_is_rejected(
    changes: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(summaries.Rejected, match=complaint):
        summaries.expect_training(_train(**changes), "run-1", VERSION, OUTPUT)
