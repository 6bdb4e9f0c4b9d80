"""Declared cleaning (spec.cleaning), applied with DuckDB to a local Parquet file of the
normalized source rows.

DuckDB works out of core (memory_limit, spill to temp_directory), so the source may be larger
than memory; medians and quartiles are exact, read off a sort that spills too. The rows keep
their source order: the raw file carries a row number (ROW_COLUMN), every rule updates or
deletes in place, and the cleaned rows are read back ordered by it; of equal rows the first
stays. The same source and rules therefore always give the same rows, and the same version
digest.

Order (api/cleaning.py): for each entry of spec.cleaning.columns, in the order written, trim,
case, mapping, outliers, missing; then the dataset-wide missing rule for every column without
its own; then duplicates. A statistic is computed when its rule runs, on the data as the
earlier rules left it. Each rule reports the rows it changed or dropped, zero included.

Inside DuckDB the columns are named by position (c0, c1, …): user column names never enter SQL
text, and names DuckDB would not tell apart (it matches identifiers case-insensitively) stay
distinct. Constants are bound as parameters.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from modelyard.api.cleaning import (
    CleaningCount,
    CleaningSpec,
    ColumnCleaning,
    MissingStrategy,
    MissingValues,
    OutlierAction,
    OutlierMethod,
    Outliers,
)
from modelyard.reasons import Reason
from modelyard.workloads.common.tabular import LogicalType, logical_type
from modelyard.workloads.common.termination import EXIT_INVALID_DATA, WorkloadError

# The raw file's row-number column; internal, never a user name (those are renamed to c0, c1…).
ROW_COLUMN = "rn"
BATCH_ROWS = 64 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Of the pod's memory, what DuckDB may hold before it spills; the rest is for the Arrow batches
# the ingest holds meanwhile (hashing, statistics, the Parquet writer's row groups).
MEMORY_SHARE = 0.5
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
# Exactly what Python's str.strip() removes, so `trim` means what a user expects of it; as an
# RE2 class, since DuckDB's trim() with a character set is several times slower.
WHITESPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
_SPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]"
SPACE_AT_ENDS = f"^{_SPACE}+|{_SPACE}+$"


def internal_name(index: int) -> str:
    return f"c{index}"


def quote(identifier: str) -> str:
    """An identifier as DuckDB reads it: in double quotes, inner quotes doubled."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass
class Cleaned:
    """What cleaning left: the rows (in source order, streamed) and what each rule did."""

    source_rows: int
    rows: int
    counts: list[CleaningCount]
    batches: Iterator[pa.RecordBatch]


@dataclass
class _Table:
    """The table being cleaned: user names, their logical types, and the DuckDB connection."""

    con: duckdb.DuckDBPyConnection
    names: list[str]
    types: list[LogicalType]
    counts: list[CleaningCount] = field(default_factory=list)

    def column(self, name: str, where: str) -> tuple[str, LogicalType]:
        if name not in self.names:
            raise WorkloadError(
                Reason.SchemaMismatch,
                f"{where}: column {name!r} is not in the data (columns: {self.names})",
                EXIT_INVALID_DATA,
            )
        index = self.names.index(name)
        return quote(internal_name(index)), self.types[index]

    def run(self, rule: str, action: str, sql: str, parameters: list[Any] | None = None) -> None:
        """An UPDATE or DELETE; DuckDB answers with the rows it touched."""
        rows = self.one(sql, parameters)[0]
        self.counts.append(CleaningCount(rule=rule, action=action, rows=int(rows)))

    def one(self, sql: str, parameters: list[Any] | None = None) -> tuple[Any, ...]:
        """The first row of a statement's result (read to the end, as DuckDB asks)."""
        rows = self.con.execute(sql, parameters or []).fetchall()
        return rows[0] if rows else (None,)

    def scalar(self, sql: str, parameters: list[Any] | None = None) -> Any:
        return self.one(sql, parameters)[0]

    def one_in_order(self, sql: str) -> tuple[Any, ...]:
        """`one`, on a single thread: DuckDB's parallel float sums add the threads' partial
        sums in whatever order they finish, which changes the last bits from run to run."""
        threads = int(self.scalar("SELECT current_setting('threads')"))
        self.con.execute("SET threads = 1")
        try:
            return self.one(sql)
        finally:
            self.con.execute(f"SET threads = {threads}")


