"""`modelyard-worker ingest`: one Dataset source → one immutable, content-addressed version.

Reads the source as a stream, validates it, normalizes it to Parquet, computes the version
digest, statistics and split, and publishes it (payload first, manifest last). A version that
already exists is reused, never rewritten. With spec.cleaning, the normalized source goes to a
local Parquet file first, and the cleaned rows (cleaning.py) are what is validated and versioned.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelyard.api.dataset import DatasetSpec
from modelyard.reasons import Reason
from modelyard.storage import layout, manifests
from modelyard.storage.client import Storage
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common import termination
from modelyard.workloads.common.spec import load_spec, parse_uri, storage_config
from modelyard.workloads.common.tabular import (
    ARROW_TYPES,
    ContentHasher,
    NotNormalizable,
    logical_type,
    logical_type_of,
    normalize,
)
from modelyard.workloads.common.termination import EXIT_INVALID_DATA, EXIT_USAGE, WorkloadError
from modelyard.workloads.common.timing import log_peak_memory, phase
from modelyard.workloads.ingest.builtin import BUILTIN_TARGET
from modelyard.workloads.ingest.cleaning import ROW_COLUMN, Cleaned, clean, internal_name
from modelyard.workloads.ingest.parquet_sink import ParquetSink
from modelyard.workloads.ingest.prefetch import prefetch
from modelyard.workloads.ingest.sources import read_source
from modelyard.workloads.ingest.split import TargetColumn, choose_test_rows
from modelyard.workloads.ingest.stats import StatisticsAccumulator
from modelyard.workloads.ingest.validation import SchemaMismatch, Validator, select_columns

CATEGORIES_IN_SUMMARY = 5


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="modelyard-worker ingest")
    parser.add_argument(
        "--spec", help="DatasetSpec as a JSON/YAML file ('-': stdin); default: $MODELYARD_SPEC"
    )
    parser.add_argument("--namespace", default=os.environ.get("MODELYARD_NAMESPACE", "default"))
    parser.add_argument("--name", default=os.environ.get("MODELYARD_NAME"))
    parser.add_argument(
        "--output-uri",
        default=os.environ.get("MODELYARD_OUTPUT_URI"),
        help="s3:// prefix the operator chose for this Dataset's versions "
        "(default: the layout's, from --namespace and --name)",
    )
    args = parser.parse_args(argv)

    def body() -> termination.Completed:
        spec = load_spec(DatasetSpec, args.spec)
        if not args.name:
            raise WorkloadError(
                Reason.InvalidArguments, "--name (or $MODELYARD_NAME) is required", EXIT_USAGE
            )
        config = storage_config(spec.storage)
        output = (
            parse_uri("--output-uri", args.output_uri)
            if args.output_uri
            else layout.datasets_prefix(config.root, args.namespace, args.name)
        )
        summary, statistics = ingest(spec, args.namespace, args.name, Storage(config), output)
        return termination.Completed(summary, [_compact(column) for column in statistics])

    code = termination.run(body)
    log_peak_memory("ingest")
    return code


def ingest(
    spec: DatasetSpec, namespace: str, name: str, storage: Storage, output: S3Uri
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Publish (or find) the version of the source's current content under `output` (the
    Dataset's versions prefix); summary + statistics."""
    declared = {
        column.name: ARROW_TYPES[logical_type_of(column.type)]
        for column in (spec.schema_.columns if spec.schema_ else [])
        if column.type
    }
    source_format, raw_batches = read_source(spec.source, spec.format, storage, frozenset(declared))
    batches: Iterator[pa.RecordBatch] = (
        _apply_declared_types(batch, declared) for batch in prefetch(raw_batches)
    )
    target = spec.target or BUILTIN_TARGET
    with tempfile.TemporaryDirectory(prefix="modelyard-ingest-") as work:
        data_path = Path(work) / layout.DATA_FILE
        cleaned = None
        if spec.cleaning is not None:
            with phase("ingest", "read and normalize"):
                schema, raw_path = _write_raw(spec, batches, target, Path(work))
            with phase("ingest", "clean"):
                cleaned = clean(raw_path, schema, spec.cleaning, Path(work))
            batches = cleaned.batches
        with phase("ingest", "read, validate and normalize"):
            snapshot = _normalize_to_parquet(spec, batches, target, data_path)
        extra: dict[str, Any] = {
            "target": target,
            "split": spec.split.model_dump(by_alias=True, mode="json"),
        }
        if spec.cleaning is not None:
            # The rules are part of the version; without them the digest is what it always was.
            extra["cleaning"] = spec.cleaning.to_dict()
        version = snapshot.hasher.digest(extra=extra)
        prefix = layout.dataset_version_prefix(output, version)
        manifest = manifests.read_manifest(storage, prefix)
        if manifest is None:
            manifest = _publish(
                spec,
                storage,
                prefix,
                snapshot,
                version,
                source_format.value,
                namespace,
                name,
                cleaned,
            )
            reused = False
        else:
            reused = True
    summary = {
        "status": "Succeeded",
        "version": version,
        "uri": str(prefix),
        "format": manifest["format"],
        "rows": manifest["rows"],
        "columns": len(manifest["columns"]),
        "sizeBytes": manifest["sizeBytes"],
        "trainRows": manifest["split"]["trainRows"],
        "testRows": manifest["split"]["testRows"],
        "createdAt": manifest["createdAt"],
        "reused": reused,
    }
    if "cleaning" in manifest:
        summary["cleaning"] = manifest["cleaning"]
        summary["sourceRows"] = manifest["sourceRows"]
    statistics: list[dict[str, Any]] = manifest["statistics"]
    return summary, statistics


