"""`python -m tests.bench.workloads [--quick]`: run both benchmarks, write the report."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.workloads import ingest, report, sql, training
from tests.bench.workloads.data import csv_of_size
from tests.bench.workloads.s3server import bench_versitygw, given_server
from tests.plugins.s3 import S3Server


@dataclass(frozen=True)
class Sizes:
    ingest_mib: int
    train_rows: tuple[int, ...]
    rounds: int
    sql_rows: int


FULL = Sizes(ingest_mib=2048, train_rows=(100_000, 1_000_000), rounds=2, sql_rows=10_000_000)
QUICK = Sizes(ingest_mib=200, train_rows=(20_000, 200_000), rounds=2, sql_rows=3_000_000)


@contextmanager
def s3_server(endpoint: str | None) -> Iterator[S3Server]:
    """The given endpoint, or a versitygw of our own; this process gets its credentials."""
    if endpoint:
        server = given_server(endpoint)
        os.environ.update(server.env())
        yield server
        return
    with bench_versitygw() as server:
        os.environ.update(server.env())
        yield server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.workloads")
    parser.add_argument("--quick", action="store_true", help="~200 MiB CSV, smaller training")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per contender")
    parser.add_argument(
        "--s3-endpoint",
        help="an S3 server to use instead of a versitygw of our own (credentials: "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else modelyard-test / modelyard-test-secret)",
    )
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-sql", action="store_true", help="no PostgreSQL ingest")
    parser.add_argument("--output", type=Path, default=report.OUT)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or sizes.rounds
    arguments = sys.argv[1:] if argv is None else argv
    command = f"python -m tests.bench.workloads {shlex.join(arguments)}".strip()
    csv = csv_of_size(sizes.ingest_mib)
    with s3_server(args.s3_endpoint) as s3:
        ingest_rounds = ingest.run(csv, s3, rounds)
        report.print_ingest(ingest_rounds, csv)
        sql_rounds = [] if args.skip_sql else sql.run(sizes.sql_rows, s3, rounds)
        if sql_rounds:
            report.print_sql(sql_rounds)
        train_rounds = [] if args.skip_training else training.run(sizes.train_rows, s3, rounds)
        described = s3.description
    report.write(
        args.output,
        command=command,
        when=datetime.now(UTC),
        csv=csv,
        s3=described,
        ingest_rounds=ingest_rounds,
        train_rounds=train_rounds,
        sql_rounds=sql_rounds,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
