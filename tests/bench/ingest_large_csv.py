"""Ingest of a large synthetic CSV: wall time and peak memory of `modelyard-worker ingest`,
against pyarrow's own read-CSV + write-Parquet on the same file.

    .venv/bin/python tests/bench/ingest_large_csv.py --gigabytes 2

The CSV is served over HTTP from loopback and the snapshot goes to a moto S3 server on
loopback; both are started here and stopped at the end.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

ROWS_PER_CHUNK = 200_000


def write_csv(path: Path, gigabytes: float) -> int:
    """Numeric features, one categorical column and a class label, until the file is big enough."""
    rng = np.random.default_rng(0)
    target_bytes = gigabytes * 1024**3
    rows = 0
    with path.open("wb") as out:
        header = True
        while out.tell() < target_bytes:
            columns = {f"x{i}": rng.normal(size=ROWS_PER_CHUNK).round(6) for i in range(12)}
            columns["segment"] = rng.choice(["a", "b", "c", "d"], size=ROWS_PER_CHUNK)
            columns["label"] = rng.integers(0, 3, size=ROWS_PER_CHUNK)
            table = pa.table(columns)
            pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=header))
            header = False
            rows += ROWS_PER_CHUNK
    return rows


def pyarrow_baseline(path: Path, work: Path) -> float:
    started = time.perf_counter()
    table = pa_csv.read_csv(path)
    pq.write_table(table, work / "baseline.parquet", compression="zstd")
    return time.perf_counter() - started


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--work-dir", default=None)
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="modelyard-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / "large.csv"
    if not csv_path.exists():
        rows = write_csv(csv_path, args.gigabytes)
        print(f"wrote {csv_path}: {csv_path.stat().st_size / 1024**3:.2f} GiB, {rows} rows")
    size = csv_path.stat().st_size

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(work))
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    s3_port = _port()
    s3 = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2)
    spec = {
        "source": {"http": {"url": f"http://127.0.0.1:{web.server_address[1]}/large.csv"}},
        "target": "label",
    }
    env = {
        **os.environ,
        "MODELYARD_SPEC": json.dumps(spec),
        "MODELYARD_NAME": "large",
        "MODELYARD_S3_ENDPOINT": f"http://127.0.0.1:{s3_port}",
        "MODELYARD_S3_BUCKET": "bench",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "MODELYARD_TERMINATION_LOG": str(work / "termination-log"),
    }
    try:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "modelyard.workloads", "ingest"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        ingest_seconds = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        assert result.returncode == 0, result.stderr[-2000:]
        summary = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        s3.terminate()
        web.shutdown()
    baseline = pyarrow_baseline(csv_path, work)
    print(
        json.dumps(
            {
                "csv_gib": round(size / 1024**3, 2),
                "rows": summary["rows"],
                "ingest_seconds": round(ingest_seconds, 1),
                "ingest_mib_per_second": round(size / 1024**2 / ingest_seconds, 1),
                "ingest_peak_rss_mib": round(peak_mib),
                "peak_rss_share_of_file": round(peak_mib * 1024**2 / size, 3),
                "pyarrow_read_write_seconds": round(baseline, 1),
                "throughput_vs_pyarrow": round(baseline / ingest_seconds, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