@dataclass(frozen=True)
class Snapshot:
    """The normalized data written locally, with what was computed while writing it."""

    data_path: Path
    rows: int
    hasher: ContentHasher
    stats: StatisticsAccumulator
    target: str
    target_column: TargetColumn


def _no_rows() -> WorkloadError:
    return WorkloadError(
        Reason.EmptyData, "spec.source: the source holds no rows", EXIT_INVALID_DATA
    )


def _normalize_to_parquet(
    spec: DatasetSpec, batches: Iterator[pa.RecordBatch], target: str, data_path: Path
) -> Snapshot:
    schema, normalized = _normalized_batches(spec, batches, target)
    try:
        validator = Validator(spec)
    except SchemaMismatch as error:
        raise WorkloadError(Reason.SchemaMismatch, str(error), EXIT_INVALID_DATA) from None
    hasher = ContentHasher(schema)
    stats = StatisticsAccumulator(schema)
    target_column = TargetColumn(schema.field(target).type)
    rows = 0
    with ParquetSink(data_path, schema) as sink:
        for batch in normalized:
            sink.write(batch)
            validator.update(batch)
            hasher.update(batch)
            stats.update(batch)
            target_column.update(batch.column(target))
            rows += batch.num_rows
    if rows == 0:
        raise _no_rows()
    problems = validator.summary()
    if problems:
        raise WorkloadError(Reason.ValidationFailed, problems, EXIT_INVALID_DATA)
    if target_column.nulls:
        raise WorkloadError(
            Reason.ValidationFailed,
            f"spec.target: column {target!r} has empty values; every row needs a label",
            EXIT_INVALID_DATA,
        )
    return Snapshot(data_path, rows, hasher, stats, target, target_column)


def _write_raw(
    spec: DatasetSpec, batches: Iterator[pa.RecordBatch], target: str, work: Path
) -> tuple[pa.Schema, Path]:
    """The normalized source in a local Parquet file for cleaning, columns named by position
    (cleaning.internal_name) beside their row number; the columns' user schema."""
    schema, normalized = _normalized_batches(spec, batches, target)
    raw_schema = pa.schema(
        [pa.field(internal_name(i), f.type) for i, f in enumerate(schema)]
        + [pa.field(ROW_COLUMN, pa.int64())]
    )
    raw_path = work / "raw.parquet"
    rows = 0
    with ParquetSink(raw_path, raw_schema) as sink:
        for batch in normalized:
            numbers = pa.array(np.arange(rows, rows + batch.num_rows, dtype=np.int64))
            sink.write(pa.RecordBatch.from_arrays([*batch.columns, numbers], schema=raw_schema))
            rows += batch.num_rows
    if rows == 0:
        raise _no_rows()
    return schema, raw_path


