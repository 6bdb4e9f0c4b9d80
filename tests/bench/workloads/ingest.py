"""Ingest: `modelyard-worker ingest` of a CSV against pyarrow read_csv + write_table (zstd)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.workloads.child import Measured, measure, python
from tests.bench.workloads.data import TARGET, warm
from tests.bench.workloads.servers import ALLOW_LOOPBACK, fresh_bucket, serving_directory
from tests.plugins.s3 import S3Server

PYARROW_PEER = """
import sys, pyarrow.csv as pa_csv, pyarrow.parquet as pq
pq.write_table(pa_csv.read_csv(sys.argv[1]), sys.argv[2], compression="zstd")
"""
_PHASE = re.compile(r"^ingest: (.+) took ([0-9.]+)s$", re.MULTILINE)


@dataclass
class IngestRound:
    ours: Measured
    peer: Measured
    rows: int
    phases: dict[str, float] = field(default_factory=dict)


def run(csv: Path, s3: S3Server, rounds: int) -> list[IngestRound]:
    warm(csv)
    results = []
    with serving_directory(csv.parent) as base_url:
        for _ in range(rounds):
            with fresh_bucket(s3) as s3_env:
                spec: dict[str, object] = {
                    "source": {"http": {"url": f"{base_url}/{csv.name}"}},
                    "target": TARGET,
                }
                ours = _ours(spec, s3_env)
            peer = _peer(csv)
            summary = json.loads(ours.stdout.strip().splitlines()[-1])
            phases = {name: float(seconds) for name, seconds in _PHASE.findall(ours.stderr)}
            results.append(IngestRound(ours, peer, summary["rows"], phases))
    return results


def _ours(spec: dict[str, object], s3_env: dict[str, str]) -> Measured:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as work:
        env = {
            **os.environ,
            **ALLOW_LOOPBACK,
            **s3_env,
            "MODELYARD_SPEC": json.dumps(spec),
            "MODELYARD_NAME": "bench",
            "MODELYARD_TERMINATION_LOG": str(Path(work) / "termination-log"),
            "TMPDIR": work,
        }
        return measure(python("-m", "modelyard.workloads", "ingest"), env)


def _peer(csv: Path) -> Measured:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as work:
        return measure(python("-c", PYARROW_PEER, str(csv), str(Path(work) / "peer.parquet")))
