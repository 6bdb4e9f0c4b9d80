"""Rows from a CSV or JSON file as one Open Inference Protocol (V2) request, and the server's
answer as one prediction per row. Pure functions: the command does the I/O.

Accepted input: CSV with a header row of feature names; JSON as a list of objects (keys are
feature names), a list of lists (values in the model's feature order), `{"instances": …}` as in
KServe V1, or a complete V2 request, which is sent as it is.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from modelyard.cli.errors import UsageError

MATRIX_INPUT = "input-0"
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class Rows:
    """Input rows; `columns` None means positional values in the model's feature order."""

    columns: list[str] | None
    rows: list[list[Any]]
    #: Values are CSV text, to be typed after the model's inputs.
    text: bool = False


def parse(source: str, content: str) -> Rows | dict[str, Any]:
    """The rows of a file (or a V2 request to pass through); `source` names it in errors."""
    stripped = content.lstrip()
    if not stripped:
        raise UsageError(f"{source}: empty: expected CSV with a header row, or JSON rows")
    if stripped[0] in "[{":
        try:
            document = json.loads(content)
        except ValueError as error:
            raise UsageError(f"{source}: not valid JSON: {error}") from None
        return _from_json(source, document)
    return _from_csv(source, content)


def _from_csv(source: str, content: str) -> Rows:
    reader = csv.reader(io.StringIO(content))
    lines = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if len(lines) < 2:
        raise UsageError(f"{source}: expected a header row of feature names and at least one row")
    header = [name.strip() for name in lines[0][1]]
    for number, row in lines[1:]:
        if len(row) != len(header):
            raise UsageError(
                f"{source}: line {number} has {len(row)} values but the header has {len(header)}"
            )
    return Rows(header, [row for _, row in lines[1:]], text=True)


def _from_json(source: str, document: Any) -> Rows | dict[str, Any]:
    if isinstance(document, dict) and "inputs" in document:
        return document
    if isinstance(document, dict) and "instances" in document:
        document = document["instances"]
    if not isinstance(document, list) or not document:
        raise UsageError(
            f"{source}: expected a non-empty list of rows (objects or lists), "
            '{"instances": [...]}, or a V2 request {"inputs": [...]}'
        )
    if all(isinstance(row, dict) for row in document):
        columns = list(dict.fromkeys(key for row in document for key in row))
        return Rows(columns, [[row.get(name) for name in columns] for row in document])
    if all(isinstance(row, list) for row in document):
        return Rows(None, document)
    raise UsageError(f"{source}: rows must be all objects or all lists, not a mix")


def build_request(
    rows: Rows | dict[str, Any],
    inputs: list[dict[str, Any]],
    target: str | None,
    probabilities: bool,
) -> dict[str, Any]:
    """The V2 request. `inputs` is the model metadata's list of {name, datatype}; a column named
    after the model's target (a dataset file with its labels) is left out."""
    if isinstance(rows, dict):
        request = dict(rows)
    elif rows.columns is None:
        request = {"inputs": [_matrix(rows, inputs)]}
    else:
        datatypes = {spec["name"]: spec["datatype"] for spec in inputs}
        request = {
            "inputs": [
                _feature(name, [row[position] for row in rows.rows], datatypes, rows.text)
                for position, name in enumerate(rows.columns)
                if name in datatypes or name != target
            ]
        }
    if probabilities:
        request["parameters"] = {**(request.get("parameters") or {}), "probabilities": True}
    return request


def _matrix(rows: Rows, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    datatypes = [spec["datatype"] for spec in inputs]
    data = [
        [
            _typed(
                value, datatypes[i] if i < len(datatypes) else "BYTES", rows.text, f"column {i + 1}"
            )
            for i, value in enumerate(row)
        ]
        for row in rows.rows
    ]
    width = len(rows.rows[0])
    numeric = all(datatype == "FP64" for datatype in datatypes)
    return {
        "name": MATRIX_INPUT,
        "shape": [len(data), width],
        "datatype": "FP64" if numeric else "BYTES",
        "data": data,
    }


def _feature(name: str, values: list[Any], datatypes: dict[str, str], text: bool) -> dict[str, Any]:
    datatype = datatypes.get(name, "BYTES")
    return {
        "name": name,
        "shape": [len(values)],
        "datatype": datatype,
        "data": [_typed(value, datatype, text, name) for value in values],
    }


def _typed(value: Any, datatype: str, text: bool, where: str) -> Any:
    """A CSV cell as the JSON value the model's input takes; JSON values pass unchanged."""
    if not text:
        return value
    cell = value.strip()
    if cell == "":
        return None  # a missing value: the server imputes it when the model can
    if datatype == "BOOL":
        lowered = cell.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else cell
    if datatype == "BYTES":
        return value
    try:
        return float(cell)
    except ValueError:
        raise UsageError(f"{where}: {cell!r} is not a number") from None


@dataclass(frozen=True)
class Predictions:
    model: str
    version: str | None
    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "predictions": self.predictions,
        }
        if self.probabilities is not None:
            document["probabilities"] = self.probabilities
            document["classes"] = self.classes
        return document


def read_answer(answer: dict[str, Any]) -> Predictions:
    """The V2 response's `predict` and `predict_proba` outputs, one entry per row."""
    outputs = {output.get("name"): output for output in answer.get("outputs") or []}
    predict = outputs.get("predict") or {}
    proba = outputs.get("predict_proba")
    probabilities = None
    classes = None
    if proba is not None:
        rows, width = proba["shape"]
        flat = proba["data"]
        probabilities = [flat[i * width : (i + 1) * width] for i in range(rows)]
        classes = (proba.get("parameters") or {}).get("classes")
    return Predictions(
        model=str(answer.get("model_name", "")),
        version=answer.get("model_version"),
        predictions=list(predict.get("data") or []),
        probabilities=probabilities,
        classes=classes,
    )
