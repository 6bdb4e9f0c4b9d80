"""The `modelyard` command as a user runs it: version, CRDs, manifest validation."""

from pathlib import Path

import pytest
import yaml

from modelyard import __version__
from modelyard.cli import main
from tests.conftest import EXAMPLES, REPO


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"modelyard {__version__}"


def test_crds_prints_what_is_checked_in(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    checked_in = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    key = lambda crd: crd["metadata"]["name"]  # noqa: E731
    assert sorted(printed, key=key) == sorted(checked_in, key=key)


def test_crds_output_dir_writes_one_file_per_kind(tmp_path: Path) -> None:
    assert main(["crds", "--output-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "modelyard.dev_datasets.yaml",
        "modelyard.dev_modeldeployments.yaml",
        "modelyard.dev_trainingjobs.yaml",
    ]


def test_validate_accepts_the_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted((EXAMPLES / "quickstart").glob("*.yaml"))]
    assert main(["validate", *files]) == 0
    assert "TrainingJob/iris-classifier valid" in capsys.readouterr().out


def test_validate_names_the_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: modelyard.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\n"
        "spec:\n  model: {trainingJobRef: {name: t}}\n  canary:\n"
        "    model: {trainingJobRef: {name: t2}}\n    trafficPercent: 101\n"
    )
    assert main(["validate", str(bad)]) == 1
    assert "spec.canary.trafficPercent: Input should be less than or equal to 100" in (
        capsys.readouterr().err
    )
