"""The seeded train/test split recorded with each Dataset version, as test-row positions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

# An integer target with at most this many distinct values is treated as class labels.
MAX_CLASSES = 100

IndexArray = np.ndarray[Any, np.dtype[np.int64]]


def is_categorical(target: pa.ChunkedArray) -> bool:
    if pa.types.is_string(target.type) or pa.types.is_boolean(target.type):
        return True
    if pa.types.is_integer(target.type):
        return len(target.unique()) <= MAX_CLASSES
    return False


def choose_test_rows(
    target: pa.ChunkedArray, fraction: float, seed: int, stratify: bool
) -> IndexArray:
    """Sorted 0-based row positions of the test set.

    Stratified: each class contributes round(fraction * its size) rows (at least one when the
    class has two or more), so class shares are equal in both sets. Classes of one row stay in
    training. Otherwise a plain seeded random sample of round(fraction * rows).
    """
    rows = len(target)
    rng = np.random.default_rng(seed)
    if not (stratify and is_categorical(target)):
        count = min(max(round(fraction * rows), 1 if rows > 1 else 0), rows - 1 if rows else 0)
        return np.sort(rng.choice(rows, size=count, replace=False)).astype(np.int64)
    codes = target.combine_chunks().dictionary_encode().indices
    # int32 codes: half the memory of int64 for a label per row, and the same draws.
    labels = np.asarray(codes.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        count = min(max(round(fraction * len(members)), 1), len(members) - 1)
        chosen.append(rng.choice(members, size=count, replace=False))
    if not chosen:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)
