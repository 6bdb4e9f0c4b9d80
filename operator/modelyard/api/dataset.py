"""Dataset: where data comes from, what it must look like, and the versions ingested from it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from modelyard.api.base import ApiModel, Rule, Transition, count_set, immutable
from modelyard.api.cleaning import CleaningCount, CleaningSpec
from modelyard.api.common import (
    AGE_COLUMN,
    LABEL_VALUE_MAX,
    PHASE_COLUMN,
    READY_COLUMN,
    ColumnName,
    Digest,
    KindInfo,
    PrinterColumn,
    ResourceBase,
    S3Uri,
    StatusBase,
    StorageSpec,
    name_at_most,
)
from modelyard.api.refresh import RefreshSpec
from modelyard.api.sources import ApiSource, SqlSource


class BuiltinName(StrEnum):
    """Datasets that scikit-learn ships, for demos and tests (no download)."""

    IRIS = "iris"
    WINE = "wine"
    BREAST_CANCER = "breast_cancer"
    DIABETES = "diabetes"
    DIGITS = "digits"


class DataFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"
    JSON = "json"  # pages of a JSON API (source.api); not a file format
    SQL = "sql"  # rows of a database query (source.sql); not a file format


class ColumnType(StrEnum):
    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"
    BOOLEAN = "boolean"


class S3Source(ApiModel):
    uri: S3Uri = Field(
        description="s3://bucket/key of one object, or s3://bucket/prefix/ for all objects below."
    )


class HttpSource(ApiModel):
    url: str = Field(
        max_length=2048, pattern=r"^https?://", description="HTTP(S) URL of one file to download."
    )


class BuiltinSource(ApiModel):
    name: BuiltinName = Field(description="One of iris, wine, breast_cancer, diabetes, digits.")


class DatasetSource(ApiModel):
    """Where the data comes from: exactly one of s3, http, sql, api or builtin."""

    rules = (
        Rule(
            cel="[has(self.s3), has(self.http), has(self.sql), has(self.api), has(self.builtin)]"
            ".filter(x, x).size() == 1",
            message="exactly one of s3, http, sql, api or builtin must be set",
            check=lambda s: count_set(s.s3, s.http, s.sql, s.api, s.builtin) == 1,
        ),
        Transition(
            cel="has(self.s3) == has(oldSelf.s3) && has(self.http) == has(oldSelf.http)"
            " && has(self.sql) == has(oldSelf.sql) && has(self.api) == has(oldSelf.api)"
            " && has(self.builtin) == has(oldSelf.builtin)",
            message="the kind of source (s3, http, sql, api or builtin) is immutable: "
            "create a new Dataset for data from elsewhere",
        ),
    )

    s3: S3Source | None = Field(default=None, description="An object or prefix in S3 storage.")
    http: HttpSource | None = Field(default=None, description="A file served over HTTP(S).")
    sql: SqlSource | None = Field(default=None, description="The rows of a database query.")
    api: ApiSource | None = Field(default=None, description="Records from a paginated JSON API.")
    builtin: BuiltinSource | None = Field(
        default=None, description="A dataset that ships with scikit-learn."
    )


class ColumnExpectation(ApiModel):
    """What one column must look like; ingestion fails naming the column and rows that break it."""

    rules = (
        Rule(
            cel="!has(self.min) || !has(self.max) || self.min <= self.max",
            message="min must not exceed max",
            check=lambda c: c.min is None or c.max is None or c.min <= c.max,
        ),
    )

    name: ColumnName = Field(description="Column name as it appears in the data.")
    type: ColumnType | None = Field(
        default=None, description="Expected type: integer, float, string or boolean."
    )
    nullable: bool = Field(default=True, description="Whether empty values are allowed.")
    min: float | None = Field(default=None, description="Smallest allowed value (numeric columns).")
    max: float | None = Field(default=None, description="Largest allowed value (numeric columns).")
    allowed: list[int | str] | None = Field(
        default=None,
        max_length=1000,
        description="The only values allowed (categorical columns), compared as strings.",
    )


class SchemaSpec(ApiModel):
    columns: list[ColumnExpectation] = Field(
        max_length=1000, description="Expectations, one per column; unlisted columns are unchecked."
    )


class SplitSpec(ApiModel):
    """How rows are divided into training and held-out test sets (recorded with the version)."""

    test_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of rows held out for evaluation, in (0, 1)."
    )
    seed: int = Field(default=42, ge=0, description="Random seed, so the split is reproducible.")
    stratify: bool = Field(
        default=True,
        description="Keep class proportions equal in both sets (classification targets only).",
    )


class DatasetSpec(ApiModel):
    rules = (
        Rule(
            cel="has(self.target) || has(self.source.builtin)",
            message="target is required unless source is builtin",
            check=lambda s: s.target is not None or s.source.builtin is not None,
            field_path=".target",
        ),
        Rule(
            cel="!has(self.features) || !has(self.target) || !(self.target in self.features)",
            message="target must not be listed in features",
            check=lambda s: not s.features or s.target not in s.features,
            field_path=".features",
        ),
        Rule(
            cel="!has(self.cleaning) || !has(self.cleaning.columns) || !has(self.features)"
            " || self.cleaning.columns.all(c, c.name in self.features"
            " || (has(self.target) && c.name == self.target))",
            message="every cleaning column must be one of features or the target",
            check=lambda s: (
                not s.cleaning
                or not s.cleaning.columns
                or not s.features
                or all(c.name in s.features or c.name == s.target for c in s.cleaning.columns)
            ),
            field_path=".cleaning.columns",
        ),
        # Versions, and the models trained on them, are only comparable with the same label.
        immutable(
            "target",
            message="target is immutable: create a new Dataset to predict another column",
        ),
        # Earlier versions stay where they were written; models trained on them are read there.
        immutable(
            "storage.endpoint",
            "storage.bucket",
            "storage.prefix",
            message="storage endpoint, bucket and prefix are immutable: versions already "
            "written stay there; create a new Dataset to store elsewhere",
            field_path=".storage",
        ),
    )

    source: DatasetSource = Field(
        description="Where the data comes from: exactly one of s3, http, sql, api or builtin. "
        "The kind of source cannot change after creation; its location can."
    )
    format: DataFormat | None = Field(
        default=None,
        description="csv, parquet or jsonl; inferred from the file extension when left out. "
        "Files only: api sources are always read as json, sql sources as sql.",
    )
    target: ColumnName | None = Field(
        default=None,
        description="The label column to predict. Builtin datasets default to their own target. "
        "Cannot change after creation.",
    )
    features: list[ColumnName] | None = Field(
        default=None,
        max_length=1000,
        description="Feature columns to keep; all others when left out.",
    )
    schema_: SchemaSpec | None = Field(
        default=None, alias="schema", description="Expectations that every version must meet."
    )
    cleaning: CleaningSpec | None = Field(
        default=None,
        description="Repairs and drops applied at ingest, before validation against schema; "
        "counted in status.cleaning. Part of the version.",
    )
    refresh: RefreshSpec | None = Field(
        default=None, description="Re-ingest on a schedule or at an interval."
    )
    split: SplitSpec = Field(
        default_factory=SplitSpec,
        description="Train/test split recorded with each version.",
        json_schema_extra={"default": {}},
    )
    storage: StorageSpec | None = Field(
        default=None,
        description="Where snapshots are written, overriding the operator default. Endpoint, "
        "bucket and prefix cannot change after creation; the credentials Secret can.",
    )


class CategoryCount(ApiModel):
    value: str = Field(description="The category.")
    count: int = Field(ge=0, description="Rows with this value.")


class ColumnStatistics(ApiModel):
    """Summary of one column of a version; the model server compares live traffic with it."""

    name: str = Field(description="Column name.")
    type: ColumnType = Field(description="Type after normalization.")
    count: int = Field(ge=0, description="Non-null values.")
    nulls: int = Field(ge=0, description="Null values.")
    min: float | None = Field(default=None, description="Smallest value (numeric).")
    max: float | None = Field(default=None, description="Largest value (numeric).")
    mean: float | None = Field(default=None, description="Mean (numeric).")
    std: float | None = Field(default=None, description="Standard deviation (numeric).")
    categories: list[CategoryCount] | None = Field(
        default=None, description="Most frequent values with counts (categorical, at most 20)."
    )


class DatasetVersionRecord(ApiModel):
    version: Digest = Field(description="Content digest of the snapshot.")
    uri: S3Uri = Field(description="Where the snapshot lives.")
    rows: int = Field(ge=0, description="Number of rows.")
    created_at: datetime = Field(description="When this version was first ingested.")


Phase = Literal["Pending", "Ingesting", "Ready", "Failed"]


class DatasetStatus(StatusBase):
    phase: Phase | None = Field(
        default=None, description="One-word summary: Pending, Ingesting, Ready or Failed."
    )
    version: Digest | None = Field(
        default=None,
        description="Content digest (sha256:…) of the current normalized snapshot. "
        "The same content always gives the same version.",
    )
    uri: S3Uri | None = Field(default=None, description="Where the current snapshot lives.")
    format: DataFormat | None = Field(default=None, description="Format the source was read as.")
    rows: int | None = Field(default=None, ge=0, description="Rows in the current version.")
    columns: int | None = Field(default=None, ge=0, description="Columns in the current version.")
    size_bytes: int | None = Field(default=None, ge=0, description="Size of the snapshot.")
    train_rows: int | None = Field(default=None, ge=0, description="Rows in the training split.")
    test_rows: int | None = Field(default=None, ge=0, description="Rows in the test split.")
    statistics: list[ColumnStatistics] | None = Field(
        default=None, description="Per-column statistics of the current version."
    )
    history: list[DatasetVersionRecord] | None = Field(
        default=None, max_length=20, description="Recent versions, newest first."
    )
    cleaning: list[CleaningCount] | None = Field(
        default=None, description="Rows each cleaning rule changed or dropped in this version."
    )
    last_refresh_time: datetime | None = Field(
        default=None,
        description="When the latest ingestion started, whatever started it (creation, a spec "
        "change, a manual or a scheduled refresh); intervals count from it.",
    )
    next_refresh_time: datetime | None = Field(
        default=None, description="When the next scheduled refresh is due; absent when suspended."
    )
    ingest_job: str | None = Field(
        default=None, description="Name of the Job of the latest ingestion."
    )
    ingest_job_uid: str | None = Field(
        default=None,
        max_length=64,
        description="UID of that Job: only its result is recorded, never that of another Job "
        "under the same name.",
    )


class Dataset(ResourceBase):
    """A versioned, validated snapshot of tabular data in S3 storage."""

    info = KindInfo(
        kind="Dataset",
        plural="datasets",
        singular="dataset",
        short_names=("dset",),
        columns=(
            READY_COLUMN,
            PHASE_COLUMN,
            PrinterColumn("Version", ".status.version", description="Content digest"),
            PrinterColumn("Rows", ".status.rows", type="integer"),
            # A string: kubectl shows a future time of a date column as <invalid>.
            PrinterColumn(
                "Next Refresh",
                ".status.nextRefreshTime",
                description="When the next scheduled refresh is due (UTC)",
                priority=1,
            ),
            AGE_COLUMN,
        ),
        description="A versioned, validated snapshot of tabular data in S3 storage.",
    )
    rules = (name_at_most(LABEL_VALUE_MAX, "it labels the ingest Jobs and pods made for it"),)

    kind: Literal["Dataset"] = "Dataset"
    spec: DatasetSpec
    status: DatasetStatus | None = None
