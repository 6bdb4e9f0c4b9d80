"""Ingest from PostgreSQL: `modelyard-worker ingest` of a `sql` source against the ADBC driver's
own fetch-to-Arrow (`cursor.fetch_arrow_table()`) of the same query, each in its own process.

The server is Debian's PostgreSQL, started for the run by tests/plugins/postgres.py, with a
seeded table generated server-side: the shape of the CSV benchmark's (12 float columns, one
4-valued text column, a 3-class label) and an id to order by.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.workloads.child import Measured, measure, python
from tests.bench.workloads.data import NUMERIC_FEATURES, TARGET
from tests.bench.workloads.servers import ALLOW_LOOPBACK, fresh_bucket
from tests.plugins.postgres import PostgresServer, running_postgres
from tests.plugins.s3 import S3Server

TABLE = "bench_rows"
QUERY = f"SELECT * FROM {TABLE} ORDER BY id"
# The driver's own way to a whole result as one Arrow table: the peer holds all of it at once.
ADBC_PEER = """
import sys, adbc_driver_postgresql.dbapi as pg
with pg.connect(sys.argv[1]) as connection, connection.cursor() as cursor:
    cursor.execute(sys.argv[2])
    print(cursor.fetch_arrow_table().num_rows)
"""
_PHASE = re.compile(r"^ingest: (.+) took ([0-9.]+)s$", re.MULTILINE)


@dataclass
class SqlRound:
    ours: Measured
    peer: Measured
    rows: int
    table_bytes: int
    phases: dict[str, float] = field(default_factory=dict)


@contextmanager
def seeded_table(rows: int) -> Iterator[tuple[PostgresServer, int]]:
    """A server holding TABLE with `rows` rows (seed 0), and the table's size in bytes."""
    features = ", ".join(
        f"round((random() * 2 - 1)::numeric, 6)::float8 AS x{i}" for i in range(NUMERIC_FEATURES)
    )
    with running_postgres() as server:
        server.run(
            "SELECT setseed(0)",
            f"CREATE UNLOGGED TABLE {TABLE} AS SELECT i AS id, {features}, "
            "(ARRAY['a', 'b', 'c', 'd'])[1 + floor(random() * 4)::int] AS segment, "
            f"floor(random() * 3)::int8 AS {TARGET} FROM generate_series(1, {rows}) AS i",
            f"ANALYZE {TABLE}",
        )
        [(size,)] = server.query(f"SELECT pg_table_size('{TABLE}')")
        yield server, int(size)


def run(rows: int, s3: S3Server, rounds: int) -> list[SqlRound]:
    results = []
    with seeded_table(rows) as (server, table_bytes):
        spec: dict[str, object] = {
            "source": {
                "sql": {"query": QUERY, "connectionSecretRef": {"name": "bench", "key": "uri"}}
            },
            "target": TARGET,
        }
        for _ in range(rounds):
            with fresh_bucket(s3) as s3_env:
                ours = _ours(spec, s3_env, server.uri())
            peer = measure(python("-c", ADBC_PEER, server.uri(), QUERY))
            summary = json.loads(ours.stdout.strip().splitlines()[-1])
            phases = {name: float(seconds) for name, seconds in _PHASE.findall(ours.stderr)}
            assert int(peer.stdout.strip()) == summary["rows"] == rows
            results.append(SqlRound(ours, peer, rows, table_bytes, phases))
    return results


def _ours(spec: dict[str, object], s3_env: dict[str, str], uri: str) -> Measured:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as work:
        env = {
            **os.environ,
            **ALLOW_LOOPBACK,
            **s3_env,
            "MODELYARD_SOURCE_SECRET": uri,
            "MODELYARD_SPEC": json.dumps(spec),
            "MODELYARD_NAME": "bench-sql",
            "MODELYARD_TERMINATION_LOG": str(Path(work) / "termination-log"),
            "TMPDIR": work,
        }
        return measure(python("-m", "modelyard.workloads", "ingest"), env)
