"""How feature values become the model's input matrix — the one encoding train and serve share.

Numeric features are float64 with NaN for missing. String and boolean features are categories:
Python `str` values (booleans as "true"/"false"), NaN for missing. When every feature is
numeric the matrix is float64; otherwise it is an object array.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.workloads.common.modelcard import Feature

NUMERIC = frozenset({"integer", "float"})


def categorical_value(value: Any) -> Any:
    """One category as the pipeline sees it: str, or NaN when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def all_numeric(features: list[Feature]) -> bool:
    return all(feature.type in NUMERIC for feature in features)


def table_to_matrix(table: pa.Table, features: list[Feature]) -> np.ndarray[Any, Any]:
    """The feature columns of an Arrow table as the pipeline's input matrix."""
    columns = []
    for feature in features:
        column = table.column(feature.name)
        if feature.type in NUMERIC:
            values = pc.cast(column, pa.float64()).to_numpy()
            columns.append(values)
        else:
            columns.append(_categories(column))
    if all_numeric(features):
        return np.column_stack(columns).astype(np.float64) if columns else np.empty((0, 0))
    return np.column_stack([np.asarray(c, dtype=object) for c in columns])


def _categories(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """A text or boolean column as `categorical_value` would map it, without a loop per row."""
    if pa.types.is_boolean(column.type):
        text = pc.if_else(column, "true", "false")
    else:
        text = pc.cast(column, pa.string())
    encoded = pc.dictionary_encode(text.combine_chunks())
    # Each distinct value becomes one Python str; missing values index the trailing NaN.
    values = np.array([*encoded.dictionary.to_pylist(), math.nan], dtype=object)
    codes = pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy()
    result: np.ndarray[Any, Any] = values[codes]
    return result
