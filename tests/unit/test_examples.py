"""The scenario examples and CI templates in examples/: manifests valid, data generators seeded and
offline, templates well-formed, and every `modelyard` command they show accepted by the CLI."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from kubernetes.utils import parse_quantity

from modelyard.cli import main
from modelyard.cli.main import build_parser
from tests.conftest import EXAMPLES

SCENARIOS = [
    "medical-diagnosis",
    "credit-scoring",
    "demand-forecasting",
    "predictive-maintenance",
    "model-selection",
    "transaction-fraud",
]
# The CSV each generator writes, by a call into the script itself (no S3, no subprocess).
GENERATED: dict[str, Callable[[ModuleType], bytes]] = {
    "credit-scoring": lambda script: script.transactions(),
    "demand-forecasting": lambda script: script.sales(),
    "predictive-maintenance": lambda script: script.to_csv(script.readings(1)),
    "model-selection": lambda script: script.subscribers(),
}
CI = EXAMPLES / "ci"
CI_YAML = [
    CI / ".gitlab-ci.yml",
    CI / "github-actions.yml",
    *sorted((CI / "gitops").glob("*.y*ml")),
]
CI_PIPELINES = [CI / ".gitlab-ci.yml", CI / "github-actions.yml", CI / "Jenkinsfile"]
# Everything that shows a user `modelyard …` commands to copy.
WITH_COMMANDS = [
    *CI_PIPELINES,
    CI / "gitops" / "github-actions.yml",
    *(EXAMPLES / example / "README.md" for example in SCENARIOS),
    CI / "README.md",
]


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _script(example: str) -> ModuleType:
    """examples/<example>/generate.py, imported as a module."""
    spec = importlib.util.spec_from_file_location(
        f"generate_{example.replace('-', '_')}", EXAMPLES / example / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


@pytest.mark.parametrize("example", SCENARIOS)
def test_each_scenario_has_a_readme_and_valid_manifests(
    example: str, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = EXAMPLES / example
    assert (directory / "README.md").is_file()
    assert main(["validate", str(directory / "manifests.yaml")]) == 0
    kinds = [line.split(": ")[1].split("/")[0] for line in capsys.readouterr().out.splitlines()]
    assert kinds == ["Dataset", "TrainingJob", "ModelDeployment"]


@pytest.mark.parametrize("example", sorted(GENERATED))
def test_generated_data_is_the_same_on_every_run_and_has_the_datasets_columns(
    example: str,
) -> None:
    script = _script(example)
    data = GENERATED[example](script)
    assert GENERATED[example](script) == data
    dataset = _documents(EXAMPLES / example / "manifests.yaml")[0]
    assert dataset["spec"]["source"]["s3"]["uri"].endswith(script.KEY)
    rows = _rows(data)
    assert len(rows) > 1000
    expected = {dataset["spec"]["target"]} | {
        c["name"] for c in dataset["spec"]["schema"]["columns"]
    }
    assert expected <= set(rows[0])


def test_transaction_fraud_files_are_the_same_on_every_run_with_the_datasets_columns() -> None:
    script = _script("transaction-fraud")
    table = script.transactions(2000, script.SEED)
    assert script.parquet(script.transactions(2000, script.SEED)) == script.parquet(table)
    dataset = _documents(EXAMPLES / "transaction-fraud" / "manifests.yaml")[0]
    assert dataset["spec"]["source"]["s3"]["uri"].endswith(script.PREFIX)
    columns = [c["name"] for c in dataset["spec"]["schema"]["columns"]]
    assert table.column_names == columns
    assert 0.01 < sum(table.column("fraud").to_pylist()) / table.num_rows < 0.05


def test_transaction_fraud_data_is_larger_than_one_workers_memory() -> None:
    """The example's point: its data in memory exceed the memory limit of any one worker."""
    script = _script("transaction-fraud")
    per_row = script.transactions(100_000, script.SEED).nbytes / 100_000
    training = _documents(EXAMPLES / "transaction-fraud" / "manifests.yaml")[1]["spec"]
    limit = parse_quantity(training["workers"]["resources"]["limits"]["memory"])
    assert training["workers"]["replicas"] == 3 and training["workers"]["dataParallel"]
    assert script.ROWS * per_row > 1.05 * float(limit)


def test_fraud_is_rare_in_the_credit_scoring_data() -> None:
    fraud = [int(row["fraud"]) for row in _rows(_script("credit-scoring").transactions())]
    assert 0.01 < sum(fraud) / len(fraud) < 0.05