def clean(raw_path: Path, schema: pa.Schema, spec: CleaningSpec, work: Path) -> Cleaned:
    """Apply `spec` to the raw file at `raw_path` (columns c0…, plus ROW_COLUMN), whose user
    schema is `schema`. `work` is a directory for DuckDB's spill files. The target is a column
    like any other here; ingest checks afterwards that every remaining row has a label."""
    spill = work / "duckdb-spill"
    spill.mkdir(exist_ok=True)
    con = duckdb.connect(
        config={
            "memory_limit": f"{_memory_limit_bytes() // (1 << 20)}MB",
            "temp_directory": str(spill),
            "threads": _cpu_count(),
            # Cleaning reads one local file: no extensions to install, no other files to open.
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    try:
        cleaned = _apply(con, raw_path, schema, spec)
    except BaseException:
        con.close()
        raise
    return cleaned


def _apply(
    con: duckdb.DuckDBPyConnection, raw_path: Path, schema: pa.Schema, spec: CleaningSpec
) -> Cleaned:
    con.execute("CREATE TABLE t AS SELECT * FROM read_parquet(?)", [str(raw_path)])
    raw_path.unlink()  # DuckDB holds the rows now; the pod's /tmp is size-bounded
    con.execute("SET enable_external_access = false")
    table = _Table(con, list(schema.names), [logical_type(f.type) for f in schema])
    source_rows = int(table.scalar("SELECT count(*) FROM t"))
    own_missing: set[str] = set()
    for entry in spec.columns or []:
        _column_rules(table, entry)
        if entry.missing is not None:
            own_missing.add(entry.name)
    if spec.missing is not None:
        _default_missing(table, spec.missing, [n for n in table.names if n not in own_missing])
    if spec.drop_duplicates:
        columns = ", ".join(quote(internal_name(i)) for i in range(len(table.names)))
        # Of each group of equal rows (nulls equal to nulls), the one first in the source stays.
        table.run(
            "cleaning.dropDuplicates",
            "dropped",
            f"DELETE FROM t WHERE {ROW_COLUMN} NOT IN "
            f"(SELECT min({ROW_COLUMN}) FROM t GROUP BY {columns})",
        )
    rows = int(table.scalar("SELECT count(*) FROM t"))
    if rows == 0:
        dropped = ", ".join(f"{c.rule}: {c.action} {c.rows}" for c in table.counts if c.rows)
        raise WorkloadError(
            Reason.EmptyData,
            f"spec.cleaning: the rules dropped all {source_rows} rows ({dropped})",
            EXIT_INVALID_DATA,
        )
    return Cleaned(source_rows, rows, table.counts, _read_back(con, schema))


def _column_rules(table: _Table, entry: ColumnCleaning) -> None:
    where = f"spec.cleaning.columns[{entry.name}]"
    rule = f"cleaning.columns[{entry.name}]"
    column, kind = table.column(entry.name, where)
    text_rules = [n for n, on in (("trim", entry.trim), ("case", entry.case)) if on]
    if entry.mapping is not None:
        text_rules.append("mapping")
    if text_rules and kind != "string":
        raise _not_applicable(f"{where}.{text_rules[0]}", f"applies to text, not {kind} columns")
    if entry.trim:
        table.run(
            f"{rule}.trim",
            "trimmed",
            f"UPDATE t SET {column} = regexp_replace({column}, ?, '', 'g') "
            f"WHERE regexp_matches({column}, ?)",
            [SPACE_AT_ENDS, SPACE_AT_ENDS],
        )
    if entry.case is not None:
        fold = "lower" if entry.case == "lower" else "upper"
        table.run(
            f"{rule}.case",
            "folded",
            f"UPDATE t SET {column} = {fold}({column}) WHERE {column} <> {fold}({column})",
        )
    if entry.mapping is not None:
        changes = {k: v for k, v in entry.mapping.items() if k != v}
        table.con.execute("CREATE OR REPLACE TEMP TABLE mapping (k VARCHAR, v VARCHAR)")
        if changes:
            table.con.executemany("INSERT INTO mapping VALUES (?, ?)", list(changes.items()))
        table.run(
            f"{rule}.mapping",
            "mapped",
            f"UPDATE t SET {column} = mapping.v FROM mapping WHERE t.{column} = mapping.k",
        )
    if entry.outliers is not None:
        if kind not in ("integer", "float"):
            raise _not_applicable(f"{where}.outliers", f"applies to numbers, not {kind} columns")
        _outliers(table, entry.outliers, column, kind, f"{rule}.outliers", f"{where}.outliers")
    if entry.missing is not None:
        _missing(table, entry.missing, column, kind, f"{rule}.missing", f"{where}.missing")


def _is_missing(column: str, kind: LogicalType) -> str:
    return f"({column} IS NULL OR isnan({column}))" if kind == "float" else f"{column} IS NULL"


def _present(column: str, kind: LogicalType) -> str:
    return f"NOT isnan({column})" if kind == "float" else "true"


def _finite(column: str, kind: LogicalType) -> str:
    """The values outlier statistics are taken over: one ±inf would make the mean, the
    deviation or a quartile infinite or NaN, and with it every bound."""
    return f"isfinite({column})" if kind == "float" else f"{column} IS NOT NULL"


def _outliers(
    table: _Table, outliers: Outliers, column: str, kind: LogicalType, rule: str, where: str
) -> None:
    low, high = _bounds(table, outliers, column, kind)
    # NaN compares above every number in DuckDB; missing values are the missing rule's business.
    # ±inf is present: beyond a finite bound, it is an outlier like any other value.
    present = _present(column, kind)
    conditions, parameters = [], []
    if low is not None:
        conditions.append(f"{column} < ?")
        parameters.append(low)
    if high is not None:
        conditions.append(f"{column} > ?")
        parameters.append(high)
    outside = f"({' OR '.join(conditions)}) AND {present}" if conditions else "false"
    if outliers.action == OutlierAction.DROP:
        table.run(rule, "dropped", f"DELETE FROM t WHERE {outside}", parameters)
        return
    if kind == "integer":
        # A clipped integer stays an integer inside the bounds.
        inner_low = None if low is None else math.ceil(low)
        inner_high = None if high is None else math.floor(high)
        if inner_low is not None and inner_high is not None and inner_low > inner_high:
            raise _not_applicable(
                where,
                f"no integer lies within the bounds [{low}, {high}] "
                "(computed from the data for iqr and zscore), so clip has no value to set",
            )
        low, high = inner_low, inner_high
    clipped = column
    clip_parameters: list[Any] = []
    if low is not None:
        clipped = f"greatest({clipped}, ?)"
        clip_parameters.append(low)
    if high is not None:
        clipped = f"least({clipped}, ?)"
        clip_parameters.append(high)
    table.run(
        rule,
        "clipped",
        f"UPDATE t SET {column} = {clipped} WHERE {outside}",
        clip_parameters + parameters,
    )


def _bounds(
    table: _Table, outliers: Outliers, column: str, kind: LogicalType
) -> tuple[float | None, float | None]:
    """The bounds of the rule; a bound that is not finite (left out, written as ±inf, or
    overflowing) is no bound: NaN would compare above every value."""
    low, high = _statistical_bounds(table, outliers, column, kind)
    return (
        None if low is None or not math.isfinite(low) else low,
        None if high is None or not math.isfinite(high) else high,
    )


def _statistical_bounds(
    table: _Table, outliers: Outliers, column: str, kind: LogicalType
) -> tuple[float | None, float | None]:
    if outliers.method == OutlierMethod.BOUNDS:
        return outliers.min, outliers.max
    if outliers.method == OutlierMethod.IQR:
        quartiles = _quantiles(table, column, kind, [0.25, 0.75], finite=True)
        if quartiles is None:
            return None, None
        q1, q3 = quartiles
        spread = outliers.factor * (q3 - q1)
        return q1 - spread, q3 + spread
    # Population standard deviation (numpy's std): a description of this data, not an estimate.
    # In order, so that the same rows give the same bounds, clipped values and version digest.
    mean, std = table.one_in_order(
        f"SELECT avg({column}), stddev_pop({column}) FROM t WHERE {_finite(column, kind)}"
    )
    if mean is None:
        return None, None
    return mean - outliers.threshold * std, mean + outliers.threshold * std


def _quantiles(
    table: _Table,
    column: str,
    kind: LogicalType,
    fractions: list[float],
    lower: bool = False,
    finite: bool = False,
) -> list[Any] | None:
    """Exact quantiles of the column's present values (with `finite`, of its finite ones),
    interpolated linearly between the two nearest ranks (numpy's default); with `lower`, the
    lower of the two (an integer column keeps integers). None when there is no such value.

    Found by ranking the sorted values: DuckDB's sort spills to disk, while its quantile
    aggregates hold the whole column in memory."""
    present = (
        _finite(column, kind) if finite else f"{column} IS NOT NULL AND {_present(column, kind)}"
    )
    count = int(table.scalar(f"SELECT count(*) FROM t WHERE {present}"))
    if count == 0:
        return None
    positions = [(count - 1) * fraction for fraction in fractions]
    ranks = sorted({r for p in positions for r in (math.floor(p), math.ceil(p))})
    ranked = dict(
        table.con.execute(
            f"SELECT k, {column} FROM (SELECT {column}, row_number() OVER (ORDER BY {column}) - 1 "
            f"AS k FROM t WHERE {present}) WHERE list_contains(?, k)",
            [ranks],
        ).fetchall()
    )
    if lower:
        return [ranked[math.floor(p)] for p in positions]
    return [
        ranked[math.floor(p)] + (p - math.floor(p)) * (ranked[math.ceil(p)] - ranked[math.floor(p)])
        for p in positions
    ]


def _missing(
    table: _Table, missing: MissingValues, column: str, kind: LogicalType, rule: str, where: str
) -> None:
    empty = _is_missing(column, kind)
    if missing.strategy == MissingStrategy.DROP:
        table.run(rule, "dropped", f"DELETE FROM t WHERE {empty}")
        return
    fill = _fill_value(table, missing, column, kind, where)
    if fill is None:  # nothing to compute a statistic from: every value is missing
        raise _not_applicable(
            f"{where}.strategy",
            f"{missing.strategy} needs values, but every value of the column is empty",
        )
    table.run(rule, "filled", f"UPDATE t SET {column} = ? WHERE {empty}", [fill])


def _fill_value(
    table: _Table, missing: MissingValues, column: str, kind: LogicalType, where: str
) -> Any:
    present = f"{column} IS NOT NULL AND {_present(column, kind)}"
    if missing.strategy == MissingStrategy.CONSTANT:
        return _constant(str(missing.value), kind, f"{where}.value")
    if missing.strategy == MissingStrategy.MEDIAN:
        if kind not in ("integer", "float"):
            raise _not_applicable(
                f"{where}.strategy", f"median applies to numbers, not {kind} columns"
            )
        median = _quantiles(table, column, kind, [0.5], lower=kind == "integer")
        return None if median is None else median[0]
    # The most frequent value; of equally frequent ones, the one seen first in the source.
    return table.scalar(
        f"SELECT {column} FROM t WHERE {present} GROUP BY {column} "
        f"ORDER BY count(*) DESC, min({ROW_COLUMN}) LIMIT 1"
    )


def _default_missing(table: _Table, missing: MissingValues, names: list[str]) -> None:
    """spec.cleaning.missing over every column without a missing rule of its own: one count,
    the rows that had an empty value in any of them."""
    rule, where = "cleaning.missing", "spec.cleaning.missing"
    columns = [(table.column(name, where), name) for name in names]
    if missing.strategy == MissingStrategy.MEDIAN:
        # The median is a number's: text and boolean columns are left to other rules.
        columns = [c for c in columns if c[0][1] in ("integer", "float")]
    if not columns:
        table.counts.append(CleaningCount(rule=rule, action=_action(missing.strategy), rows=0))
        return
    any_empty = " OR ".join(_is_missing(column, kind) for (column, kind), _ in columns)
    if missing.strategy == MissingStrategy.DROP:
        table.run(rule, "dropped", f"DELETE FROM t WHERE {any_empty}")
        return
    if missing.strategy == MissingStrategy.CONSTANT:
        # Checked against every column, not only those with gaps in this version.
        for (_, kind), _ in columns:
            _constant(str(missing.value), kind, f"{where}.value")
    affected = int(table.scalar(f"SELECT count(*) FROM t WHERE {any_empty}"))
    for (column, kind), name in columns:
        if not int(table.scalar(f"SELECT count(*) FROM t WHERE {_is_missing(column, kind)}")):
            continue
        fill = _fill_value(table, missing, column, kind, where)
        if fill is None:
            raise _not_applicable(
                f"{where}.strategy",
                f"{missing.strategy} needs values, but every value of column {name!r} is empty",
            )
        table.con.execute(f"UPDATE t SET {column} = ? WHERE {_is_missing(column, kind)}", [fill])
    table.counts.append(CleaningCount(rule=rule, action="filled", rows=affected))


def _action(strategy: str) -> str:
    return "dropped" if strategy == MissingStrategy.DROP else "filled"


def _constant(text: str, kind: LogicalType, where: str) -> Any:
    """The constant as a value of the column's type."""
    try:
        if kind == "integer":
            value = int(text)
            # Normalization makes every integer column int64 (tabular.ARROW_TYPES).
            if not INT64_MIN <= value <= INT64_MAX:
                raise _not_applicable(where, f"{text!r} is outside the 64-bit integer range")
            return value
        if kind == "float":
            number = float(text)
            if math.isnan(number):
                raise _not_applicable(where, "NaN is itself a missing value")
            return number
        if kind == "boolean":
            return {"true": True, "false": False}[text.strip().lower()]
    except (ValueError, KeyError):
        raise _not_applicable(where, f"{text!r} is not a {kind} value") from None
    return text


def _not_applicable(where: str, problem: str) -> WorkloadError:
    return WorkloadError(Reason.CleaningNotApplicable, f"{where}: {problem}", EXIT_INVALID_DATA)


def _read_back(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The cleaned rows in source order, under their user names and types, batch by batch."""
    columns = ", ".join(quote(internal_name(i)) for i in range(len(schema)))
    reader = con.sql(f"SELECT {columns} FROM t ORDER BY {ROW_COLUMN}").to_arrow_reader(BATCH_ROWS)
    try:
        for batch in reader:
            arrays = [
                array if array.type == f.type else array.cast(f.type)
                for array, f in zip(batch.columns, schema, strict=True)
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
    finally:
        con.close()


def _cpu_count() -> int:
    """The CPUs this container may use: its CPU limit (cgroup v2 quota), else its affinity."""
    available = len(os.sched_getaffinity(0))
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()
        if quota != "max":
            return max(1, min(available, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit here: every CPU the process may run on
    return available


def _memory_limit_bytes() -> int:
    """MEMORY_SHARE of the container's memory limit (cgroup v2), or of the machine's memory."""
    try:
        text = CGROUP_MEMORY_MAX.read_text().strip()
        if text != "max":
            return int(int(text) * MEMORY_SHARE)
    except (OSError, ValueError):
        pass  # no cgroup v2 limit here: fall back to the machine's memory
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * MEMORY_SHARE)
