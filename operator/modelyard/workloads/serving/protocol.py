"""Request decoding and response encoding for the Open Inference Protocol (V2) and KServe V1.

Decoding turns any accepted request shape into the one thing the model takes: a 2-D matrix
with columns in the card's feature order. Anything else is a RequestError naming the problem:
400 when the envelope is not the protocol's (bad JSON, missing or mistyped fields), 422 when it
is well-formed but its data does not fit this model (shape, feature names, types, NaN/Inf).

All-numeric payloads take a fast path: a large body's matrix straight from the JSON text
(numeric_json.py), any other through numpy. The per-value checks, which produce the precise
messages, run only for mixed-type models or once something looks wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelyard.workloads.serving import numeric_json
from modelyard.workloads.serving.errors import RequestError
from modelyard.workloads.serving.feedback import checked_id
from modelyard.workloads.serving.model import Model

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
OUTPUTS = (PREDICT, PREDICT_PROBA)
BYTES = "BYTES"
NUMERIC_DATATYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64"}
)
_OUTPUT_DATATYPE = {"i": "INT64", "u": "INT64", "f": "FP64", "b": "BOOL"}
_NUMERIC_KINDS = "fiub"


@dataclass(slots=True)
class Inference:
    """What a request asks for: the input matrix and which outputs to compute."""

    matrix: np.ndarray
    predict: bool
    proba: bool
    request_id: str | None = None


def loads(body: bytes) -> Any:
    if not body:
        raise RequestError(400, "empty request body: expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        # NaN and Infinity are not JSON, yet Python clients send them; parse such bodies
        # leniently so the answer can name the feature holding one instead of "bad JSON".
        try:
            return json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than orjson allows
            raise RequestError(400, f"malformed JSON: {error}") from None


# --- KServe V1 -----------------------------------------------------------------------------


def decode_v1(model: Model, body: bytes, proba_verb: bool) -> Inference:
    found = numeric_json.instances(body, len(model.features)) if model.all_numeric else None
    if found is not None:
        proba = proba_verb or _probabilities_flag(found.document)
        return Inference(found.matrix, predict=True, proba=proba)
    document = loads(body)
    if not isinstance(document, dict):
        raise RequestError(400, 'the body must be a JSON object: {"instances": [...]}')
    if "instances" not in document:
        raise RequestError(400, 'missing "instances": expected {"instances": [[...], ...]}')
    instances = document["instances"]
    if not isinstance(instances, list):
        raise RequestError(400, f'"instances" must be a list of rows, not {_kind(instances)}')
    proba = proba_verb or _probabilities_flag(document)
    if not instances:
        raise RequestError(422, '"instances" is empty: nothing to predict')
    first = instances[0]
    if isinstance(first, dict):
        matrix = objects_matrix(model, instances, "instances")
    elif isinstance(first, list):
        matrix = rows_matrix(model, instances, "instances")
    else:
        raise RequestError(
            422,
            f'"instances" must hold rows (lists or objects), not {_kind(first)}: '
            "wrap a single row as [[...]]",
        )
    return Inference(matrix, predict=True, proba=proba)


def encode_v1(model: Model, predictions: np.ndarray, proba: np.ndarray | None) -> bytes:
    document: dict[str, Any] = {"model_name": model.name, "predictions": predictions.tolist()}
    if proba is not None:
        document["probabilities"] = proba.tolist()
        document["classes"] = model.classes
    return orjson.dumps(document)


# --- Open Inference Protocol V2 ------------------------------------------------------------


@dataclass(slots=True)
class Tensor:
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


def decode_v2(model: Model, body: bytes) -> Inference:
    found = numeric_json.tensor(body, len(model.features)) if model.all_numeric else None
    if found is not None and _plain_matrix_tensor(found):
        request_id = _request_id(found.document)
        predict, proba = _requested_outputs(found.document)
        return Inference(found.matrix, predict=predict, proba=proba, request_id=request_id)
    document = loads(body)
    if not isinstance(document, dict):
        raise RequestError(400, 'the body must be a JSON object: {"inputs": [...]}')
    request_id = _request_id(document)
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(400, '"inputs" must be a non-empty list of tensors')
    tensors = [_tensor(i, item) for i, item in enumerate(inputs)]
    predict, proba = _requested_outputs(document)

    single = tensors[0] if len(tensors) == 1 else None
    if single is not None and len(single.shape) == 2:
        matrix = _matrix_tensor(model, single)
    elif all(tensor.name in model.index for tensor in tensors):
        matrix = _feature_tensors(model, tensors)
    elif single is not None:
        raise RequestError(
            422,
            f"input {single.name!r}: shape {single.shape}: expected [rows, "
            f"{len(model.features)}] for a matrix, or one 1-D input per feature named "
            f"{model.features}",
        )
    else:
        unknown = [tensor.name for tensor in tensors if tensor.name not in model.index]
        raise RequestError(422, f"unknown feature(s) {unknown}: the model takes {model.features}")
    return Inference(matrix, predict=predict, proba=proba, request_id=request_id)


def encode_v2(
    model: Model, request_id: str | None, predictions: np.ndarray | None, proba: np.ndarray | None
) -> bytes:
    outputs: list[dict[str, Any]] = []
    if predictions is not None:
        outputs.append(
            {
                "name": PREDICT,
                "shape": [len(predictions)],
                "datatype": _OUTPUT_DATATYPE.get(predictions.dtype.kind, BYTES),
                "data": predictions.tolist(),
            }
        )
    if proba is not None:
        outputs.append(
            {
                "name": PREDICT_PROBA,
                "shape": list(proba.shape),
                "datatype": "FP64",
                "data": proba.ravel().tolist(),
                "parameters": {"classes": model.classes},
            }
        )
    document: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": outputs,
    }
    if request_id is not None:
        document["id"] = request_id
    return orjson.dumps(document)


def _request_id(document: dict[str, Any]) -> str | None:
    request_id = document.get("id")
    if request_id is not None:
        if not isinstance(request_id, str):
            raise RequestError(400, f'"id" must be a string, not {_kind(request_id)}')
        checked_id(request_id, '"id"')
    return request_id


def _plain_matrix_tensor(found: numeric_json.Found) -> bool:
    """Whether the tensor around a matrix read from the text passes what _tensor and
    _matrix_tensor check; if not, the general path names what is wrong."""
    shape = found.tensor.get("shape")
    datatype = found.tensor.get("datatype")
    return (
        isinstance(found.tensor.get("name"), str)
        and isinstance(datatype, str)
        and datatype in NUMERIC_DATATYPES
        and isinstance(shape, list)
        and all(type(n) is int for n in shape)
        and shape == list(found.matrix.shape)
    )


def _tensor(position: int, item: Any) -> Tensor:
    if not isinstance(item, dict):
        raise RequestError(400, f"inputs[{position}] must be an object, not {_kind(item)}")
    name = item.get("name")
    if not isinstance(name, str):
        raise RequestError(400, f'inputs[{position}] needs a "name" string')
    shape = item.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise RequestError(400, f'input {name!r}: "shape" must be a list of non-negative ints')
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or (datatype != BYTES and datatype not in NUMERIC_DATATYPES):
        raise RequestError(
            400,
            f"input {name!r}: unknown datatype {datatype!r}: expected one of "
            f"{sorted(NUMERIC_DATATYPES | {BYTES})}",
        )
    data = item.get("data")
    if not isinstance(data, list):
        raise RequestError(400, f'input {name!r}: "data" must be a list')
    return Tensor(name, shape, datatype, data)


def _requested_outputs(document: dict[str, Any]) -> tuple[bool, bool]:
    outputs = document.get("outputs")
    if outputs is None:
        return True, _probabilities_flag(document)
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise RequestError(400, '"outputs" must be a list of {"name": ...} objects')
    names = {o["name"] for o in outputs}
    unknown = sorted(names - set(OUTPUTS))
    if unknown:
        raise RequestError(422, f"unknown output(s) {unknown}: this model offers {list(OUTPUTS)}")
    return PREDICT in names, PREDICT_PROBA in names


def _matrix_tensor(model: Model, tensor: Tensor) -> np.ndarray:
    rows, width = tensor.shape
    features = len(model.features)
    if width != features:
        raise RequestError(
            422,
            f"input {tensor.name!r} has {width} features per row but the model takes "
            f"{features}: {model.features}",
        )
    if model.all_numeric and tensor.datatype == BYTES:
        raise RequestError(
            422, f"input {tensor.name!r}: datatype BYTES, but every feature is a number"
        )
    data = tensor.data
    if data and isinstance(data[0], list):
        matrix = rows_matrix(model, data, f"input {tensor.name!r}")
    elif len(data) != rows * width:
        raise RequestError(
            422,
            f"input {tensor.name!r}: shape {tensor.shape} needs {rows * width} values, "
            f"data has {len(data)}",
        )
    else:
        # A flat row-major list, as most clients send it: converted in one piece when numeric.
        where = f"input {tensor.name!r}"
        numeric = _numeric_matrix(model, data, where, flat=True) if data else None
        matrix = (
            rows_matrix(model, [data[i : i + width] for i in range(0, len(data), width)], where)
            if numeric is None
            else numeric
        )
    if matrix.shape[0] != rows:
        raise RequestError(
            422, f"input {tensor.name!r}: shape {tensor.shape} but data has {matrix.shape[0]} rows"
        )
    return matrix


def _feature_tensors(model: Model, tensors: list[Tensor]) -> np.ndarray:
    columns: list[list[Any] | None] = [None] * len(model.features)
    rows: int | None = None
    for tensor in tensors:
        position = model.index[tensor.name]
        if columns[position] is not None:
            raise RequestError(422, f"feature {tensor.name!r} is given twice")
        if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise RequestError(
                422, f"input {tensor.name!r}: shape {tensor.shape}: a feature input is [rows]"
            )
        expected = _feature_datatype(model, position)
        if tensor.datatype != expected and not (
            expected in NUMERIC_DATATYPES and tensor.datatype in NUMERIC_DATATYPES
        ):
            raise RequestError(
                422,
                f"input {tensor.name!r}: datatype {tensor.datatype}, but the feature takes "
                f"{expected}",
            )
        data = tensor.data
        if data and isinstance(data[0], list):  # [rows, 1] sent nested
            data = [
                value[0] if isinstance(value, list) and len(value) == 1 else value for value in data
            ]
        if len(data) != tensor.shape[0]:
            raise RequestError(
                422, f"input {tensor.name!r}: shape {tensor.shape} but data has {len(data)} values"
            )
        if rows is not None and len(data) != rows:
            raise RequestError(
                422, f"input {tensor.name!r} has {len(data)} rows but other inputs have {rows}"
            )
        rows = len(data)
        columns[position] = data
    missing = [name for name, column in zip(model.features, columns, strict=True) if column is None]
    if missing:
        raise RequestError(422, f"missing feature(s) {missing}: the model takes {model.features}")
    if not rows:
        raise RequestError(422, "the inputs hold no rows: nothing to predict")
    return rows_matrix(model, [list(row) for row in zip(*columns, strict=True)], "inputs")


# --- From JSON values to the model's matrix ------------------------------------------------


def objects_matrix(model: Model, rows: list[Any], where: str) -> np.ndarray:
    """Rows given as {feature: value} objects, reordered into the card's column order."""
    features = model.features
    for r, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(422, f"{where}: row {r} is {_kind(row)}, expected an object")
        if row.keys() != model.feature_set:
            unknown = sorted(set(row) - model.feature_set)
            if unknown:
                raise RequestError(
                    422,
                    f"{where}: row {r}: unknown feature(s) {unknown}: the model takes {features}",
                )
            missing = [name for name in features if name not in row]
            raise RequestError(422, f"{where}: row {r} lacks feature(s) {missing}")
    return rows_matrix(model, [[row[name] for name in features] for row in rows], where)


