"""Declared cleaning with DuckDB over a local Parquet file: each rule, their order, counts,
the statistics against numpy, determinism, hostile column names, errors naming the field."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard import summaries
from modelyard.api.cleaning import CleaningSpec
from modelyard.reasons import Reason
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.termination import WorkloadError
from modelyard.workloads.ingest import cleaning
from modelyard.workloads.ingest.cleaning import ROW_COLUMN, Cleaned, clean, internal_name

NAN = float("nan")


def _clean(tmp_path: Path, table: pa.Table, spec: dict[str, Any]) -> tuple[Cleaned, pa.Table]:
    """Cleans `table` as ingest does: the raw file holds the columns by position and the row
    number (run._write_raw)."""
    raw = {internal_name(i): table.column(i) for i in range(table.num_columns)}
    raw[ROW_COLUMN] = pa.array(range(table.num_rows), type=pa.int64())
    path = tmp_path / "raw.parquet"
    pq.write_table(pa.table(raw), path, row_group_size=1000)
    cleaned = clean(path, table.schema, CleaningSpec.model_validate(spec), tmp_path)
    rows = pa.Table.from_batches(list(cleaned.batches), schema=table.schema)
    assert rows.num_rows == cleaned.rows
    return cleaned, rows


def _counts(cleaned: Cleaned) -> list[tuple[str, str, int]]:
    return [(c.rule, c.action, c.rows) for c in cleaned.counts]


def _column(name: str, **rules: Any) -> dict[str, Any]:
    return {"columns": [{"name": name, **rules}]}


def test_trim_removes_what_str_strip_removes_and_counts_changed_rows(tmp_path: Path) -> None:
    values = ["  a", "b\t", "\u00a0c\u2003", "d", None, "e f"]
    cleaned, rows = _clean(tmp_path, pa.table({"x": values}), _column("x", trim=True))
    assert rows.column("x").to_pylist() == [v.strip() if v else v for v in values]
    assert _counts(cleaned) == [("cleaning.columns[x].trim", "trimmed", 3)]


def test_text_rules_run_trim_then_case_then_mapping_with_folded_keys(tmp_path: Path) -> None:
    values = [" NYC", "nyc ", "New York", "Boston", "boston", None]
    spec = _column("city", trim=True, case="lower", mapping={"nyc": "new york", "boston": "boston"})
    cleaned, rows = _clean(tmp_path, pa.table({"city": values}), spec)
    assert rows.column("city").to_pylist() == [
        "new york",
        "new york",
        "new york",
        "boston",
        "boston",
        None,
    ]
    assert _counts(cleaned) == [
        ("cleaning.columns[city].trim", "trimmed", 2),
        ("cleaning.columns[city].case", "folded", 3),
        # An entry mapping a value to itself changes nothing and counts nothing.
        ("cleaning.columns[city].mapping", "mapped", 2),
    ]


def test_upper_case(tmp_path: Path) -> None:
    table = pa.table({"x": ["a", "B", "é"]})
    cleaned, rows = _clean(tmp_path, table, _column("x", case="upper"))
    assert rows.column("x").to_pylist() == ["A", "B", "É"]
    assert _counts(cleaned) == [("cleaning.columns[x].case", "folded", 2)]


def test_bounds_clip_to_the_bound_crossed_and_leave_missing_values(tmp_path: Path) -> None:
    table = pa.table({"p": [-5.0, 0.0, 5.0, 15.0, NAN, None]})
    outliers = {"method": "bounds", "min": 0, "max": 10, "action": "clip"}
    cleaned, rows = _clean(tmp_path, table, _column("p", outliers=outliers))
    values = rows.column("p").to_pylist()
    assert values[:4] == [0.0, 0.0, 5.0, 10.0]
    assert math.isnan(values[4]) and values[5] is None
    assert _counts(cleaned) == [("cleaning.columns[p].outliers", "clipped", 2)]


def test_bounds_drop_and_one_sided_bound(tmp_path: Path) -> None:
    table = pa.table({"p": pa.array([1, 50, 3, 99], type=pa.int64()), "k": ["a", "b", "c", "d"]})
    outliers = {"method": "bounds", "max": 10, "action": "drop"}
    cleaned, rows = _clean(tmp_path, table, _column("p", outliers=outliers))
    assert rows.to_pydict() == {"p": [1, 3], "k": ["a", "c"]}
    assert _counts(cleaned) == [("cleaning.columns[p].outliers", "dropped", 2)]


def test_iqr_bounds_are_numpys_quartiles(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(50, 5, 997), [500.0, -300.0, 900.0]])
    q1, q3 = np.percentile(values, [25, 75])
    low, high = q1 - 2.0 * (q3 - q1), q3 + 2.0 * (q3 - q1)
    outliers = {"method": "iqr", "factor": 2.0, "action": "clip"}
    cleaned, rows = _clean(tmp_path, pa.table({"v": values}), _column("v", outliers=outliers))
    np.testing.assert_allclose(rows.column("v").to_numpy(), np.clip(values, low, high))
    expected = int(((values < low) | (values > high)).sum())
    assert expected >= 3
    assert _counts(cleaned) == [("cleaning.columns[v].outliers", "clipped", expected)]


def test_zscore_uses_the_population_standard_deviation(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.normal(0, 1, 500), [8.0, -9.0]])
    mean, std = values.mean(), values.std()
    outside = np.abs(values - mean) > 2.5 * std
    table = pa.table({"v": values, "i": np.arange(len(values))})
    outliers = {"method": "zscore", "threshold": 2.5, "action": "drop"}
    cleaned, rows = _clean(tmp_path, table, _column("v", outliers=outliers))
    assert rows.column("i").to_pylist() == np.arange(len(values))[~outside].tolist()
    assert _counts(cleaned) == [("cleaning.columns[v].outliers", "dropped", int(outside.sum()))]


INF = float("inf")


@pytest.mark.parametrize("action", ["clip", "drop"])
def test_zscore_takes_statistics_over_finite_values_and_treats_inf_as_an_outlier(
    tmp_path: Path, action: str
) -> None:
    rng = np.random.default_rng(13)
    finite = np.concatenate([rng.normal(0, 1, 500), [8.0]])
    values = np.concatenate([finite, [INF, -INF, NAN]])
    low = finite.mean() - 3 * finite.std()
    high = finite.mean() + 3 * finite.std()
    table = pa.table({"v": values, "i": np.arange(len(values))})
    outliers = {"method": "zscore", "action": action}
    cleaned, rows = _clean(tmp_path, table, _column("v", outliers=outliers))
    outside = (values < low) | (values > high)  # NaN compares false: not an outlier
    assert outside[-4:-1].all()  # 8.0, +inf and -inf
    if action == "clip":
        expected = np.clip(values, low, high)
        np.testing.assert_allclose(rows.column("v").to_numpy(), expected, rtol=1e-12)
        assert math.isnan(rows.column("v")[-1].as_py())
    else:
        assert rows.column("i").to_pylist() == np.arange(len(values))[~outside].tolist()
    expected_action = "clipped" if action == "clip" else "dropped"
    assert _counts(cleaned) == [
        ("cleaning.columns[v].outliers", expected_action, int(outside.sum()))
    ]


def test_iqr_quartiles_are_those_of_the_finite_values(tmp_path: Path) -> None:
    # Two thirds infinite: over every value both quartiles would be inf, their spread NaN.
    values = [1.0, 2.0, 3.0] + [INF] * 6
    q1, q3 = np.percentile([1.0, 2.0, 3.0], [25, 75])
    high = q3 + 1.5 * (q3 - q1)
    cleaned, rows = _clean(
        tmp_path,
        pa.table({"v": values}),
        _column("v", outliers={"method": "iqr", "action": "clip"}),
    )
    assert rows.column("v").to_pylist() == [1.0, 2.0, 3.0] + [high] * 6
    assert _counts(cleaned) == [("cleaning.columns[v].outliers", "clipped", 6)]


@pytest.mark.parametrize(
    "outliers",
    [
        # The sum of the values overflows: the mean is inf, the deviation NaN.
        {"method": "zscore", "action": "clip"},
        {"method": "bounds", "min": -INF, "max": INF, "action": "drop"},
    ],
)
def test_a_bound_that_is_not_finite_is_no_bound(tmp_path: Path, outliers: dict[str, Any]) -> None:
    values = [1e308, 1e308, -5.0, 1e308]
    cleaned, rows = _clean(tmp_path, pa.table({"v": values}), _column("v", outliers=outliers))
    assert rows.column("v").to_pylist() == values
    assert cleaned.counts[0].rows == 0


def test_zscore_clip_gives_the_same_values_on_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several DuckDB row groups (~123k rows each) summed by two threads; values of very
    # different magnitudes, so the order of the partial sums shows in the last bits.
    monkeypatch.setattr(cleaning, "_cpu_count", lambda: 2)
    rng = np.random.default_rng(17)
    n = 300_000
    values = rng.normal(0, 1, n) * 10 ** rng.uniform(-3, 3, n)
    table = pa.table({"v": values})
    spec = _column("v", outliers={"method": "zscore", "threshold": 2.0, "action": "clip"})
    runs = set()
    for run in range(6):
        work = tmp_path / str(run)
        work.mkdir()
        cleaned, rows = _clean(work, table, spec)
        assert cleaned.counts[0].rows > 0
        runs.add(rows.column("v").to_numpy().tobytes())
    assert len(runs) == 1


def test_clipped_integers_stay_integers_inside_the_bounds(tmp_path: Path) -> None:
    values = [1, 2, 3, 4, 100]
    q1, q3 = np.percentile(values, [25, 75])  # 2, 4: upper bound 7.0 with factor 1.5
    table = pa.table({"n": pa.array(values, type=pa.int64())})
    outliers = {"method": "iqr", "action": "clip", "factor": 1.25}  # upper bound 6.5
    _, rows = _clean(tmp_path, table, _column("n", outliers=outliers))
    assert rows.schema.field("n").type == pa.int64()
    assert rows.column("n").to_pylist() == [1, 2, 3, 4, math.floor(q3 + 1.25 * (q3 - q1))]


def test_missing_drop_counts_null_and_nan(tmp_path: Path) -> None:
    table = pa.table({"v": [1.0, NAN, None, 4.0], "k": ["a", "b", "c", "d"]})
    cleaned, rows = _clean(tmp_path, table, _column("v", missing={"strategy": "drop"}))
    assert rows.column("k").to_pylist() == ["a", "d"]
    assert _counts(cleaned) == [("cleaning.columns[v].missing", "dropped", 2)]


def test_missing_constant_is_converted_to_the_column_type(tmp_path: Path) -> None:
    table = pa.table(
        {
            "i": pa.array([1, None], type=pa.int64()),
            "f": [NAN, 2.0],
            "b": pa.array([None, True]),
            "s": [None, "x"],
        }
    )
    spec = {
        "columns": [
            {"name": "i", "missing": {"strategy": "constant", "value": "-1"}},
            {"name": "f", "missing": {"strategy": "constant", "value": "0.5"}},
            {"name": "b", "missing": {"strategy": "constant", "value": "false"}},
            {"name": "s", "missing": {"strategy": "constant", "value": "unknown"}},
        ]
    }
    cleaned, rows = _clean(tmp_path, table, spec)
    assert rows.to_pydict() == {
        "i": [1, -1],
        "f": [0.5, 2.0],
        "b": [False, True],
        "s": ["unknown", "x"],
    }
    assert rows.schema == table.schema
    assert [c.rows for c in cleaned.counts] == [1, 1, 1, 1]


def test_integer_constants_at_the_ends_of_the_int64_range(tmp_path: Path) -> None:
    table = pa.table({"a": pa.array([None, 1], type=pa.int64()), "b": pa.array([None, 1])})
    spec = {
        "columns": [
            {"name": "a", "missing": {"strategy": "constant", "value": str(2**63 - 1)}},
            {"name": "b", "missing": {"strategy": "constant", "value": str(-(2**63))}},
        ]
    }
    _, rows = _clean(tmp_path, table, spec)
    assert rows.to_pydict() == {"a": [2**63 - 1, 1], "b": [-(2**63), 1]}


def test_median_matches_numpy_and_ignores_missing_values(tmp_path: Path) -> None:
    values = [3.0, NAN, 1.0, None, 10.0, 2.0]
    present = [v for v in values if v is not None and not math.isnan(v)]
    table = pa.table({"v": values})
    cleaned, rows = _clean(tmp_path, table, _column("v", missing={"strategy": "median"}))
    assert rows.column("v").to_pylist() == [3.0, 2.5, 1.0, 2.5, 10.0, 2.0]
    assert float(np.median(present)) == 2.5
    assert _counts(cleaned) == [("cleaning.columns[v].missing", "filled", 2)]


def test_integer_median_is_the_lower_middle_value(tmp_path: Path) -> None:
    table = pa.table({"n": pa.array([4, None, 1, 3, 2], type=pa.int64())})
    _, rows = _clean(tmp_path, table, _column("n", missing={"strategy": "median"}))
    assert rows.column("n").to_pylist() == [4, 2, 1, 3, 2]


def test_mode_breaks_ties_by_first_occurrence(tmp_path: Path) -> None:
    table = pa.table({"s": [None, "b", "a", "a", "b", None, "c"]})
    cleaned, rows = _clean(tmp_path, table, _column("s", missing={"strategy": "mode"}))
    assert rows.column("s").to_pylist() == ["b", "b", "a", "a", "b", "b", "c"]
    assert _counts(cleaned) == [("cleaning.columns[s].missing", "filled", 2)]


def test_statistics_see_the_data_as_earlier_rules_left_it(tmp_path: Path) -> None:
    # Mapping runs before missing: "B" becomes the most frequent value only once mapped.
    # Outliers run before missing: the median is taken after 1000 was dropped.
    table = pa.table(
        {
            "s": ["a", "a", "b", "B ", "B", None],
            "v": [1.0, 2.0, 3.0, 1000.0, None, 4.0],
        }
    )
    spec = {
        "columns": [
            {"name": "s", "trim": True, "mapping": {"B": "b"}, "missing": {"strategy": "mode"}},
            {
                "name": "v",
                "outliers": {"method": "bounds", "max": 100, "action": "drop"},
                "missing": {"strategy": "median"},
            },
        ]
    }
    cleaned, rows = _clean(tmp_path, table, spec)
    assert rows.to_pydict() == {"s": ["a", "a", "b", "b", "b"], "v": [1.0, 2.0, 3.0, 2.5, 4.0]}
    assert _counts(cleaned) == [
        ("cleaning.columns[s].trim", "trimmed", 1),
        ("cleaning.columns[s].mapping", "mapped", 2),
        ("cleaning.columns[s].missing", "filled", 1),
        ("cleaning.columns[v].outliers", "dropped", 1),
        ("cleaning.columns[v].missing", "filled", 1),
    ]


def test_duplicates_keep_the_first_occurrence_in_source_order(tmp_path: Path) -> None:
    table = pa.table(
        {
            "a": [3, 1, 3, 2, 1, None, None],
            "b": ["x", "y", "x", "z", "y", None, None],
        }
    )
    cleaned, rows = _clean(tmp_path, table, {"dropDuplicates": True})
    assert rows.to_pydict() == {"a": [3, 1, 2, None], "b": ["x", "y", "z", None]}
    assert cleaned.source_rows == 7
    assert _counts(cleaned) == [("cleaning.dropDuplicates", "dropped", 3)]


def test_duplicates_run_last_after_the_column_rules(tmp_path: Path) -> None:
    table = pa.table({"a": [" x", "x", "x "]})
    cleaned, rows = _clean(tmp_path, table, {"dropDuplicates": True, **_column("a", trim=True)})
    assert rows.column("a").to_pylist() == ["x"]
    assert _counts(cleaned)[-1] == ("cleaning.dropDuplicates", "dropped", 2)


def test_rules_that_change_nothing_are_listed_with_zero_rows(tmp_path: Path) -> None:
    table = pa.table({"a": ["x", "y"], "v": [1.0, 2.0]})
    spec = {
        "dropDuplicates": True,
        "missing": {"strategy": "drop"},
        "columns": [
            {"name": "a", "trim": True, "case": "lower", "mapping": {"q": "r"}},
            {"name": "v", "outliers": {"method": "zscore", "action": "clip"}},
        ],
    }
    cleaned, rows = _clean(tmp_path, table, spec)
    assert rows.equals(table)
    assert _counts(cleaned) == [
        ("cleaning.columns[a].trim", "trimmed", 0),
        ("cleaning.columns[a].case", "folded", 0),
        ("cleaning.columns[a].mapping", "mapped", 0),
        ("cleaning.columns[v].outliers", "clipped", 0),
        ("cleaning.missing", "dropped", 0),
        ("cleaning.dropDuplicates", "dropped", 0),
    ]


def test_dataset_wide_missing_covers_columns_without_their_own_rule(tmp_path: Path) -> None:
    table = pa.table(
        {
            "a": [1.0, None, 3.0, NAN],
            "b": pa.array([None, 2, 2, 10], type=pa.int64()),
            "s": ["x", None, "y", "z"],
        }
    )
    spec = {
        "missing": {"strategy": "median"},
        "columns": [{"name": "s", "missing": {"strategy": "constant", "value": "?"}}],
    }
    cleaned, rows = _clean(tmp_path, table, spec)
    assert rows.to_pydict() == {
        "a": [1.0, 2.0, 3.0, 2.0],
        "b": [2, 2, 2, 10],
        "s": ["x", "?", "y", "z"],
    }
    # Rows with an empty value in any of the columns it covers (a, b): rows 1, 2 and 4.
    assert _counts(cleaned) == [
        ("cleaning.columns[s].missing", "filled", 1),
        ("cleaning.missing", "filled", 3),
    ]


def test_dataset_wide_drop(tmp_path: Path) -> None:
    table = pa.table({"a": [1.0, None, 3.0], "s": ["x", "y", None]})
    cleaned, rows = _clean(tmp_path, table, {"missing": {"strategy": "drop"}})
    assert rows.to_pydict() == {"a": [1.0], "s": ["x"]}
    assert _counts(cleaned) == [("cleaning.missing", "dropped", 2)]


def test_same_rules_same_rows_in_source_order(tmp_path: Path) -> None:
    # Enough rows for several row groups and DuckDB threads, duplicates scattered through them.
    rng = np.random.default_rng(3)
    n = 300_000
    table = pa.table(
        {
            "k": rng.integers(0, 50_000, n),
            "s": pa.array(rng.choice([" a", "b ", "C", None], n).tolist()),
            "i": np.arange(n),
        }
    )
    spec = {"dropDuplicates": True, "columns": [{"name": "s", "trim": True, "case": "lower"}]}
    first_dir, second_dir = tmp_path / "1", tmp_path / "2"
    first_dir.mkdir()
    second_dir.mkdir()
    _, first = _clean(first_dir, table.drop(["i"]), spec)
    _, second = _clean(second_dir, table.drop(["i"]), spec)
    assert first.equals(second)
    # The expected rows: first occurrences, in source order.
    keys = list(zip(first.column("k").to_pylist(), first.column("s").to_pylist(), strict=True))
    assert len(keys) == len(set(keys))
    _, with_index = _clean(second_dir, table, {"columns": [{"name": "s", "trim": True}]})
    assert with_index.column("i").to_pylist() == list(range(n))


def test_hostile_column_names_are_data_not_sql(tmp_path: Path) -> None:
    nasty = 'a"; DROP TABLE t; --'
    table = pa.table({nasty: ["  x ", "y"], "A": [1.0, None], "a": [None, 5.0]})
    spec = {
        "columns": [
            {"name": nasty, "trim": True, "mapping": {"x'; DELETE FROM t; --": "z"}},
            # DuckDB matches identifiers case-insensitively; these stay two columns.
            {"name": "A", "missing": {"strategy": "constant", "value": "7"}},
            {"name": "a", "missing": {"strategy": "constant", "value": "8"}},
        ]
    }
    cleaned, rows = _clean(tmp_path, table, spec)
    assert rows.to_pydict() == {nasty: ["x", "y"], "A": [1.0, 7.0], "a": [8.0, 5.0]}
    assert cleaned.counts[0].rule == f"cleaning.columns[{nasty}].trim"


@pytest.mark.parametrize(
    ("table", "spec", "reason", "field"),
    [
        (
            pa.table({"a": [1]}),
            _column("price", trim=True),
            Reason.SchemaMismatch,
            "spec.cleaning.columns[price]: column 'price' is not in the data",
        ),
        (
            pa.table({"a": [1]}),
            _column("a", trim=True),
            Reason.CleaningNotApplicable,
            "spec.cleaning.columns[a].trim: applies to text, not integer columns",
        ),
        (
            pa.table({"a": [1.0]}),
            _column("a", mapping={"1": "2"}),
            Reason.CleaningNotApplicable,
            "spec.cleaning.columns[a].mapping: applies to text",
        ),
        (
            pa.table({"a": ["x"]}),
            _column("a", outliers={"method": "iqr", "action": "clip"}),
            Reason.CleaningNotApplicable,
            "spec.cleaning.columns[a].outliers: applies to numbers, not string columns",
        ),
        (
            pa.table({"a": ["x", None]}),
            _column("a", missing={"strategy": "median"}),
            Reason.CleaningNotApplicable,
            "spec.cleaning.columns[a].missing.strategy: median applies to numbers",
        ),
        (
            pa.table({"a": [1.0, None]}),
            _column("a", missing={"strategy": "constant", "value": "n/a"}),
            Reason.CleaningNotApplicable,
            "spec.cleaning.columns[a].missing.value: 'n/a' is not a float value",
        ),
        (
            pa.table({"a": pa.array([None, None], type=pa.float64())}),
            _column("a", missing={"strategy": "median"}),
            Reason.CleaningNotApplicable,
            "spec.cleaning.columns[a].missing.strategy: median needs values",
        ),
        (
            pa.table({"a": [1.0], "s": ["x"]}),
            {"missing": {"strategy": "constant", "value": "none"}},
            Reason.CleaningNotApplicable,
            "spec.cleaning.missing.value: 'none' is not a float value",
        ),
        (
            pa.table({"a": pa.array([1, None], type=pa.int64())}),
            _column("a", missing={"strategy": "constant", "value": "99999999999999999999"}),
            Reason.CleaningNotApplicable,
            "spec.cleaning.columns[a].missing.value: '99999999999999999999' is outside the "
            "64-bit integer range",
        ),
        (
            pa.table({"a": pa.array([1, None], type=pa.int64()), "s": ["x", None]}),
            {"missing": {"strategy": "constant", "value": "-9223372036854775809"}},
            Reason.CleaningNotApplicable,
            "spec.cleaning.missing.value: '-9223372036854775809' is outside",
        ),
        (
            pa.table({"a": [1.0, None]}),
            _column("a", missing={"strategy": "constant", "value": "nan"}),
            Reason.CleaningNotApplicable,
            "spec.cleaning.columns[a].missing.value: NaN is itself a missing value",
        ),
        (
            pa.table({"a": pa.array([1, 2, 3], type=pa.int64())}),
            _column("a", outliers={"method": "bounds", "min": 1.5, "max": 1.7, "action": "clip"}),
            Reason.CleaningNotApplicable,
            "spec.cleaning.columns[a].outliers: no integer lies within the bounds [1.5, 1.7]",
        ),
    ],
)
def test_rules_that_do_not_fit_name_the_field(
    tmp_path: Path, table: pa.Table, spec: dict[str, Any], reason: Reason, field: str
) -> None:
    with pytest.raises(WorkloadError) as raised:
        _clean(tmp_path, table, spec)
    assert raised.value.reason == reason
    assert str(raised.value.message).startswith(field)


SUMMARY = {
    "status": "Succeeded",
    "version": "sha256:" + "a" * 64,
    "uri": "s3://bucket/ns/datasets/d/" + "a" * 64,
    "rows": 4,
}


def test_the_operator_reads_counts_from_the_summary() -> None:
    counts = [{"rule": "cleaning.dropDuplicates", "action": "dropped", "rows": 3}]
    result = summaries.IngestResult.model_validate({**SUMMARY, "cleaning": counts})
    assert [c.to_dict() for c in result.cleaning or []] == counts
    assert summaries.IngestResult.model_validate(SUMMARY).cleaning is None


@pytest.mark.parametrize(
    "cleaning",
    [
        [{"rule": "cleaning.dropDuplicates", "action": "dropped", "rows": -1}],
        [{"rule": "cleaning.dropDuplicates", "action": "dropped"}],
        [{"rule": "x", "action": "dropped", "rows": 1, "extra": True}],
        [{"rule": "x" * 513, "action": "dropped", "rows": 1}],
        [{"rule": "x", "action": "dropped", "rows": 1}] * (summaries.CLEANING_COUNTS_MAX + 1),
        {"rule": "x", "action": "dropped", "rows": 1},
    ],
)
def test_malformed_counts_are_rejected(cleaning: Any) -> None:
    with pytest.raises(summaries.Rejected, match="cleaning"):
        summaries.expect_ingest({**SUMMARY, "cleaning": cleaning}, S3Uri.parse(SUMMARY["uri"]))


def test_statistics_and_duplicates_beyond_the_memory_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # About 80 MB of rows against a 64 MB limit: the sorts and the grouping spill to disk.
    monkeypatch.setattr(cleaning, "_memory_limit_bytes", lambda: 64 << 20)
    rng = np.random.default_rng(5)
    n = 1_500_000
    keys = rng.integers(0, 500_000, n)
    # A value per key, so rows are duplicates exactly when their keys are; a few keys' values
    # are far out.
    values = np.where(keys % 997 == 0, 1e6, (keys % 1000).astype(float))
    table = pa.table({"k": pa.array([f"key-{k:08d}-padding" for k in keys]), "v": values})
    spec = {
        "dropDuplicates": True,
        "columns": [{"name": "v", "outliers": {"method": "iqr", "action": "clip"}}],
    }
    cleaned, rows = _clean(tmp_path, table, spec)
    q1, q3 = np.percentile(values, [25, 75])
    outside = values > q3 + 1.5 * (q3 - q1)
    assert outside.sum() > 0
    assert cleaned.counts[0].rows == int(outside.sum())
    _, first = np.unique(keys, return_index=True)
    expected = [f"key-{k:08d}-padding" for k in keys[np.sort(first)]]
    assert rows.column("k").to_pylist() == expected
