"""The seeded train/test split recorded with each Dataset version, as test-row positions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# An integer target with at most this many distinct values is treated as class labels.
MAX_CLASSES = 100

IndexArray = np.ndarray[Any, np.dtype[np.int64]]
CodeArray = np.ndarray[Any, np.dtype[np.unsignedinteger[Any]]]


class TargetColumn:
    """The target as the split needs it, gathered batch by batch in less memory than the column.

    While the target can be categorical (text, boolean, or integers with at most MAX_CLASSES
    distinct values) it is kept as class codes in order of first appearance, each batch's in
    the narrowest integer type that holds the classes seen so far (one byte per row for up to
    256 classes); a numeric target beyond that keeps only its counts, since its split is a
    plain random sample.
    """

    def __init__(self, arrow_type: pa.DataType) -> None:
        self.is_integer = pa.types.is_integer(arrow_type)
        self.rows = 0
        self.nulls = 0
        could_be_classes = self.is_integer or not pa.types.is_floating(arrow_type)
        self.chunks: list[CodeArray] | None = [] if could_be_classes else None
        self.classes: dict[Any, int] = {}  # class value -> code

    def update(self, column: pa.Array) -> None:
        self.rows += len(column)
        self.nulls += column.null_count
        if self.chunks is None:
            return
        encoded = pc.dictionary_encode(column)
        values = encoded.dictionary.to_pylist()
        for value in values:
            self.classes.setdefault(value, len(self.classes))
        if self.is_integer and len(self.classes) > MAX_CLASSES:
            self.chunks = None  # a number, not a class label: stop keeping codes
            return
        lookup = np.array([self.classes[value] for value in values], dtype=_code_type(self.classes))
        # A null's code does not matter: a target with nulls fails validation before the split.
        indices = encoded.indices.fill_null(0) if encoded.indices.null_count else encoded.indices
        self.chunks.append(lookup[indices.to_numpy()])

    @property
    def categorical(self) -> bool:
        return self.chunks is not None

    def codes(self) -> CodeArray:
        """One class code per row, numbered in order of first appearance."""
        assert self.chunks is not None
        if not self.chunks:
            return np.empty(0, dtype=np.uint8)
        return np.concatenate(self.chunks)


def _code_type(classes: dict[Any, int]) -> type[np.unsignedinteger[Any]]:
    if len(classes) <= 1 << 8:
        return np.uint8
    if len(classes) <= 1 << 16:
        return np.uint16
    return np.uint32


def choose_test_rows(
    target: TargetColumn, fraction: float, seed: int, stratify: bool
) -> IndexArray:
    """Sorted 0-based row positions of the test set.

    Stratified: each class contributes round(fraction * its size) rows (at least one when the
    class has two or more), so class shares are equal in both sets. Classes of one row stay in
    training. Otherwise a plain seeded random sample of round(fraction * rows).
    """
    rows = target.rows
    rng = np.random.default_rng(seed)
    if not (stratify and target.categorical):
        count = min(max(round(fraction * rows), 1 if rows > 1 else 0), rows - 1 if rows else 0)
        return np.sort(rng.choice(rows, size=count, replace=False)).astype(np.int64)
    labels = target.codes()
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
