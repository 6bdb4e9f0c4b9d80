"""Declared cleaning: what ingest repairs or drops before a version is written.

Rules run in a fixed order, the same every time: per column, text first (trim, case, mapping of
variants), then outliers, then missing values; then exact duplicate rows. Statistics a rule
needs (median, mode, quartiles, mean and standard deviation) are computed on the data as it is
when the rule runs. Every rule's affected rows are counted in status and in the manifest, and
the rules are part of the version: the same source with other rules is another version.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from modelyard.api.base import ApiModel, Rule
from modelyard.api.common import ColumnName


class MissingStrategy(StrEnum):
    DROP = "drop"
    CONSTANT = "constant"
    MEDIAN = "median"
    MODE = "mode"


class MissingValues(ApiModel):
    """What to do with empty values (null; NaN in numeric columns)."""

    rules = (
        Rule(
            cel="(self.strategy == 'constant') == has(self.value)",
            message="value is required with strategy constant, and only with it",
            check=lambda m: (m.strategy == MissingStrategy.CONSTANT) == (m.value is not None),
            field_path=".value",
        ),
    )

    strategy: MissingStrategy = Field(
        description="drop the row; fill a constant; fill the median (numeric columns) or the "
        "most frequent value (any column), computed on the data."
    )
    value: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="The constant, as text; converted to the column's type."
    )


class OutlierMethod(StrEnum):
    BOUNDS = "bounds"
    IQR = "iqr"
    ZSCORE = "zscore"


class OutlierAction(StrEnum):
    CLIP = "clip"
    DROP = "drop"


class Outliers(ApiModel):
    """Which values of a numeric column are outliers, and whether to clip them or drop the row."""

    rules = (
        Rule(
            cel="self.method != 'bounds' || has(self.min) || has(self.max)",
            message="bounds needs min, max or both",
            check=lambda o: (
                o.method != OutlierMethod.BOUNDS or o.min is not None or o.max is not None
            ),
        ),
        Rule(
            cel="!has(self.min) || !has(self.max) || self.min <= self.max",
            message="min must not exceed max",
            check=lambda o: o.min is None or o.max is None or o.min <= o.max,
            field_path=".min",
        ),
        Rule(
            cel="self.method == 'bounds' || (!has(self.min) && !has(self.max))",
            message="min and max belong to method bounds",
            check=lambda o: o.method == OutlierMethod.BOUNDS or (o.min is None and o.max is None),
        ),
    )

    method: OutlierMethod = Field(
        description="bounds: outside [min, max]. iqr: beyond factor times the IQR from the "
        "quartiles. zscore: more than threshold standard deviations from the mean."
    )
    action: OutlierAction = Field(
        description="clip to the bound the value crossed, or drop the row."
    )
    min: float | None = Field(default=None, description="Lower bound (bounds).")
    max: float | None = Field(default=None, description="Upper bound (bounds).")
    factor: float = Field(default=1.5, gt=0, le=100, description="IQR multiple (iqr).")
    threshold: float = Field(default=3.0, gt=0, le=100, description="Standard deviations (zscore).")


class Case(StrEnum):
    LOWER = "lower"
    UPPER = "upper"


class ColumnCleaning(ApiModel):
    """Cleaning rules for one column."""

    name: ColumnName = Field(description="Column name as it appears in the data.")
    trim: bool = Field(default=False, description="Strip leading and trailing whitespace (text).")
    case: Case | None = Field(default=None, description="Fold text to lower or upper case.")
    mapping: dict[str, str] | None = Field(
        default=None,
        max_length=1000,
        description="Variants and the one value each stands for, e.g. {NYC: New York}; applied "
        "after trim and case, so keys are written folded.",
    )
    outliers: Outliers | None = Field(default=None, description="Outliers (numeric columns).")
    missing: MissingValues | None = Field(default=None, description="Empty values.")


class CleaningSpec(ApiModel):
    rules = (
        Rule(
            cel="!has(self.columns) || self.columns.all(c, "
            "(has(c.trim) && c.trim) || has(c.case) || has(c.mapping) || has(c.outliers) "
            "|| has(c.missing))",
            message="every column entry needs at least one rule",
            check=lambda s: all(
                c.trim or c.case or c.mapping or c.outliers or c.missing for c in s.columns or []
            ),
            field_path=".columns",
        ),
    )

    drop_duplicates: bool = Field(
        default=False, description="Keep only the first of rows that are equal in every column."
    )
    missing: MissingValues | None = Field(
        default=None,
        description="What to do with empty values in every column that has no missing rule of "
        "its own.",
    )
    columns: list[ColumnCleaning] | None = Field(
        default=None,
        max_length=100,
        description="Rules per column, at most one entry per column.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class CleaningCount(ApiModel):
    """Rows one cleaning rule changed or dropped in the current version."""

    rule: Annotated[str, StringConstraints(max_length=512)] = Field(
        description="Where the rule is declared, e.g. cleaning.columns[price].outliers."
    )
    action: Annotated[str, StringConstraints(max_length=32)] = Field(
        description="What it did: dropped, filled, clipped, trimmed, folded or mapped."
    )
    rows: int = Field(ge=0, description="Rows affected.")