def rows_matrix(model: Model, rows: list[Any], where: str) -> np.ndarray:
    """Rows given as lists of values in feature order, checked and converted."""
    if not rows:
        raise RequestError(422, f"{where}: no rows: nothing to predict")
    matrix = _numeric_matrix(model, rows, where)
    return _checked_rows(model, rows, where) if matrix is None else matrix


def _numeric_matrix(
    model: Model, values: list[Any], where: str, flat: bool = False
) -> np.ndarray | None:
    """Rows (with `flat`, the values of rows one after the other) as a float64 matrix in one
    numpy conversion when they are all numbers and as many per row as the model has features;
    None otherwise, for the value-by-value checks to name what is wrong."""
    if not model.all_numeric:
        return None
    try:
        array = np.asarray(values)
    except (ValueError, OverflowError):
        return None  # ragged rows or out-of-range ints
    width = len(model.features)
    if array.dtype.kind not in _NUMERIC_KINDS:
        return None
    if flat and array.ndim == 1 and len(array) % width == 0:
        array = array.reshape(-1, width)
    if array.ndim != 2 or array.shape[1] != width:
        return None
    matrix = array.astype(np.float64, copy=False)
    if not np.isfinite(matrix).all():
        _reject_non_finite(model, matrix, where)
    return matrix


