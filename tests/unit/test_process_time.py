"""A batch workload logs where its process spent its time, from exec to exit."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

LINE = re.compile(
    r"^ingest: process (?P<all>[\d.]+)s since exec: start-up (?P<startup>[\d.]+)s, "
    r"imports (?P<imports>[\d.]+)s, work (?P<work>[\d.]+)s$",
    re.MULTILINE,
)


def test_an_ingest_process_logs_start_up_imports_and_work(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("source: {builtin: {name: iris}}\n")
    # Without --name the workload stops at once with a usage error: its work is short.
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.workloads", "ingest", "--spec", str(spec)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "MODELYARD_TERMINATION_LOG": str(tmp_path / "log")},
    )
    assert result.returncode != 0
    found = LINE.search(result.stderr)
    assert found is not None, result.stderr
    seconds = {name: float(value) for name, value in found.groupdict().items()}
    # The ingest module pulls pyarrow and boto3: importing it is most of this short run.
    assert seconds["imports"] > seconds["work"]
    parts = seconds["startup"] + seconds["imports"] + seconds["work"]
    assert abs(parts - seconds["all"]) <= 0.02  # each figure is rounded to 10 ms
