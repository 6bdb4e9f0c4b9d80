"""`modelyard report` against a real API server and a real S3 server, run as a user runs it: the
report a training run built (report.py, uploaded where the trainer puts it) is downloaded and its
findings printed; a report.html or plot changed in S3 after the run is refused. The statuses are
written through the status subresource as the operator writes them; no operator runs here."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from kubernetes import client
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from modelyard.api import GROUP, VERSION
from modelyard.exitcodes import EXIT_FAILED, EXIT_USAGE
from modelyard.storage import layout
from modelyard.storage.client import Storage
from modelyard.storage.digest import bytes_digest
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.modelcard import Feature
from modelyard.workloads.training.pipeline import build_pipeline
from modelyard.workloads.training.report import Report, build_report
from tests.conftest import EXAMPLES
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.integration

NAME = "iris-classifier"
UID = "0f3c9a52-1111-4222-8333-444455556666"
NOW = "2026-12-05T10:00:00Z"


@pytest.fixture(scope="module")
def built() -> Report:
    """A real report of a classifier with a feature that gives the label away."""
    x, y = make_classification(
        n_samples=600, n_features=4, n_informative=3, n_redundant=0, random_state=0
    )
    x = np.column_stack([x, y.astype(float)])
    names = ["f0", "f1", "f2", "f3", "refund_issued"]
    pipeline = build_pipeline([Feature(name=n, type="float") for n in names], LogisticRegression())
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0, stratify=y)
    pipeline.fit(x_train, y_train)
    return build_report(
        pipeline=pipeline,
        task="classification",
        feature_names=names,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        metrics={"accuracy": 1.0},
        leaderboard=[],
        title=f"{NAME} run-2",
    )


class TrainingJobs:
    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        self.custom, self.namespace = custom, namespace
        document = yaml.safe_load((EXAMPLES / "quickstart" / "trainingjob.yaml").read_text())
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", document)

    def set_runs(self, runs: list[dict[str, Any]], latest: str | None) -> None:
        status: dict[str, Any] = {"observedGeneration": 1, "runs": runs, "latestRun": latest}
        status["phase"] = "Succeeded" if latest else "Failed"
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, "trainingjobs", NAME, {"status": status}
        )


@pytest.fixture
def trainingjobs(crds: Cluster, namespace: str) -> Iterator[TrainingJobs]:
    with crds.api_client() as api:
        yield TrainingJobs(client.CustomObjectsApi(api), namespace)


def report_prefix(bucket: str, namespace: str, run: str) -> S3Uri:
    return layout.model_prefix(S3Uri(bucket), namespace, NAME, UID, run).join(layout.REPORT_DIR)


def upload(storage: Storage, prefix: S3Uri, report: Report) -> dict[str, Any]:
    """Puts the files where the trainer does; the run's status.report, as the operator records
    it from the trainer's summary."""
    for name, data in report.files.items():
        storage.put_bytes(prefix.join(name), data)
    return {
        "uri": str(prefix.join(layout.REPORT_FILE)),
        "digest": bytes_digest(report.files[layout.REPORT_FILE]),
        "plots": sorted(name for name in report.files if name.endswith(".png")),
        "findings": report.findings,
    }


def succeeded(run: str, report: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": run, "phase": "Succeeded", "startedAt": NOW, "finishedAt": NOW}
    if report:
        entry["report"] = report
    return entry


def modelyard(
    kube: Cluster, namespace: str, *args: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "modelyard.cli", "report", *args),
            *("--kubeconfig", str(kube.kubeconfig), "-n", namespace),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=cwd,
    )


def test_the_report_of_the_latest_run_is_saved_and_its_findings_printed(
    kube: Cluster,
    namespace: str,
    trainingjobs: TrainingJobs,
    s3_env: dict[str, str],
    storage: Storage,
    built: Report,
    tmp_path: Path,
) -> None:
    bucket = s3_env["MODELYARD_S3_BUCKET"]
    report = upload(storage, report_prefix(bucket, namespace, "run-2"), built)
    trainingjobs.set_runs([succeeded("run-1"), succeeded("run-2", report)], latest="run-2")

    shown = modelyard(kube, namespace, NAME, env={**os.environ, **s3_env}, cwd=tmp_path)

    assert shown.returncode == 0, shown.stderr
    directory = tmp_path / f"{NAME}-run-2-report"
    assert sorted(p.name for p in directory.iterdir()) == sorted(built.files)
    for name, data in built.files.items():
        assert (directory / name).read_bytes() == data
    assert f"trainingjob/{NAME} run-2: report saved to {directory.relative_to(tmp_path)}" in (
        shown.stdout
    )
    assert "PossibleLeakage: feature 'refund_issued' alone predicts the target" in shown.stdout


