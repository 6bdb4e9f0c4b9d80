"""Writes normalized batches to a local Parquet file on a background thread, in bounded memory.

Source blocks are small (a few MiB) so the reader stays lean, but one Parquet row group per block
would make a slow, bloated file; batches are therefore gathered into row groups of about
ROW_GROUP_BYTES. Encoding and compressing a row group releases the GIL, so it overlaps with the
caller parsing, hashing and profiling the next one. At most one row group is being written
while the next is gathered: memory stays at about two row groups whatever the file size.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_BYTES = 16 << 20


class ParquetSink:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-sink")
        self.pending: list[pa.RecordBatch] = []
        self.pending_bytes = 0
        self.in_flight: Future[None] | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.pending_bytes += batch.nbytes
        if self.pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        table = pa.Table.from_batches(self.pending, self.schema)
        self.pending, self.pending_bytes = [], 0
        self._wait()
        self.in_flight = self.pool.submit(self.writer.write_table, table, table.num_rows)

    def _wait(self) -> None:
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            in_flight.result()  # re-raises a write error (a full disk, say) here

    def close(self) -> None:
        """Write what is left and finish the file."""
        self._flush()
        self._wait()
        self.writer.close()
        self.pool.shutdown()

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
            return
        # Failing already: stop without writing more, but never leave the thread running.
        self.pending = []
        self.pool.shutdown(cancel_futures=True)
        self.writer.close()
