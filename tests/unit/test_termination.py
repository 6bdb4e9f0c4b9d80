"""The termination message: whole JSON within the kubelet's 4096 bytes, the essentials kept."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.workloads.common.termination import (
    ELLIPSIS,
    LIMIT_BYTES,
    OVERFLOW,
    REQUIRED,
    TEXT_FLOOR_CHARS,
    encode,
)

DIGEST = "sha256:" + "ab" * 32
INGESTED = {
    "status": "Succeeded",
    "version": DIGEST,
    "uri": "s3://modelyard/ml/datasets/churn/" + DIGEST + "/",
    "format": "csv",
    "rows": 1_000_000,
    "columns": 40,
    "sizeBytes": 123_456_789,
    "trainRows": 800_000,
    "testRows": 200_000,
    "createdAt": "2026-05-09T07:35:25Z",
    "reused": False,
}
TRAINED = {
    "status": "Succeeded",
    "run": "run-7",
    "datasetVersion": DIGEST,
    "model": {"uri": "s3://modelyard/ml/models/churn/uid/run-7/model.joblib", "digest": DIGEST},
    "metrics": {"accuracy": 0.93, "f1": 0.91, "roc_auc": 0.97},
    "params": {"model__C": 1.0},
    "task": "classification",
    "trainRows": 800,
    "testRows": 200,
    "startedAt": "2026-05-09T07:35:25Z",
}


def _decoded(text: str) -> dict[str, Any]:
    assert len(text.encode()) <= LIMIT_BYTES
    message: dict[str, Any] = json.loads(text)
    return message


def _column(i: int) -> dict[str, Any]:
    return {"name": f"column_{i:04d}", "type": "float", "nulls": i, "min": 0.0, "max": i * 1.5}


def test_a_summary_that_fits_is_whole() -> None:
    statistics = [_column(i) for i in range(3)]
    assert _decoded(encode(INGESTED, statistics)) == {**INGESTED, "statistics": statistics}


def test_many_statistics_keep_as_many_leading_entries_as_fit() -> None:
    statistics = [_column(i) for i in range(1000)]
    text = encode(INGESTED, statistics)
    message = _decoded(text)
    kept = message.pop("statistics")
    assert message == {**INGESTED, "statisticsTruncated": True}
    assert kept == statistics[: len(kept)] and len(kept) > 10
    following = json.dumps(statistics[len(kept)], separators=(",", ":"))
    assert len(text) + len(",") + len(following) > LIMIT_BYTES, "one more entry would not fit"


def test_huge_params_go_and_the_run_stays_succeeded() -> None:
    params = {f"model__step_{i}__weights": [0.123456789] * 50 for i in range(40)}
    message = _decoded(encode({**TRAINED, "params": params}))
    assert message == {
        **{k: v for k, v in TRAINED.items() if k != "params"},
        "paramsTruncated": True,
    }


def test_a_long_multibyte_message_is_cut_between_characters() -> None:
    text = "Ошибка в столбце «доход»: 数据不一致 🚀 ñandú " * 500  # ~20 KB of UTF-8
    assert len(text.encode()) > 20_000
    failure = {"status": "Failed", "reason": "UnreadableData", "message": text}
    encoded = encode(failure)
    message = _decoded(encoded)
    assert (message["status"], message["reason"]) == ("Failed", "UnreadableData")
    assert message["message"].endswith(ELLIPSIS)
    assert text.startswith(message["message"][: -len(ELLIPSIS)])
    # Cut as little as the limit demands: one more character (escaped: 6 or 12 bytes) would not
    # fit.
    following = text[len(message["message"]) - len(ELLIPSIS)]
    assert len(encoded.encode()) + len(json.dumps(following)) - len('""') > LIMIT_BYTES


def test_statistics_go_before_the_message_is_shortened() -> None:
    failure = {"status": "Failed", "reason": "ValidationFailed", "message": "x" * 3000}
    message = _decoded(encode(failure, [_column(i) for i in range(100)]))
    assert message["message"] == "x" * 3000
    assert message["statisticsTruncated"] is True


def test_text_is_shortened_to_its_floor_before_params_go_then_gets_the_room_back() -> None:
    missed = {
        **TRAINED,
        "status": "Failed",
        "reason": "ObjectiveNotMet",
        "message": "accuracy = 0.5 misses the objective 0.9; " * 40,
    }
    short = _decoded(encode({**missed, "message": "accuracy = 0.5 misses the objective 0.9"}))
    assert short["message"] == "accuracy = 0.5 misses the objective 0.9", "short text is whole"
    # Params that fit beside a floor-length message, not beside the whole one: the message gives.
    params = {"model__hidden_layer_sizes": list(range(700))}
    message = _decoded(encode({**missed, "params": params}))
    assert message["params"] == params
    assert TEXT_FLOOR_CHARS < len(message["message"]) < len(missed["message"])
    # Params too large even beside the floor: they go, and the message gets its room back.
    params = {"model__hidden_layer_sizes": list(range(2000))}
    message = _decoded(encode({**missed, "params": params}))
    assert "params" not in message and message["paramsTruncated"] is True
    assert message["message"] == missed["message"]


def test_other_fields_go_largest_first_and_are_named() -> None:
    summary = {
        **INGESTED,
        "message": "m" * 5000,
        "sample": list(range(1000)),
        "histogram": list(range(300)),
    }
    message = _decoded(encode(summary))
    assert message["droppedFields"] == ["sample"]
    assert message["histogram"] == list(range(300))
    assert {k: message[k] for k in INGESTED} == INGESTED
    assert message["message"].startswith("m" * TEXT_FLOOR_CHARS)


def test_the_message_gets_the_room_before_other_text() -> None:
    message = _decoded(encode({**INGESTED, "hint": "h" * 4000, "message": "m" * 4000}))
    assert message["hint"] == "h" * TEXT_FLOOR_CHARS + ELLIPSIS
    assert len(message["message"]) > 3000


def test_text_goes_below_its_floor_when_the_required_fields_need_the_room() -> None:
    uri = "s3://modelyard/" + "k" * (LIMIT_BYTES - 300)
    message = _decoded(encode({**INGESTED, "uri": uri, "message": "m" * 1000}))
    assert message["uri"] == uri
    assert 0 < len(message["message"]) - len(ELLIPSIS) < TEXT_FLOOR_CHARS


def test_required_fields_beyond_the_limit_make_a_failure_the_operator_can_read() -> None:
    assert _decoded(encode({**INGESTED, "uri": "s3://b/" + "k" * 5000})) == OVERFLOW


# Required values as workloads write them: digests, DNS names, S3 URIs (bounded in length).
_NAME = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=63)
_URI = st.builds(
    "s3://{}/{}".format, _NAME, st.text(string.printable.strip(), min_size=1, max_size=400)
)
_DIGEST = st.text("0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(), inner, max_size=8),
    max_leaves=40,
)
_REQUIRED_VALUES = st.fixed_dictionaries(
    {"status": st.sampled_from(["Succeeded", "Failed"])},
    optional={
        "reason": st.sampled_from(["ObjectiveNotMet", "UnreadableData", "InternalError"]),
        "version": _DIGEST,
        "uri": _URI,
        "model": st.fixed_dictionaries({"uri": _URI, "digest": _DIGEST}),
        "datasetVersion": _DIGEST,
        "run": _NAME,
        "rows": st.integers(min_value=0),
        "metrics": st.dictionaries(
            st.sampled_from(["accuracy", "f1", "precision", "recall", "roc_auc", "rmse", "r2"]),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        "task": st.sampled_from(["classification", "regression"]),
    },
)
# Repetition makes large values cheaply, so that every cut is exercised.
_LONG_TEXT = st.builds(lambda text, times: text * times, st.text(min_size=1), st.integers(0, 400))
_BULKY = st.builds(lambda value, times: [value] * times, _JSON, st.integers(0, 300))
_OPTIONAL_VALUES = st.dictionaries(
    st.sampled_from(["message", "params", "format", "createdAt", "columns", "extra", "note"]),
    _LONG_TEXT | _JSON | _BULKY,
)
_STATISTICS = st.builds(
    lambda entries, times: entries * times,
    st.lists(st.dictionaries(st.text(max_size=20), _JSON, max_size=6), max_size=5),
    st.integers(0, 100),
)


@settings(max_examples=200, deadline=None)
@given(required=_REQUIRED_VALUES, optional=_OPTIONAL_VALUES, statistics=_STATISTICS)
def test_any_summary_is_whole_json_within_the_limit_with_its_required_fields(
    required: dict[str, Any], optional: dict[str, Any], statistics: list[dict[str, Any]]
) -> None:
    summary = {**optional, **required}
    message = _decoded(encode(summary, statistics))
    assert {k: message.get(k) for k in required} == required
    assert set(message) <= set(summary) | {
        "statistics",
        "statisticsTruncated",
        "paramsTruncated",
        "droppedFields",
    }
    assert message.get("statistics", []) == statistics[: len(message.get("statistics", []))]
    for key, value in message.items():
        if key in summary and key not in REQUIRED and value != summary[key]:
            assert isinstance(value, str) and value.endswith(ELLIPSIS), key
            assert summary[key].startswith(value[: -len(ELLIPSIS)]), key
