"""Normalized columns and the content digest that makes a Dataset version.

Normalization maps every column to one of four logical types — integer (int64), float
(float64), boolean, string (UTF-8) — so that CSV, JSON Lines and Parquet copies of the same table
become the same Arrow data. Decimals become float64; dates, times and other types become their
ISO text.

The version is a SHA-256 over a documented encoding of that data, not over file bytes, so it
does not depend on the source format, compression, file or block boundaries, or the pyarrow
version:

    sha256( "modelyard-dataset-v1\\n" + rows + "\\n"
            + compact sorted-key JSON of {target, split settings} + "\\n"
            + per column, in order: name + "\\t" + logical type + "\\t" + column digest + "\\n" )

The target and split settings are included because a version pins what training sees: the same
rows split differently are a different snapshot.

where a column digest is SHA-256 over the SHA-256s of three byte streams, each the
concatenation over all rows: validity (one byte per row: 1 valid, 0 null); values (little-endian
int64/float64, one byte per boolean, or for strings the little-endian int64 length); and, for
strings only, the UTF-8 bytes. Nulls contribute zero (length zero for strings). Because each is a
plain per-row stream, batch boundaries cannot change the result.
Column names, column order, row order and every value count; nothing else does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.storage.digest import PREFIX

LogicalType = Literal["integer", "float", "boolean", "string"]
ARROW_TYPES: dict[LogicalType, pa.DataType] = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}


def logical_type_of(declared: str) -> LogicalType:
    """A spec.schema column type (integer, float, string, boolean) as a logical type."""
    if declared not in ARROW_TYPES:
        raise ValueError(f"unknown column type {declared!r}")
    return declared


def logical_type(arrow_type: pa.DataType) -> LogicalType:
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    return "string"


class NotNormalizable(ValueError):
    """A column whose values have no form in its logical type (bytes that are not UTF-8)."""


def normalize(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with every column cast to its logical type's Arrow type."""
    columns = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        target = ARROW_TYPES[logical_type(column.type)]
        try:
            columns.append(column if column.type == target else pc.cast(column, target))
        except pa.ArrowInvalid as error:
            raise NotNormalizable(
                f"column {name!r} ({column.type}) cannot be read as {logical_type(target)}: "
                f"{str(error).splitlines()[0]}"
            ) from None
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


class ContentHasher:
    """Feeds normalized batches, one column stream at a time, into the version digest."""

    def __init__(self, schema: pa.Schema) -> None:
        self.names = schema.names
        self.types = [logical_type(field.type) for field in schema]
        self.validity = [hashlib.sha256() for _ in self.names]
        self.values = [hashlib.sha256() for _ in self.names]
        self.text = [hashlib.sha256() for _ in self.names]
        self.rows = 0

    def update(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        # hashlib releases the GIL on large buffers: hand it arrays' memory, not bytes copies.
        for i, column in enumerate(batch.columns):
            if column.null_count:
                valid = column.is_valid().to_numpy(zero_copy_only=False).astype(np.uint8)
                self.validity[i].update(valid.data)
            else:
                self.validity[i].update(_ones(batch.num_rows).data)
            if self.types[i] == "string":
                filled = pc.fill_null(column, "")
                lengths = pc.binary_length(filled).to_numpy(zero_copy_only=False)
                self.values[i].update(lengths.astype("<i8").data)
                data = _string_data(filled)
                if data is not None:
                    self.text[i].update(data)
            else:
                self.values[i].update(_value_bytes(column, self.types[i]))

    def digest(self, extra: dict[str, Any] | None = None) -> str:
        """The version. `extra` (target and split settings) is part of what a version pins."""
        total = hashlib.sha256(f"modelyard-dataset-v1\n{self.rows}\n".encode())
        if extra:
            total.update(json.dumps(extra, sort_keys=True, separators=(",", ":")).encode() + b"\n")
        for name, kind, validity, values, text in zip(
            self.names, self.types, self.validity, self.values, self.text, strict=True
        ):
            column = hashlib.sha256(validity.digest() + values.digest() + text.digest()).hexdigest()
            total.update(f"{name}\t{kind}\t{column}\n".encode())
        return PREFIX + total.hexdigest()


def _value_bytes(column: pa.Array, kind: LogicalType) -> memoryview:
    if kind == "boolean":
        flags: np.ndarray[Any, Any] = pc.fill_null(column, False).to_numpy(zero_copy_only=False)
        return flags.astype(np.uint8).data
    dtype = "<i8" if kind == "integer" else "<f8"
    zero = 0 if kind == "integer" else 0.0
    values: np.ndarray[Any, Any] = pc.fill_null(column, zero).to_numpy(zero_copy_only=False)
    # Already little-endian 8-byte values (normalized, on any common CPU): no copy.
    return np.ascontiguousarray(values, dtype=dtype).data


_ONES = np.ones(0, dtype=np.uint8)


def _ones(count: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """`count` validity bytes of 1, from one buffer grown as needed (batches repeat sizes)."""
    global _ONES
    if len(_ONES) < count:
        _ONES = np.ones(count, dtype=np.uint8)
    return _ONES[:count]


def _string_data(column: pa.Array) -> pa.Buffer | None:
    """The UTF-8 bytes of exactly this array's values (slices share a larger buffer)."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[
        column.offset : column.offset + len(column) + 1
    ]
    data = column.buffers()[2]
    if data is None or len(offsets) == 0:
        return None
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
