"""Large numeric request bodies read by simdjson answer exactly as the general decoding does:
the same matrix for what both accept, the same status and message for what either refuses."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.workloads.serving import numeric_json, protocol
from modelyard.workloads.serving.errors import RequestError
from modelyard.workloads.serving.model import Model
from tests.unit.test_serve_protocol import iris

ROW = [5.1, 3.5, 1.4, 0.2]
ROWS = [ROW, [6, 3, 4, 1], [7.7, 2.6, 6.9, 2.3]]


@pytest.fixture(scope="module")
def model() -> Model:
    return iris().model()


def v1(instances: Any, **fields: Any) -> bytes:
    return orjson.dumps({"instances": instances, **fields})


def v2(data: Any, shape: Any = None, datatype: Any = "FP64", **fields: Any) -> bytes:
    tensor = {"name": "x", "shape": shape or [3, 4], "datatype": datatype, "data": data}
    return orjson.dumps({"inputs": [tensor], **fields})


FLAT = [value for row in ROWS for value in row]
# Nested lists: within orjson's 1,024 levels, beyond Python's recursion limit; and beyond both.
DEEP = b"[" * 600 + b"]" * 600
TOO_DEEP = b"[" * 1100 + b"]" * 1100

# (name, protocol version, body, whether simdjson reads it)
CATALOGUE: list[tuple[str, int, bytes, bool]] = [
    ("v1 rows", 1, v1(ROWS), True),
    ("v1 integers", 1, v1([[1, 2, 3, 4]]), True),
    ("v1 probabilities asked", 1, v1(ROWS, parameters={"probabilities": True}), True),
    ("v1 probabilities not a bool", 1, v1(ROWS, parameters={"probabilities": "yes"}), True),
    ("v1 other fields with arrays", 1, v1(ROWS, note={"tags": [["a"], []]}), True),
    ("v1 a nested list in a row", 1, v1([[[1], 2, 3, 4]]), False),
    ("v1 nested lists that flatten to a row", 1, v1([[[1, 2], [3, 4]]]), False),
    ("v1 ragged rows", 1, v1([ROW, [1, 2, 3]]), False),
    ("v1 too many features", 1, v1([[1, 2, 3, 4, 5]]), False),
    ("v1 null", 1, v1([[None, 1, 2, 3]]), False),
    ("v1 boolean", 1, v1([[True, 1, 2, 3]]), False),
    ("v1 string", 1, v1([["1", 2, 3, 4]]), False),
    ("v1 objects", 1, v1([dict(zip("abcd", ROW, strict=True))]), False),
    ("v1 flat", 1, v1(ROW), False),
    ("v1 empty", 1, v1([]), False),
    ("v1 empty rows", 1, v1([[], []]), False),
    ("v1 out of range", 1, b'{"instances": [[1e400, 1, 2, 3]]}', False),
    ("v1 NaN literal", 1, b'{"instances": [[NaN, 1, 2, 3]]}', False),
    ("v1 big integer", 1, b'{"instances": [[99999999999999999999999, 1, 2, 3]]}', False),
    ("v1 repeated matrix", 1, b'{"instances": [[1, 2, 3, 4]], "instances": [[5, 6, 7, 8]]}', False),
    (
        "v1 repeated field",
        1,
        v1(ROWS)[:-1] + b', "parameters": {"probabilities": true}, "parameters": {}}',
        False,
    ),
    ("v1 byte order mark", 1, b"\xef\xbb\xbf" + v1(ROWS), False),
    ("v1 trailing bytes", 1, v1(ROWS) + b" x", False),
    ("v1 a bracket in a string", 1, v1(ROWS, note="[x"), False),
    ("v1 a bracket in a key", 1, v1(ROWS, **{"[": 1}), False),
    ("v1 an escaped bracket with a nested list", 1, v1([[[1], 2, 3, 4]], note="\\u005b"), False),
    ("v1 not an object", 1, orjson.dumps([ROWS]), False),
    ("v1 a NUL in a key", 1, v1(ROWS, **{"a\x00b": 1}), False),
    (
        "v1 a NUL in a nested key",
        1,
        v1(ROWS, parameters={"probabilities": True, "\x00": [1]}),
        True,
    ),
    ("v1 keys to unescape", 1, v1(ROWS, **{'"\u00e9\\': {'"': [1]}}), True),
    ("v1 a field nested 600 deep", 1, v1(ROWS)[:-1] + b', "x": ' + DEEP + b"}", False),
    ("v1 a field nested 1,100 deep", 1, v1(ROWS)[:-1] + b', "x": ' + TOO_DEEP + b"}", False),
    ("v2 flat", 2, v2(FLAT), True),
    ("v2 rows", 2, v2(ROWS), True),
    ("v2 id and outputs", 2, v2(FLAT, id="r-1", outputs=[{"name": "predict_proba"}]), True),
    ("v2 id not a string", 2, v2(FLAT, id=7), True),
    ("v2 unknown output", 2, v2(FLAT, outputs=[{"name": "logits"}]), True),
    ("v2 integer datatype", 2, v2(FLAT, datatype="INT64"), True),
    ("v2 BYTES", 2, v2(FLAT, datatype="BYTES"), True),
    ("v2 unknown datatype", 2, v2(FLAT, datatype="FP65"), True),
    ("v2 datatype a list", 2, v2(FLAT, datatype=["FP64"]), True),
    ("v2 datatype an object", 2, v2(FLAT, datatype={"FP64": 1}), True),
    ("v2 shape mismatch", 2, v2(FLAT, shape=[4, 4]), True),
    ("v2 shape of booleans", 2, v2(FLAT, shape=[3, True]), True),
    ("v2 shape of floats", 2, v2(FLAT, shape=[3.0, 4]), True),
    ("v2 one dimension", 2, v2(FLAT, shape=[12]), True),
    (
        "v2 no name",
        2,
        orjson.dumps({"inputs": [{"shape": [3, 4], "datatype": "FP64", "data": FLAT}]}),
        True,
    ),
    ("v2 a field nested 600 deep", 2, v2(FLAT)[:-1] + b', "x": ' + DEEP + b"}", False),
    (
        "v2 a tensor field nested 600 deep",
        2,
        v2(FLAT).replace(b'{"name":"x",', b'{"name":"x","x":' + DEEP + b",", 1),
        False,
    ),
    ("v2 a nested list in flat data", 2, v2([[1], *FLAT[1:]]), False),
    ("v2 ragged rows", 2, v2([ROW, ROW, [1, 2, 3]]), False),
    ("v2 null", 2, v2([None, *FLAT[1:]]), False),
    (
        "v2 two inputs",
        2,
        orjson.dumps(
            {"inputs": [{"name": "a", "shape": [3, 4], "datatype": "FP64", "data": FLAT}] * 2}
        ),
        False,
    ),
    ("v2 data not a list", 2, v2("x"), False),
    ("v2 empty data", 2, v2([], shape=[0, 4]), False),
    (
        "v2 repeated key in the tensor",
        2,
        b'{"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": '
        + json.dumps(FLAT).encode()
        + b', "data": [1]}]}',
        False,
    ),
]


@pytest.fixture
def every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numeric_json, "MIN_BODY", 0)


def decode(model: Model, version: int, body: bytes) -> tuple[Any, ...]:
    try:
        if version == 1:
            inference = protocol.decode_v1(model, body, proba_verb=False)
        else:
            inference = protocol.decode_v2(model, body)
    except RequestError as error:
        return ("refused", error.status, str(error))
    matrix = inference.matrix
    return (
        "ok",
        matrix.dtype,
        matrix.tolist(),
        inference.predict,
        inference.proba,
        inference.request_id,
    )


@pytest.mark.parametrize(
    ("name", "version", "body", "fast"), CATALOGUE, ids=[c[0] for c in CATALOGUE]
)
def test_both_readings_answer_the_same(
    model: Model, monkeypatch: pytest.MonkeyPatch, name: str, version: int, body: bytes, fast: bool
) -> None:
    monkeypatch.setattr(numeric_json, "MIN_BODY", 0)
    read = numeric_json.instances if version == 1 else numeric_json.tensor
    assert (read(body, 4) is not None) == fast
    answered = decode(model, version, body)
    monkeypatch.setattr(numeric_json, "MIN_BODY", len(body) + 1)
    general = decode(model, version, body)
    # NaN compares unequal to itself: compare the lists' reprs.
    assert repr(answered) == repr(general)


# A valid request, then at most one change a client or an attacker might make to it.
_NUMBER = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**70), 2**70))
_ODD = st.one_of(
    st.sampled_from([[1], [[1]], [], [1, 2], True, False, None, "1", "[", "FP64", {}, {"a": [1]}]),
    st.text(max_size=2),
)
_ANY = st.recursive(
    st.one_of(_NUMBER, _ODD),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(["name", "probabilities", "data"]), st.text(max_size=3)),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=6,
)
_FIELDS = st.dictionaries(
    st.one_of(
        st.sampled_from(["id", "parameters", "outputs", "instances", "inputs", "a\x00b", '"']),
        st.text(max_size=3),
    ),
    st.one_of(_ANY, st.just({"probabilities": True}), st.just([{"name": "predict_proba"}])),
    max_size=2,
)
_CHANGES = ["none", "cell", "cell", "cell", "row", "name", "shape", "datatype", "data", "fields"]


@st.composite
def _documents(draw: st.DrawFn) -> tuple[int, bytes]:
    rows: list[Any] = draw(
        st.lists(st.lists(_NUMBER, min_size=4, max_size=4), min_size=1, max_size=4)
    )
    change = draw(st.sampled_from(_CHANGES))
    row = draw(st.integers(0, len(rows) - 1))
    if change == "cell":
        rows[row][draw(st.integers(0, 3))] = draw(_ODD)
    elif change == "row":
        rows[row] = draw(st.one_of(_ODD, st.lists(_NUMBER, max_size=6)))
    document: dict[str, Any]
    if draw(st.booleans()):
        version, document = 1, {"instances": rows}
    else:
        flat = [cell for line in rows for cell in (line if isinstance(line, list) else [line])]
        data = flat if draw(st.booleans()) else rows
        tensor = {"name": "x", "shape": [len(rows), 4], "datatype": "FP64", "data": data}
        if change in tensor:
            tensor[change] = draw(st.one_of(_ODD, _ANY))
        version, document = 2, {"inputs": [tensor]}
    if change == "fields":
        document.update(draw(_FIELDS))
    return version, json.dumps(document).encode()


@settings(max_examples=300, deadline=None)
@given(case=_documents())
def test_both_readings_answer_the_same_for_any_document(
    model: Model, case: tuple[int, bytes]
) -> None:
    version, body = case
    kept = numeric_json.MIN_BODY
    try:
        numeric_json.MIN_BODY = 0
        answered = decode(model, version, body)
        numeric_json.MIN_BODY = len(body) + 1
        general = decode(model, version, body)
    finally:
        numeric_json.MIN_BODY = kept
    assert repr(answered) == repr(general)


def test_large_bodies_are_read_by_simdjson_and_small_ones_are_not(model: Model) -> None:
    rows = np.random.default_rng(0).normal(size=(200, 4))
    large = v1(rows.tolist())
    assert len(large) >= numeric_json.MIN_BODY
    found = numeric_json.instances(large, 4)
    assert found is not None
    assert np.array_equal(found.matrix, rows)
    assert numeric_json.instances(v1(ROWS), 4) is None
    inference = protocol.decode_v1(model, large, proba_verb=False)
    assert np.array_equal(inference.matrix, rows)


def test_the_matrix_is_float64_and_exact(every_size: None) -> None:
    # Decimal texts that round differently as float32, and integers beyond 2**53.
    rows = [[0.1, 1e-308, 2.2250738585072011e-308, 9007199254740993]]
    found = numeric_json.instances(v1(rows), 4)
    assert found is not None
    assert found.matrix.dtype == np.float64
    assert (
        found.matrix.tolist()
        == np.asarray(orjson.loads(v1(rows))["instances"], dtype=np.float64).tolist()
    )