def test_a_report_changed_in_s3_after_the_run_is_refused(
    kube: Cluster,
    namespace: str,
    trainingjobs: TrainingJobs,
    s3_env: dict[str, str],
    storage: Storage,
    built: Report,
    tmp_path: Path,
) -> None:
    bucket = s3_env["MODELYARD_S3_BUCKET"]
    prefix = report_prefix(bucket, namespace, "run-2")
    report = upload(storage, prefix, built)
    trainingjobs.set_runs([succeeded("run-2", report)], latest="run-2")
    env = {**os.environ, **s3_env}
    page = built.files[layout.REPORT_FILE].replace(b"<h1>", b"<h1>All good! ")
    storage.put_bytes(prefix.join(layout.REPORT_FILE), page)

    shown = modelyard(kube, namespace, f"tj/{NAME}", "--run", "2", env=env, cwd=tmp_path)

    assert shown.returncode == EXIT_FAILED
    assert (
        f"report.html is not the report the run recorded: its sha256 is {bytes_digest(page)}"
        in (shown.stderr)
    )
    assert not (tmp_path / f"{NAME}-run-2-report" / layout.REPORT_FILE).exists()

    # The page is back, a plot is not the one it pins.
    storage.put_bytes(prefix.join(layout.REPORT_FILE), built.files[layout.REPORT_FILE])
    storage.put_bytes(prefix.join("roc.png"), built.files["confusion_matrix.png"])
    shown = modelyard(kube, namespace, NAME, "--run", "run-2", env=env, cwd=tmp_path)
    assert shown.returncode == EXIT_FAILED
    assert "roc.png is not the plot report.html pins" in shown.stderr


def test_runs_without_a_report_and_missing_runs_are_one_line_each(
    kube: Cluster,
    namespace: str,
    trainingjobs: TrainingJobs,
    s3_env: dict[str, str],
    tmp_path: Path,
) -> None:
    failed = {"id": "run-2", "phase": "Failed", "reason": "TrainingFailed", "message": "boom"}
    trainingjobs.set_runs([succeeded("run-1"), failed], latest="run-1")
    env = {**os.environ, **s3_env}

    def error(*args: str) -> tuple[int, str]:
        shown = modelyard(kube, namespace, *args, env=env, cwd=tmp_path)
        return shown.returncode, shown.stderr.strip()

    assert error(NAME) == (
        EXIT_FAILED,
        f"error: trainingjob/{NAME} run-1 has no evaluation report: it was trained before runs "
        "had evaluation reports; train again for one",
    )
    assert error(NAME, "--run", "2") == (
        EXIT_FAILED,
        f"error: trainingjob/{NAME} run-2 has no evaluation report: it failed "
        "(TrainingFailed: boom)",
    )
    assert error(NAME, "--run", "7") == (
        EXIT_FAILED,
        f"error: trainingjob/{NAME} has no run run-7 (it has run-1, run-2)",
    )
    assert error("nope") == (
        EXIT_FAILED,
        f"error: trainingjob/nope not found in namespace {namespace}",
    )
    assert error(NAME, "--run", "latest")[0] == EXIT_USAGE


def test_without_s3_settings_the_error_names_the_variables_to_set(
    kube: Cluster,
    namespace: str,
    trainingjobs: TrainingJobs,
    built: Report,
    tmp_path: Path,
) -> None:
    report = {
        "uri": f"s3://modelyard/namespaces/{namespace}/models/{NAME}/{UID}/run-1/report/report.html",
        "digest": bytes_digest(built.files[layout.REPORT_FILE]),
        "plots": ["roc.png"],
    }
    trainingjobs.set_runs([succeeded("run-1", report)], latest="run-1")
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELYARD_S3_"))}

    shown = modelyard(kube, namespace, NAME, env=bare, cwd=tmp_path)

    assert shown.returncode == EXIT_FAILED
    assert shown.stderr.startswith("error: the report is in S3, which is not configured here: ")
    assert "MODELYARD_S3_ENDPOINT" in shown.stderr and "AWS_ACCESS_KEY_ID" in shown.stderr
