"""scikit-learn's toy datasets as tables: their feature names plus a `target` column.

The trainer image stores each one as Parquet beside this module when it is built (`python -m
modelyard.workloads.ingest.builtin`), so that ingesting one reads a small file instead of
importing scikit-learn, which is a second of the quickstart's ingest (docs/benchmarks/chain.md).
Without the stored files (a development checkout) they come from scikit-learn itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modelyard.api.dataset import BuiltinName

BUILTIN_TARGET = "target"
STORED = Path(__file__).with_name("builtin_tables")


def builtin_table(name: BuiltinName, stored: Path = STORED) -> pa.Table:
    path = stored / f"{name.value}.parquet"
    if path.is_file():
        return pq.read_table(path)
    return from_sklearn(name)


def from_sklearn(name: BuiltinName) -> pa.Table:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name.value}")()
    columns = {
        str(feature): pa.array(np.asarray(bunch.data[:, i], dtype=np.float64))
        for i, feature in enumerate(bunch.feature_names)
    }
    target = np.asarray(bunch.target)
    columns[BUILTIN_TARGET] = pa.array(
        target.astype(np.int64) if target.dtype.kind in "iu" else target.astype(np.float64)
    )
    return pa.table(columns)


def store(directory: Path) -> None:
    """Write every toy dataset to `directory` as `<name>.parquet`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in BuiltinName:
        pq.write_table(from_sklearn(name), directory / f"{name.value}.parquet")


if __name__ == "__main__":
    store(Path(sys.argv[1]) if len(sys.argv) > 1 else STORED)
