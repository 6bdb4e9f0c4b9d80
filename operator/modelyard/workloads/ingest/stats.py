"""Per-column statistics computed batch by batch, in memory bounded by the number of columns."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.workloads.common.tabular import LogicalType, logical_type

TOP_CATEGORIES = 20
# Beyond this many distinct values a column is not categorical; stop counting to bound memory.
MAX_DISTINCT = 10_000


class ColumnAccumulator:
    def __init__(self, name: str, kind: LogicalType) -> None:
        self.name = name
        self.kind = kind
        self.count = 0
        self.finite = 0  # values in the moments: NaN and infinities count but do not move them
        self.nulls = 0
        self.minimum = math.inf
        self.maximum = -math.inf
        # Chan et al.'s parallel update of mean and sum of squared deviations: stable for
        # billions of rows, unlike a running sum of squares.
        self.mean = 0.0
        self.m2 = 0.0
        self.categories: Counter[str] | None = Counter() if kind in ("string", "boolean") else None

    def update(self, column: pa.Array) -> None:
        nulls = column.null_count
        self.nulls += nulls
        valid = len(column) - nulls
        if valid == 0:
            return
        if self.kind in ("integer", "float"):
            values = pc.drop_null(column).to_numpy(zero_copy_only=False).astype(np.float64)
            values = values[np.isfinite(values)]
            if len(values):
                self._merge_moments(values)
            self.count += valid
        else:
            self.count += valid
            self._count_categories(column)

    def _merge_moments(self, values: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        n_b = len(values)
        mean_b = float(values.mean())
        m2_b = float(((values - mean_b) ** 2).sum())
        n_a = self.finite
        total = n_a + n_b
        self.finite = total
        delta = mean_b - self.mean
        self.mean += delta * n_b / total
        self.m2 += m2_b + delta * delta * n_a * n_b / total
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))

    def _count_categories(self, column: pa.Array) -> None:
        if self.categories is None:
            return
        counts = pc.value_counts(pc.drop_null(column))
        for value, count in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        ):
            key = str(value).lower() if self.kind == "boolean" else str(value)
            if key in self.categories or len(self.categories) < MAX_DISTINCT:
                self.categories[key] += count

    def result(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "name": self.name,
            "type": self.kind,
            "count": self.count,
            "nulls": self.nulls,
        }
        if self.kind in ("integer", "float") and self.finite:
            stats.update(
                min=self.minimum,
                max=self.maximum,
                mean=_round(self.mean),
                std=_round(math.sqrt(self.m2 / self.finite)) if self.finite else 0.0,
            )
        if self.categories:
            stats["categories"] = [
                {"value": value, "count": count}
                for value, count in self.categories.most_common(TOP_CATEGORIES)
            ]
        return stats


def _round(value: float) -> float:
    return float(f"{value:.6g}")


class StatisticsAccumulator:
    def __init__(self, schema: pa.Schema) -> None:
        self.columns = [ColumnAccumulator(f.name, logical_type(f.type)) for f in schema]

    def update(self, batch: pa.RecordBatch) -> None:
        for accumulator, column in zip(self.columns, batch.columns, strict=True):
            accumulator.update(column)

    def result(self) -> list[dict[str, Any]]:
        return [accumulator.result() for accumulator in self.columns]