def _normalized_batches(
    spec: DatasetSpec, batches: Iterator[pa.RecordBatch], target: str
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The columns ingest keeps, normalized, every batch in the first one's schema; that schema."""
    first = next(batches, None)
    if first is None:
        raise _no_rows()
    try:
        keep = select_columns(first.schema, spec, target)
    except SchemaMismatch as error:
        raise WorkloadError(Reason.SchemaMismatch, str(error), EXIT_INVALID_DATA) from None
    schema = _normalized(first, keep).schema

    def conformed() -> Iterator[pa.RecordBatch]:
        rows = 0
        for raw in chain([first], batches):
            batch = _normalized(raw, keep)
            if batch.schema != schema:
                batch = _conform(batch, schema, rows)
            rows += batch.num_rows
            yield batch

    return schema, conformed()


def _normalized(raw: pa.RecordBatch, keep: list[str]) -> pa.RecordBatch:
    try:
        return normalize(raw.select(keep))
    except NotNormalizable as error:
        raise WorkloadError(
            Reason.UnreadableData, f"spec.source: {error}", EXIT_INVALID_DATA
        ) from None


def _apply_declared_types(
    batch: pa.RecordBatch, declared: dict[str, pa.DataType]
) -> pa.RecordBatch:
    """Columns typed in spec.schema converted to that type; a value that does not fit is named."""
    if not declared:
        return batch
    columns = list(batch.columns)
    for name, arrow_type in declared.items():
        if name not in batch.schema.names:
            continue  # reported by select_columns with every other missing column
        index = batch.schema.get_field_index(name)
        if columns[index].type == arrow_type:
            continue
        try:
            columns[index] = pc.cast(columns[index], arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise WorkloadError(
                Reason.SchemaMismatch,
                f"spec.schema.columns: column {name!r} is declared "
                f"{logical_type(arrow_type)} but holds a value that is not: "
                f"{str(error).splitlines()[0]}",
                EXIT_INVALID_DATA,
            ) from None
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _conform(batch: pa.RecordBatch, schema: pa.Schema, offset: int) -> pa.RecordBatch:
    try:
        return batch.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        raise WorkloadError(
            Reason.SchemaMismatch,
            f"spec.source: from row {offset + 1} the columns are {batch.schema}, "
            f"earlier rows had {schema}; declare types in spec.schema.columns",
            EXIT_INVALID_DATA,
        ) from None


def _publish(
    spec: DatasetSpec,
    storage: Storage,
    prefix: S3Uri,
    snapshot: Snapshot,
    version: str,
    source_format: str,
    namespace: str,
    name: str,
    cleaned: Cleaned | None,
) -> dict[str, Any]:
    rows, stats = snapshot.rows, snapshot.stats
    with phase("ingest", "split"):
        test = choose_test_rows(
            snapshot.target_column, spec.split.test_fraction, spec.split.seed, spec.split.stratify
        )
        split_path = snapshot.data_path.parent / layout.SPLIT_FILE
        pq.write_table(pa.table({"test_row": pa.array(test, type=pa.int64())}), split_path)
    with phase("ingest", "upload"):
        storage.ensure_bucket(prefix.bucket)
        storage.upload_file(snapshot.data_path, prefix.join(layout.DATA_FILE))
        storage.upload_file(split_path, prefix.join(layout.SPLIT_FILE))
    manifest = {
        "version": version,
        "dataset": {"namespace": namespace, "name": name},
        "source": spec.source.model_dump(by_alias=True, exclude_none=True, mode="json"),
        "format": source_format,
        "rows": rows,
        "columns": [{"name": column.name, "type": column.kind} for column in stats.columns],
        "target": snapshot.target,
        "targetIsCategorical": snapshot.target_column.categorical,
        "statistics": stats.result(),
        "split": {
            **spec.split.model_dump(by_alias=True, mode="json"),
            "trainRows": rows - len(test),
            "testRows": len(test),
            "file": layout.SPLIT_FILE,
        },
        "files": {"data": layout.DATA_FILE, "split": layout.SPLIT_FILE},
        "sizeBytes": snapshot.data_path.stat().st_size,
        "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if cleaned is not None:
        manifest["sourceRows"] = cleaned.source_rows
        manifest["cleaning"] = [count.to_dict() for count in cleaned.counts]
    manifests.publish_manifest(storage, prefix, manifest)
    return manifest


def _compact(column: dict[str, Any]) -> dict[str, Any]:
    compact = dict(column)
    if "categories" in compact:
        compact["categories"] = compact["categories"][:CATEGORIES_IN_SUMMARY]
    return compact