def _checked_rows(model: Model, rows: list[Any], where: str) -> np.ndarray:
    """Value-by-value conversion: slower, and names the first row and feature that is wrong."""
    width = len(model.features)
    matrix: np.ndarray = np.empty((len(rows), width), dtype=model.dtype)
    for r, row in enumerate(rows):
        if not isinstance(row, list):
            raise RequestError(422, f"{where}: row {r} is {_kind(row)}, expected a list of {width}")
        if len(row) != width:
            raise RequestError(
                422,
                f"{where}: row {r} has {len(row)} values but the model takes {width} features: "
                f"{model.features}",
            )
        for c, value in enumerate(row):
            matrix[r, c] = _value(model, c, value, r, where)
    return matrix


def _value(model: Model, column: int, value: Any, row: int, where: str) -> Any:
    name = model.features[column]
    if value is None:
        return _missing(model, name, row, where)
    if model.numeric[column]:
        if isinstance(value, bool | int | float):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if math.isnan(number):
                return _missing(model, name, row, where)
            if math.isinf(number):
                raise RequestError(
                    422, f"{where}: row {row}, feature {name!r}: {value} is not a finite number"
                )
            return number
        raise RequestError(
            422,
            f"{where}: row {row}, feature {name!r}: expected a number, got {_kind(value)} "
            f"{_preview(value)}",
        )
    if model.boolean[column]:
        if isinstance(value, bool):
            return "true" if value else "false"
        if value in ("true", "false"):
            return value
        raise RequestError(
            422,
            f"{where}: row {row}, feature {name!r}: expected true or false, got {_kind(value)} "
            f"{_preview(value)}",
        )
    if isinstance(value, str):
        return value
    raise RequestError(
        422,
        f"{where}: row {row}, feature {name!r}: expected a string, got {_kind(value)} "
        f"{_preview(value)}",
    )


