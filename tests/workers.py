"""Runs `modelyard-worker` commands in-process as a pod would; reads the termination message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.workloads.__main__ import main


@dataclass
class WorkerResult:
    exit_code: int
    message: dict[str, Any]


class Worker:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.log = tmp_path / "termination-log"
        monkeypatch.setenv("MODELYARD_TERMINATION_LOG", str(self.log))
        self.count = 0

    def __call__(self, command: str, spec: dict[str, Any] | str, *args: str) -> WorkerResult:
        self.count += 1
        spec_file = self.tmp_path / f"spec-{self.count}.yaml"
        spec_file.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
        self.log.unlink(missing_ok=True)
        code = main([command, "--spec", str(spec_file), *args])
        return WorkerResult(code, json.loads(self.log.read_text()))

    def ingest(self, spec: dict[str, Any] | str, name: str = "data") -> WorkerResult:
        return self("ingest", spec, "--name", name, "--namespace", "ml")

    def train(
        self, spec: dict[str, Any], dataset: dict[str, Any], run: str = "run-1", name: str = "tj"
    ) -> WorkerResult:
        return self(
            "train",
            spec,
            "--dataset-uri",
            dataset["uri"],
            "--dataset-version",
            dataset["version"],
            "--name",
            name,
            "--namespace",
            "ml",
            "--run",
            run,
        )


@dataclass
class ProcessResult(WorkerResult):
    peak_rss_bytes: int
    stderr: str


def run_worker_process(
    tmp_path: Path, command: str, spec: dict[str, Any], *args: str
) -> ProcessResult:
    """`modelyard-worker` in a child process, as in a pod, with its own peak RSS.

    The peak is the one the worker logs (VmHWM of its own program): the child's rusage would
    not do, since Linux carries the parent's high-water mark (this test process's) across fork
    and exec. The environment (S3 endpoint and credentials) is this process's, as the fixtures
    set it.
    """
    log = tmp_path / f"termination-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MODELYARD_SPEC": json.dumps(spec), "MODELYARD_TERMINATION_LOG": str(log)}
    process = subprocess.run(
        [sys.executable, "-m", "modelyard.workloads", command, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    peak = re.search(rf"^{command}: peak RSS (\d+) MiB$", process.stderr, re.MULTILINE)
    assert peak is not None, process.stderr[-2000:]
    return ProcessResult(
        exit_code=process.returncode,
        message=json.loads(log.read_text()),
        peak_rss_bytes=int(peak.group(1)) << 20,
        stderr=process.stderr,
    )
