"""Feature engineering declared on a TrainingJob: derived columns and per-column transforms.

Both become steps of the fitted pipeline, so the model server takes the raw columns and computes
the same features the model was trained on; the model card lists them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from modelyard.api.base import ApiModel, Rule
from modelyard.api.common import ColumnName
from modelyard.expressions.parse import parse

FeatureName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]


class DerivedFeature(ApiModel):
    name: FeatureName = Field(description="Name of the new column; must not shadow a column.")
    expression: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="An expression over the raw columns: numbers, 'text', column names (or "
        "col('a name') for names that are not identifiers), + - * / ** %, comparisons, "
        "and/or/not, `a if cond else b`, and the functions of docs/features.md "
        "(log, exp, sqrt, abs, min, max, ratio, year, month, day, weekday, hour, bucket, "
        "length, contains, lower, upper)."
    )

    @field_validator("expression")
    @classmethod
    def _parses(cls, expression: str) -> str:
        # The API server cannot parse expressions; the operator, the CLI and the trainer can.
        parse(expression)
        return expression


class Encoding(StrEnum):
    ONEHOT = "onehot"
    ORDINAL = "ordinal"
    TARGET = "target"
    HASH = "hash"


class Scaling(StrEnum):
    STANDARD = "standard"
    MINMAX = "minmax"
    ROBUST = "robust"
    NONE = "none"


class ColumnTransform(ApiModel):
    """How one feature (a dataset column or a derived one) is prepared for the estimator."""

    rules = (
        Rule(
            cel="!has(self.encoding) || !has(self.scaling)",
            message="a column is either encoded (categorical) or scaled (numeric), not both",
            check=lambda t: t.encoding is None or t.scaling is None,
        ),
        Rule(
            cel="!has(self.hashBuckets) || (has(self.encoding) && self.encoding == 'hash')",
            message="hashBuckets belongs to encoding hash",
            check=lambda t: t.hash_buckets is None or t.encoding == Encoding.HASH,
            field_path=".hashBuckets",
        ),
    )

    name: ColumnName = Field(description="The feature this applies to.")
    encoding: Encoding | None = Field(
        default=None,
        description="Categorical features: onehot (the default), ordinal, target (mean target "
        "per category, cross-fitted) or hash (hashBuckets columns).",
    )
    scaling: Scaling | None = Field(
        default=None,
        description="Numeric features: standard (the default), minmax, robust or none.",
    )
    hash_buckets: int | None = Field(
        default=None, ge=2, le=4096, description="Columns of the hash encoding (default 32)."
    )
    drop: bool = Field(default=False, description="Leave the column out of the model's input.")


class FeatureEngineeringSpec(ApiModel):
    derived: list[DerivedFeature] | None = Field(
        default=None,
        max_length=64,
        description="New columns computed from the raw ones, in order (a later one may use an "
        "earlier one).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    transforms: list[ColumnTransform] | None = Field(
        default=None,
        max_length=256,
        description="Per-feature choices beyond the defaults.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
