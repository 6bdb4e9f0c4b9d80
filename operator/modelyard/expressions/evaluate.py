"""Evaluate a parsed expression over whole columns with numpy.

Numbers are float64 with NaN for missing; strings are object arrays of `str` with anything else
(NaN, None) missing. Missing in gives missing out, except where the answer does not depend on it
(`0 and missing` is 0, `1 or missing` is 1). Comparisons and logic give 1.0 / 0.0. Floating-point
faults (x / 0, log(-1)) give inf or NaN as IEEE 754 says, never an exception or a warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import numpy as np

from modelyard.expressions.parse import (
    Binary,
    Bucket,
    Call,
    Column,
    Const,
    IfElse,
    Logical,
    Node,
    Unary,
)

Array = np.ndarray[Any, Any]

# Timestamps (seconds since the epoch) beyond this are nonsense rather than dates, and would
# overflow numpy's datetime64 arithmetic.
MAX_TIMESTAMP = 1e11


def evaluate(node: Node, columns: Mapping[str, Array], rows: int) -> Array:
    """`node` over `rows` rows; `columns` maps each name it reads to a column of that length."""
    with np.errstate(all="ignore"):
        return _eval(node, columns, rows)


def _eval(node: Node, columns: Mapping[str, Array], rows: int) -> Array:
    match node:
        case Const(value=value):
            if isinstance(value, str):
                return np.full(rows, value, dtype=object)
            return np.full(rows, value, dtype=np.float64)
        case Column(name=name):
            return columns[name]
        case Unary(op="-", operand=operand):
            return -_eval(operand, columns, rows)
        case Unary(op="not", operand=operand):
            return 1.0 - _truth(_eval(operand, columns, rows))
        case Binary(op=op, left=left, right=right):
            return _binary(op, _eval(left, columns, rows), _eval(right, columns, rows))
        case Logical(op=op, operands=operands):
            return _logical(op, [_truth(_eval(o, columns, rows)) for o in operands])
        case IfElse(condition=condition, then=then, otherwise=otherwise):
            return _if_else(
                _truth(_eval(condition, columns, rows)),
                _eval(then, columns, rows),
                _eval(otherwise, columns, rows),
            )
        case Bucket(value=value, edges=edges):
            values = _eval(value, columns, rows)
            index = np.searchsorted(np.asarray(edges), values, side="right").astype(np.float64)
            index[np.isnan(values)] = np.nan
            return index
        case Call(function=function, args=args):
            return _call(function, [_eval(arg, columns, rows) for arg in args])
    raise AssertionError(f"unknown node {node!r}")


_ARITHMETIC: dict[str, Callable[[Array, Array], Array]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "**": np.power,
    "%": np.mod,
}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def _binary(op: str, left: Array, right: Array) -> Array:
    strings = left.dtype == object
    if op in _COMPARE:
        if strings:
            compare = _COMPARE[op]
            return _per_row(
                lambda a, b: 1.0 if compare(a, b) else 0.0, left, right, dtype=np.float64
            )
        compared: Array = _COMPARE[op](left, right).astype(np.float64)
        compared[np.isnan(left) | np.isnan(right)] = np.nan
        return compared
    if strings:  # the type check allows only + on two strings
        return _per_row(lambda a, b: a + b, left, right, dtype=object)
    return np.asarray(_ARITHMETIC[op](left, right), dtype=np.float64)


def _truth(values: Array) -> Array:
    """1.0 for non-zero, 0.0 for zero, NaN for missing."""
    result: Array = (values != 0).astype(np.float64)
    result[np.isnan(values)] = np.nan
    return result


def _logical(op: str, operands: list[Array]) -> Array:
    # Kleene logic: a known deciding operand decides even when another one is missing.
    deciding = 0.0 if op == "and" else 1.0
    stacked = np.vstack(operands)
    decided = (stacked == deciding).any(axis=0)
    missing = np.isnan(stacked).any(axis=0)
    result = np.full(stacked.shape[1], 1.0 - deciding)
    result[missing] = np.nan
    result[decided] = deciding
    return result


def _if_else(condition: Array, then: Array, otherwise: Array) -> Array:
    result = np.where(condition == 1.0, then, otherwise)
    if result.dtype != object:
        result = result.astype(np.float64)
    result[np.isnan(condition)] = np.nan
    return result


def _call(function: str, args: list[Array]) -> Array:
    match function:
        case "log":
            return np.log(args[0])
        case "log1p":
            return np.log1p(args[0])
        case "exp":
            return np.exp(args[0])
        case "sqrt":
            return np.sqrt(args[0])
        case "abs":
            return np.abs(args[0])
        case "min":
            return np.asarray(np.minimum.reduce(args), dtype=np.float64)
        case "max":
            return np.asarray(np.maximum.reduce(args), dtype=np.float64)
        case "ratio":
            numerator, denominator = args
            return np.where(denominator == 0, np.nan, numerator / denominator)
        case "clip":
            # Missing stays missing; np.clip would also propagate a NaN bound.
            return np.minimum(np.maximum(args[0], args[1]), args[2])
        case "length":
            return _per_row(len, args[0], dtype=np.float64)
        case "contains":
            return _per_row(lambda s, t: 1.0 if t in s else 0.0, *args, dtype=np.float64)
        case "lower":
            return _per_row(str.lower, args[0], dtype=object)
        case "upper":
            return _per_row(str.upper, args[0], dtype=object)
        case "year" | "month" | "day" | "weekday" | "hour":
            values = args[0]
            if values.dtype == object:
                return _date_part_of_text(function, values)
            return _date_part_of_timestamp(function, values)
    raise AssertionError(f"unknown function {function!r}")


def _per_row(function: Callable[..., Any], *columns: Array, dtype: type[Any]) -> Array:
    """`function` on each row whose string arguments are all present; NaN elsewhere."""
    result = np.full(len(columns[0]), np.nan, dtype=dtype)
    for i, values in enumerate(zip(*columns, strict=True)):
        if all(isinstance(v, str) for v in values):
            result[i] = function(*values)
    return result


def _date_part_of_text(part: str, values: Array) -> Array:
    """Date parts of ISO 8601 dates or date-times, read as written (no time-zone conversion)."""
    seen: dict[str, float] = {}
    result = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            continue
        if value not in seen:
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                seen[value] = math.nan
            else:
                seen[value] = float(
                    {
                        "year": moment.year,
                        "month": moment.month,
                        "day": moment.day,
                        "weekday": moment.weekday(),
                        "hour": moment.hour,
                    }[part]
                )
        result[i] = seen[value]
    return result


def _date_part_of_timestamp(part: str, seconds: Array) -> Array:
    """Date parts of Unix timestamps (seconds since 1970-01-01T00:00:00Z), in UTC."""
    valid = np.isfinite(seconds) & (np.abs(seconds) <= MAX_TIMESTAMP)
    moments = np.floor(np.where(valid, seconds, 0.0)).astype(np.int64).astype("datetime64[s]")
    days = moments.astype("datetime64[D]")
    if part == "year":
        values = moments.astype("datetime64[Y]").astype(np.int64) + 1970
    elif part == "month":
        values = moments.astype("datetime64[M]").astype(np.int64) % 12 + 1
    elif part == "day":
        values = (days - moments.astype("datetime64[M]")).astype(np.int64) + 1
    elif part == "weekday":
        values = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    else:
        values = (moments - days).astype(np.int64) // 3600
    result = values.astype(np.float64)
    result[~valid] = np.nan
    return result
