"""Seeded synthetic tables, written once and cached under ~/.cache/modelyard/bench/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

CACHE = Path.home() / ".cache" / "modelyard" / "bench"
ROWS_PER_CHUNK = 200_000
NUMERIC_FEATURES = 12
SEGMENTS = ("a", "b", "c", "d")
TARGET = "label"


def _chunk(rng: np.random.Generator, rows: int) -> pa.Table:
    """Numeric features, one categorical column and a 3-class label that depends on them."""
    numeric = rng.normal(size=(rows, NUMERIC_FEATURES)).round(6)
    segment = rng.integers(0, len(SEGMENTS), size=rows)
    score = numeric[:, 0] + 0.5 * numeric[:, 1] - 0.7 * numeric[:, 2] + 0.4 * (segment == 1)
    score += rng.normal(scale=0.8, size=rows)
    columns: dict[str, object] = {f"x{i}": numeric[:, i] for i in range(NUMERIC_FEATURES)}
    columns["segment"] = np.asarray(SEGMENTS)[segment]
    columns[TARGET] = np.digitize(score, [-0.5, 0.5]).astype(np.int64)
    return pa.table(columns)


def csv_of_size(megabytes: int) -> Path:
    """A CSV of at least `megabytes` MiB (seed 0), made once."""
    return _cached(f"ingest-{megabytes}mib.csv", lambda size, _: size >= megabytes << 20)


def csv_of_rows(rows: int) -> Path:
    """A CSV of exactly `rows` rows (seed 0), made once."""
    return _cached(f"train-{rows}rows.csv", lambda _, written: written >= rows, rows)


def _cached(name: str, done: Callable[[int, int], bool], rows: int | None = None) -> Path:
    """Write chunks until done(bytes, rows); a partial file never takes the final name."""
    path = CACHE / name
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    partial = path.with_suffix(".partial")
    written = 0
    with partial.open("wb") as out:
        while not done(out.tell(), written):
            size = ROWS_PER_CHUNK if rows is None else min(ROWS_PER_CHUNK, rows - written)
            options = pa_csv.WriteOptions(include_header=written == 0)
            pa_csv.write_csv(_chunk(rng, size), out, options)
            written += size
    partial.rename(path)
    return path


def warm(path: Path) -> None:
    """Read the file once so that both contenders find it in the page cache."""
    with path.open("rb") as stream:
        while stream.read(16 << 20):
            pass
