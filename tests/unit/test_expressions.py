"""The derived-feature expression language: what it accepts, what it refuses (and where), and
that vectorized evaluation agrees with plain Python row by row, missing values included."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from modelyard.api.trainingjob import TrainingJobSpec
from modelyard.expressions.evaluate import evaluate
from modelyard.expressions.parse import (
    MAX_DEPTH,
    ExpressionError,
    Kind,
    columns_of,
    infer_kind,
    parse,
)

NAN = math.nan
KINDS: dict[str, Kind] = {
    "a": "number",
    "b": "number",
    "s": "string",
    "when": "string",
    "ts": "number",
    "odd name": "number",
}
ROWS: list[dict[str, Any]] = [
    {"a": 4.0, "b": 2.0, "s": "Red Car", "when": "2024-02-29T13:45:00", "ts": 0.0, "odd name": 1.0},
    {
        "a": -1.0,
        "b": 0.0,
        "s": "blue",
        "when": "2023-12-31",
        "ts": 1_700_000_000.0,
        "odd name": 2.0,
    },
    {"a": NAN, "b": 3.0, "s": NAN, "when": "not a date", "ts": NAN, "odd name": NAN},
    {"a": 0.0, "b": NAN, "s": "", "when": NAN, "ts": -86_400.5, "odd name": 0.0},
    {
        "a": 2.5,
        "b": 5.0,
        "s": "car",
        "when": "2021-06-01T23:00:00+05:00",
        "ts": 951_782_400.0,
        "odd name": 3.0,
    },
]


def columns() -> dict[str, np.ndarray]:
    return {
        name: np.array(
            [row[name] for row in ROWS], dtype=np.float64 if kind == "number" else object
        )
        for name, kind in KINDS.items()
    }


def run(text: str) -> np.ndarray:
    node = parse(text)
    infer_kind(node, KINDS)
    return evaluate(node, columns(), len(ROWS))


def missing(value: Any) -> bool:
    return not isinstance(value, str) and (value is None or math.isnan(value))


def lifted(function: Callable[..., Any], *names: str) -> list[Any]:
    """Plain Python reference: missing in, missing out."""
    results = []
    for row in ROWS:
        values = [row[name] for name in names]
        results.append(NAN if any(missing(v) for v in values) else function(*values))
    return results


def date_part(part: str) -> Callable[[Any], float]:
    def compute(value: Any) -> float:
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return NAN
        else:
            moment = datetime.fromtimestamp(math.floor(value), UTC)
        return float(
            {
                "year": moment.year,
                "month": moment.month,
                "day": moment.day,
                "weekday": moment.weekday(),
                "hour": moment.hour,
            }[part]
        )

    return compute


def safe(function: Callable[..., float]) -> Callable[..., float]:
    def call(*args: float) -> float:
        try:
            return function(*args)
        except (ValueError, ZeroDivisionError):
            return NAN

    return call


CASES: list[tuple[str, list[Any]]] = [
    ("a + b * 2", lifted(lambda a, b: a + b * 2, "a", "b")),
    ("(a - b) / 2", lifted(lambda a, b: (a - b) / 2, "a", "b")),
    ("-a ** 2", lifted(lambda a: -(a**2), "a")),
    ("a % 3", lifted(lambda a: a % 3, "a")),
    ("ratio(a, b)", lifted(lambda a, b: a / b if b != 0 else NAN, "a", "b")),
    ("log1p(abs(a))", lifted(lambda a: math.log1p(abs(a)), "a")),
    ("sqrt(b)", lifted(lambda b: math.sqrt(b), "b")),
    ("exp(b)", lifted(lambda b: math.exp(b), "b")),
    ("log(b)", lifted(safe(lambda b: math.log(b) if b > 0 else -math.inf), "b")),
    ("min(a, b, 1)", lifted(lambda a, b: min(a, b, 1), "a", "b")),
    ("max(a, b)", lifted(lambda a, b: max(a, b), "a", "b")),
    ("clip(a, 0, 3)", lifted(lambda a: min(max(a, 0), 3), "a")),
    ("a > b", lifted(lambda a, b: float(a > b), "a", "b")),
    ("0 <= a < 3", lifted(lambda a: float(0 <= a < 3), "a")),
    ("a if b > 1 else -a", lifted(lambda a, b: a if b > 1 else -a, "a", "b")),
    ("bucket(a, [0, 2.5, 10])", lifted(lambda a: float(sum(a >= e for e in (0, 2.5, 10))), "a")),
    ("col('odd name') * 10", lifted(lambda v: v * 10, "odd name")),
    ("length(s)", lifted(lambda s: float(len(s)), "s")),
    ("contains(lower(s), 'car')", lifted(lambda s: float("car" in s.lower()), "s")),
    ("upper(s) + '!'", lifted(lambda s: s.upper() + "!", "s")),
    ("s == 'blue'", lifted(lambda s: float(s == "blue"), "s")),
    ("'x' if s == 'blue' else s", lifted(lambda s: "x" if s == "blue" else s, "s")),
    *[(f"{part}(when)", lifted(date_part(part), "when")) for part in ("year", "month", "day")],
    *[(f"{part}(when)", lifted(date_part(part), "when")) for part in ("weekday", "hour")],
    *[
        (f"{part}(ts)", lifted(date_part(part), "ts"))
        for part in ("year", "month", "day", "weekday", "hour")
    ],
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[text for text, _ in CASES])
def test_vectorized_result_equals_plain_python_row_by_row(text: str, expected: list[Any]) -> None:
    result = run(text).tolist()
    assert len(result) == len(expected)
    for got, want in zip(result, expected, strict=True):
        if missing(want):
            assert missing(got), (text, result, expected)
        elif isinstance(want, str):
            assert got == want
        else:
            assert got == pytest.approx(want), (text, result, expected)


def test_logic_is_kleene_missing_only_where_it_matters() -> None:
    # Row 2 has a missing `a`: `and` with a false operand is false, `or` with a true one true.
    assert run("a > 0 and b > 100").tolist()[2] == 0.0
    assert run("a > 0 or b > 1").tolist()[2] == 1.0
    assert math.isnan(run("a > 0 and b > 1").tolist()[2])
    assert math.isnan(run("not a").tolist()[2])
    assert run("not a").tolist()[3] == 1.0


def test_division_by_zero_is_inf_or_nan_without_warnings() -> None:
    with np.errstate(all="raise"):  # would raise if evaluation let a warning through
        assert run("a / b").tolist()[1] == -math.inf
        assert math.isnan(run("ratio(a, b)").tolist()[1])
        assert math.isnan(run("a % 0").tolist()[0])
        assert math.isnan(run("log(a)").tolist()[1])


@pytest.mark.parametrize(
    ("text", "fragment", "position"),
    [
        ("a.real", "attribute access", 1),
        ("s.upper()", "only the functions", 1),
        ("__import__('os')", "unknown function '__import__'", 1),
        ("a[0]", "indexing", 1),
        ("lambda: a", "lambda", 1),
        ("f'{a}'", "f-string", 1),
        ("(y := a)", "assignment (:=)", 2),
        ("[x for x in a]", "comprehension", 1),
        ("a in b", "no 'in', 'is'", 1),
        ("a is None", "no 'in', 'is'", 1),
        ("a @ b", "operator MatMult", 1),
        ("a << 2", "operator LShift", 1),
        ("~a", "operator Invert", 1),
        ("open('x')", "unknown function 'open'", 1),
        ("log(x=a)", "no keyword arguments", 5),
        ("log(*a)", "no *arguments", 1),
        ("log(a, b)", "log() takes 1 argument, got 2", 1),
        ("min(a)", "two or more", 1),
        ("col(a)", "col() takes one", 1),
        ("bucket(a, b)", "a list of numbers", 1),
        ("bucket(a, [2, 1])", "must increase", 11),
        ("bucket(a, [b])", "edges must be numbers", 12),
        ("a ** b", "exponent of **", 6),
        ("a ** 65", "exponent of **", 6),
        ("1e400", "too large for float64", 1),
        ("None", "constant None", 1),
        ("1j", "constant 1j", 1),
        ("b'x'", "constant b'x'", 1),
        ("a +", "syntax error", 1),
        ("a = 1", "syntax error", 3),
        ("é + a.b", "attribute access", 5),
        ("(\n a +\n b.c)", "attribute access", 9),
        ("  a +", "syntax error", 3),
    ],
)
def test_refused_with_the_position(text: str, fragment: str, position: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert fragment in str(caught.value)
    assert caught.value.position == position


@pytest.mark.parametrize(
    "text",
    [
        "(" * 250 + "a" + ")" * 250,
        "-" * 1000 + "a",
        "not " * 250 + "a",
        "log(" * 200 + "a" + ")" * 200,
        "a" + " + a" * 300,
        "a" + " ** 2" * 100,
    ],
)
def test_deep_or_large_expressions_are_refused_cleanly(text: str) -> None:
    with pytest.raises(ExpressionError, match=r"nested|too large|syntax error"):
        parse(text)


def test_nesting_up_to_the_limit_is_fine() -> None:
    depth = MAX_DEPTH - 1
    assert run("log1p(" * depth + "abs(a)" + ")" * depth).shape == (len(ROWS),)
    with pytest.raises(ExpressionError, match="too deeply nested"):
        parse("abs(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("c + 1", "unknown column 'c'"),
        ("a + s", "'+' takes a number, got a string"),
        ("s * 2", "'*' takes a number, got a string"),
        ("a == s", "compares a number with a string"),
        ("1 if a else 'x'", "both must be one kind"),
        ("length(a)", "length() takes a string"),
        ("log(s)", "log() takes a number"),
        ("s and a", "'and' takes a number"),
        ("-s", "'-' takes a number"),
        ("bucket(s, [1])", "bucket() takes a number"),
    ],
)
def test_kinds_are_checked_against_the_columns(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        infer_kind(parse(text), KINDS)
    assert fragment in str(caught.value)


def test_kinds_and_columns_read() -> None:
    assert infer_kind(parse("lower(s) + 'x'"), KINDS) == "string"
    assert infer_kind(parse("year(when) > 2020 and True"), KINDS) == "number"
    assert list(columns_of(parse("ratio(a, col('odd name')) if s == 'x' else b"))) == [
        "s",
        "a",
        "odd name",
        "b",
    ]
    # A column may be called like a function name: only a call means the function.
    assert infer_kind(parse("log(log)"), {"log": "number"}) == "number"


def test_a_malformed_expression_is_refused_by_the_api_model_naming_the_field() -> None:
    document = {
        "datasetRef": {"name": "d"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "featureEngineering": {
            "derived": [
                {"name": "ok", "expression": "log1p(a)"},
                {"name": "bad", "expression": "a.__class__"},
            ]
        },
    }
    with pytest.raises(ValidationError) as caught:
        TrainingJobSpec.model_validate(document)
    (error,) = caught.value.errors()
    assert error["loc"] == ("featureEngineering", "derived", 1, "expression")
    assert "attribute access" in error["msg"]
