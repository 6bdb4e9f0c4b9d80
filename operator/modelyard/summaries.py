"""What a finishing workload reports in its termination message, as the operator accepts it.

The message is written by code in a pod and read by the operator into status, which deployments
and promotion gates trust. So the operator takes nothing on faith: a summary must have this
shape, and `expect_*` compare it with what the operator asked of the workload (the location it
chose, the dataset version it gave). A summary that does not pass is a ResultRejected failure,
never a status.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelyard.api.cleaning import CleaningCount
from modelyard.api.common import Digest, S3Uri
from modelyard.api.dataset import ColumnStatistics, DataFormat
from modelyard.api.trainingjob import LEADERBOARD_TOP, Finding, LeaderboardEntry, Metric
from modelyard.reasons import Reason
from modelyard.storage import layout
from modelyard.storage.uri import S3Uri as Location

REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
MESSAGE_MAX = 4096
# spec.cleaning declares at most 100 columns of five rules each, plus missing and duplicates.
CLEANING_COUNTS_MAX = 100 * 5 + 2
# The report's findings and plots a run records (EvaluationReport).
FINDINGS_MAX = 16
PLOTS_MAX = 16
# A plot is a file beside report.html: a plain name, never a path that leaves the directory.
PLOT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,123}\.png$"


class _Summary(BaseModel):
    # Extra keys are ignored, not refused: a newer workload may report more than this operator
    # reads, and nothing unread reaches status.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Failure(_Summary):
    status: Literal["Failed"]
    reason: str = Field(default=Reason.JobFailed, max_length=256)
    message: str = Field(default="", max_length=MESSAGE_MAX)

    @field_validator("reason")
    @classmethod
    def _known(cls, reason: str) -> str:
        # Only reasons Modelyard documents reach a condition.
        return reason if reason in Reason.__members__ else Reason.JobFailed


class IngestResult(_Summary):
    status: Literal["Succeeded"]
    version: Digest
    uri: S3Uri
    format: DataFormat | None = None
    rows: int = Field(ge=0)
    columns: int | None = Field(default=None, ge=0)
    size_bytes: int | None = Field(default=None, ge=0, alias="sizeBytes")
    train_rows: int | None = Field(default=None, ge=0, alias="trainRows")
    test_rows: int | None = Field(default=None, ge=0, alias="testRows")
    created_at: str | None = Field(default=None, alias="createdAt", max_length=64)
    statistics: list[ColumnStatistics] = Field(default_factory=list, max_length=1000)
    # Absent when the Dataset declares no cleaning (status.cleaning is then removed).
    cleaning: list[CleaningCount] | None = Field(default=None, max_length=CLEANING_COUNTS_MAX)

    @field_validator("statistics", mode="before")
    @classmethod
    def _declared_fields(cls, statistics: Any) -> Any:
        """Status keeps the fields the CRD declares; the summary may carry more."""
        if not isinstance(statistics, list):
            return statistics
        keys = ColumnStatistics.model_fields.keys()
        return [
            {k: v for k, v in column.items() if k in keys} if isinstance(column, dict) else column
            for column in statistics
        ]


class ModelResult(_Summary):
    uri: S3Uri
    digest: Digest
    card_digest: Digest = Field(alias="cardDigest")


class ReportResult(_Summary):
    uri: S3Uri
    digest: Digest
    plots: list[str] = Field(default_factory=list, max_length=PLOTS_MAX)
    findings: list[Finding] = Field(default_factory=list, max_length=FINDINGS_MAX)

    @field_validator("plots")
    @classmethod
    def _file_names(cls, plots: list[str]) -> list[str]:
        for plot in plots:
            if not re.fullmatch(PLOT_PATTERN, plot) or ".." in plot:
                raise ValueError(f"plot {plot!r} is not a PNG file name")
        return plots


class TrainResult(_Summary):
    status: Literal["Succeeded", "Failed"]
    run: str = Field(max_length=63)
    dataset_version: Digest = Field(alias="datasetVersion")
    model: ModelResult
    metrics: dict[Metric, float] = Field(max_length=len(Metric))
    params: dict[str, Any] | None = None
    task: Literal["classification", "regression"]
    reason: str | None = Field(default=None, max_length=256)
    message: str | None = Field(default=None, max_length=MESSAGE_MAX)
    estimator: str | None = Field(default=None, max_length=128)
    leaderboard: list[LeaderboardEntry] | None = Field(default=None, max_length=LEADERBOARD_TOP)
    report: ReportResult | None = None

    @field_validator("leaderboard")
    @classmethod
    def _finite_scores(
        cls, leaderboard: list[LeaderboardEntry] | None
    ) -> list[LeaderboardEntry] | None:
        for entry in leaderboard or []:
            for value in (entry.score, entry.score_std, entry.fit_seconds):
                if value is not None and not math.isfinite(value):
                    raise ValueError(f"rank {entry.rank} has a score of {value}")
        return leaderboard

    @field_validator("metrics")
    @classmethod
    def _finite(cls, metrics: dict[Metric, float]) -> dict[Metric, float]:
        for name, value in metrics.items():
            if not math.isfinite(value):
                raise ValueError(f"metric {name} is {value}")
        return metrics


class Rejected(ValueError):
    """A summary the operator does not record; the message says what is wrong with it."""


def _parse(model: type[_Summary], summary: dict[str, Any]) -> Any:
    try:
        return model.model_validate(summary)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'summary'}: {e['msg']}"
            for e in error.errors()[:3]
        )
        raise Rejected(f"the workload's summary is malformed: {problems}") from None


def failure(summary: dict[str, Any]) -> Failure | None:
    """The summary as a failure report, or None when it is not one."""
    if summary.get("status") != "Failed":
        return None
    try:
        return Failure.model_validate(summary)
    except ValidationError:
        return Failure(status="Failed")


def expect_ingest(summary: dict[str, Any], datasets: Location) -> IngestResult:
    """A successful ingestion's summary, published where the operator said (`datasets`, the
    Dataset's versions prefix) under the version's own name."""
    result: IngestResult = _parse(IngestResult, summary)
    expected = str(layout.dataset_version_prefix(datasets, result.version))
    if result.uri.rstrip("/") != expected.rstrip("/"):
        raise Rejected(
            f"the workload reports {result.uri}, not the location {expected} it was given"
        )
    return result


def expect_training(
    summary: dict[str, Any], run: str, dataset_version: str, output: Location
) -> TrainResult:
    """A finished run's summary, for the run and dataset version the operator started it with,
    with its model where the operator said."""
    result: TrainResult = _parse(TrainResult, summary)
    expected = str(output.join(layout.MODEL_FILE))
    if result.run != run:
        raise Rejected(f"the workload reports run {result.run}, not {run}")
    if result.dataset_version != dataset_version:
        raise Rejected(
            f"the workload reports dataset version {result.dataset_version}, "
            f"not {dataset_version} it was given"
        )
    if result.model.uri != expected:
        raise Rejected(
            f"the workload reports its model at {result.model.uri}, not at {expected} as asked"
        )
    report = str(output.join(layout.REPORT_DIR, layout.REPORT_FILE))
    if result.report is not None and result.report.uri != report:
        raise Rejected(
            f"the workload reports its report at {result.report.uri}, not at {report} as asked"
        )
    return result