def test_predictive_maintenance_version_2_shifts_temperature_and_vibration() -> None:
    script = _script("predictive-maintenance")
    means: dict[int, dict[str, float]] = {}
    for version in (1, 2):
        rows = script.readings(version)
        means[version] = {
            column: sum(float(row[column]) for row in rows) / len(rows)
            for column in ("temperature_c", "vibration", "pressure_bar")
        }
    assert means[2]["temperature_c"] - means[1]["temperature_c"] > 10
    assert means[2]["vibration"] > 2 * means[1]["vibration"]
    assert abs(means[2]["pressure_bar"] - means[1]["pressure_bar"]) < 0.1


def test_predictive_maintenance_requests_carry_features_without_the_label() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "predictive-maintenance" / "generate.py"),
            "--version",
            "2",
            "--requests",
            "3",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    body = json.loads(result.stdout)
    assert len(body["instances"]) == 3
    assert set(body["instances"][0]) == {
        "pump_model",
        "hours_since_service",
        "temperature_c",
        "vibration",
        "pressure_bar",
        "rpm",
    }


@pytest.mark.parametrize("path", CI_YAML, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_ci_templates_are_yaml(path: Path) -> None:
    assert _documents(path)


def _code_lines(path: Path) -> list[str]:
    """The lines that are code: all of a script, the fenced blocks of Markdown."""
    lines = path.read_text().splitlines()
    if path.suffix != ".md":
        return lines
    fences = [i for i, line in enumerate(lines) if line.lstrip().startswith("```")]
    return [
        line
        for start, end in zip(fences[::2], fences[1::2], strict=False)
        for line in lines[start + 1 : end]
    ]


def _modelyard_commands(lines: list[str]) -> list[list[str]]:
    """Each `modelyard …` command in code lines, up to a pipe or redirection; comments skipped."""
    commands = []
    for line in lines:
        if re.match(r"\s*(#|//)", line):
            continue
        for match in re.finditer(r"(?:^|(?<=[\s`(]))modelyard (?=[a-z])", line):
            lexer = shlex.shlex(line[match.start() :], posix=True, punctuation_chars="|;&<>`")
            lexer.whitespace_split = True
            words = []
            for word in lexer:
                if set(word) <= set("|;&<>`"):
                    break
                words.append(word)
            commands.append(words)
    return commands


def test_the_command_extractor_stops_at_shell_operators() -> None:
    text = 'modelyard.dev/commit: x\n  - modelyard wait "mdep/$X" -n "$NS" > out.json || true\n'
    assert _modelyard_commands(text.splitlines()) == [["modelyard", "wait", "mdep/$X", "-n", "$NS"]]


@pytest.mark.parametrize("path", WITH_COMMANDS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_modelyard_command_shown_is_accepted_by_the_cli(path: Path) -> None:
    commands = _modelyard_commands(_code_lines(path))
    parser = build_parser()
    for command in commands:
        try:
            parser.parse_args(command[1:])
        except SystemExit:
            pytest.fail(f"{path.name}: `{shlex.join(command)}` is not a valid modelyard command")


def test_ci_templates_wait_for_training_and_for_the_promotion_gate() -> None:
    for path in CI_PIPELINES:
        used = [command[1:3] for command in _modelyard_commands(_code_lines(path))]
        assert ["wait", "tj/$TRAININGJOB"] in used, path.name
        assert ["wait", "mdep/$ML_DEPLOYMENT"] in used, path.name


def test_render_gives_the_commit_its_own_training_job_and_points_the_deployment_at_it(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(CI / "render.py"),
            str(EXAMPLES / "credit-scoring" / "manifests.yaml"),
            "--commit",
            "1A2b3c4",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(result.stdout)
    by_kind = {d["kind"]: d for d in _documents(rendered)}
    training = by_kind["TrainingJob"]["metadata"]
    assert training["name"] == "fraud-detector-1a2b3c4"
    assert training["labels"] == {"modelyard.dev/commit": "1a2b3c4"}
    assert by_kind["ModelDeployment"]["spec"]["model"] == {
        "trainingJobRef": {"name": "fraud-detector-1a2b3c4"}
    }
    assert by_kind["ModelDeployment"]["spec"]["promotion"] == {"metric": "roc_auc", "minimum": 0.85}
    assert by_kind["Dataset"] == _documents(EXAMPLES / "credit-scoring" / "manifests.yaml")[0]
    assert main(["validate", str(rendered)]) == 0


def test_render_refuses_a_commit_that_cannot_name_an_object() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(CI / "render.py"),
            str(EXAMPLES / "credit-scoring" / "manifests.yaml"),
            "--commit",
            "feature/x",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "commit 'feature/x'" in result.stderr
