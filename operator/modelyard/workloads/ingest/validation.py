"""Checks data against spec.schema, spec.target and spec.features, batch by batch.

Every violation is counted over the whole data set, with the first few row numbers (1 = first
data row) kept as examples, so one run tells the user everything that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.api.dataset import ColumnExpectation, DatasetSpec

EXAMPLE_ROWS = 5


@dataclass
class Violation:
    column: str
    rule: str
    count: int = 0
    rows: list[int] = field(default_factory=list)

    def add(self, row_numbers: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        self.count += len(row_numbers)
        room = EXAMPLE_ROWS - len(self.rows)
        if room > 0:
            self.rows.extend(int(row) for row in row_numbers[:room])

    def describe(self) -> str:
        rows = ", ".join(str(row) for row in self.rows)
        more = "" if self.count <= len(self.rows) else ", …"
        plural = "row" if self.count == 1 else "rows"
        return f"column {self.column!r}: {self.rule} ({self.count} {plural}: {rows}{more})"


class SchemaMismatch(ValueError):
    """The data's columns cannot meet the spec at all (a missing column, a wrong type)."""


def select_columns(schema: pa.Schema, spec: DatasetSpec, target: str) -> list[str]:
    """The columns to keep, in data order: features (all when unlisted) and the target."""
    names = schema.names
    problems = []
    if target not in names:
        problems.append(f"spec.target: column {target!r} is not in the data (columns: {names})")
    for feature in spec.features or []:
        if feature not in names:
            problems.append(f"spec.features: column {feature!r} is not in the data")
    if spec.schema_:
        for expectation in spec.schema_.columns:
            if expectation.name not in names:
                problems.append(
                    f"spec.schema.columns: column {expectation.name!r} is not in the data"
                )
    if problems:
        raise SchemaMismatch("; ".join(problems))
    if spec.features:
        wanted = {*spec.features, target}
        return [name for name in names if name in wanted]
    return list(names)


class Validator:
    def __init__(self, spec: DatasetSpec) -> None:
        self.expectations = {e.name: e for e in (spec.schema_.columns if spec.schema_ else [])}
        self.violations: dict[tuple[str, str], Violation] = {}
        self.first_row = 1

    def update(self, batch: pa.RecordBatch) -> None:
        rows = np.arange(self.first_row, self.first_row + batch.num_rows, dtype=np.int64)
        self.first_row += batch.num_rows
        for name, expectation in self.expectations.items():
            self._check(expectation, batch.column(name), rows)

    def _check(
        self,
        expectation: ColumnExpectation,
        column: pa.Array,
        rows: np.ndarray[Any, np.dtype[np.int64]],
    ) -> None:
        if not expectation.nullable and column.null_count:
            self._record(expectation.name, "must not be null", pc.is_null(column), rows)
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if expectation.min is not None and numeric:
            below = pc.fill_null(pc.less(column, expectation.min), False)
            self._record(expectation.name, f"must be ≥ {expectation.min:g}", below, rows)
        if expectation.max is not None and numeric:
            above = pc.fill_null(pc.greater(column, expectation.max), False)
            self._record(expectation.name, f"must be ≤ {expectation.max:g}", above, rows)
        if expectation.allowed is not None:
            allowed = pa.array([str(value) for value in expectation.allowed])
            as_text = pc.cast(column, pa.string()) if column.type != pa.string() else column
            # Nulls are the `nullable` rule's business, not this one's.
            outside = pc.and_(column.is_valid(), pc.invert(pc.is_in(as_text, value_set=allowed)))
            shown = ", ".join(str(value) for value in expectation.allowed[:10])
            self._record(expectation.name, f"must be one of [{shown}]", outside, rows)

    def _record(
        self,
        column: str,
        rule: str,
        mask: pa.Array,
        rows: np.ndarray[Any, np.dtype[np.int64]],
    ) -> None:
        flags = mask.to_numpy(zero_copy_only=False)
        if not flags.any():
            return
        key = (column, rule)
        self.violations.setdefault(key, Violation(column, rule)).add(rows[flags])

    def summary(self) -> str | None:
        """None when the data meets every expectation, else one line per broken rule."""
        if not self.violations:
            return None
        return "spec.schema: " + "; ".join(v.describe() for v in self.violations.values())