def _missing(model: Model, name: str, row: int, where: str) -> float:
    if not model.accepts_missing:
        raise RequestError(
            422,
            f"{where}: row {row}, feature {name!r}: missing value (null/NaN), and this model "
            "cannot impute missing values",
        )
    return math.nan


def _reject_non_finite(model: Model, matrix: np.ndarray, where: str) -> None:
    infinite = np.argwhere(np.isinf(matrix))
    if len(infinite):
        row, column = (int(i) for i in infinite[0])
        raise RequestError(
            422,
            f"{where}: row {row}, feature {model.features[column]!r}: {matrix[row, column]} "
            "is not a finite number",
        )
    if not model.accepts_missing:
        row, column = (int(i) for i in np.argwhere(np.isnan(matrix))[0])
        _missing(model, model.features[column], row, where)


def _feature_datatype(model: Model, position: int) -> str:
    if model.boolean[position]:
        return "BOOL"
    return "FP64" if model.numeric[position] else BYTES


def feature_datatypes(model: Model) -> list[str]:
    """The V2 datatype of each feature input, for the model metadata."""
    return [_feature_datatype(model, position) for position in range(len(model.features))]


def _probabilities_flag(document: dict[str, Any]) -> bool:
    parameters = document.get("parameters")
    if parameters is None:
        return False
    if not isinstance(parameters, dict):
        raise RequestError(400, f'"parameters" must be an object, not {_kind(parameters)}')
    flag = parameters.get("probabilities", False)
    if not isinstance(flag, bool):
        raise RequestError(400, f'"parameters.probabilities" must be true or false, not {flag!r}')
    return flag


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _preview(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
