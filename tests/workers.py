"""Runs `modelyard-worker` commands in-process as a pod would; reads the termination message."""

from __future__ import annotations

import json
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
