"""The `modelyard` command on the whole chain: wait for the quickstart, predict through the API
server's service proxy from CSV and JSON, and read the training pod's logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelyard.exitcodes import EXIT_USAGE
from tests.conftest import EXAMPLES
from tests.plugins.kube import Cluster, kubectl_binary

pytestmark = pytest.mark.e2e

# Two iris flowers with the dataset's own column names, and the label column a dataset file has.
CSV = (
    "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm),target\n"
    "5.1,3.5,1.4,0.2,0\n"
    "6.3,3.3,6.0,2.5,2\n"
)


def modelyard(cluster: Cluster, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard.cli",
            *args,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-n",
            namespace,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _summary(log: str) -> dict[str, Any]:
    """The JSON summary a workload prints when it ends (also its termination message)."""
    last = [line for line in log.splitlines() if line.startswith("{")][-1]
    summary: dict[str, Any] = json.loads(last)
    return summary


def test_wait_predict_and_logs_on_the_quickstart(
    kube_node: Cluster, ml_namespace: str, tmp_path: Path
) -> None:
    subprocess.run(
        [
            kubectl_binary(),
            f"--kubeconfig={kube_node.kubeconfig}",
            "apply",
            "-n",
            ml_namespace,
            "-f",
            str(EXAMPLES / "quickstart"),
        ],
        check=True,
        capture_output=True,
    )
    waited = modelyard(kube_node, ml_namespace, "wait", "mdep/iris", "--timeout", "10m")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "ready   trainingjob/iris-classifier: Succeeded" in waited.stdout
    assert waited.stdout.splitlines()[-1] == (
        "ready: dataset/iris → trainingjob/iris-classifier → modeldeployment/iris"
    )

    rows_csv = tmp_path / "rows.csv"
    rows_csv.write_text(CSV)
    from_csv = modelyard(
        kube_node, ml_namespace, "predict", "mdep/iris", "--data", str(rows_csv), "-o", "json"
    )
    assert from_csv.returncode == 0, from_csv.stderr
    assert json.loads(from_csv.stdout)["predictions"] == [0, 2]

    rows_json = tmp_path / "rows.json"
    rows_json.write_text(json.dumps([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]))
    table = modelyard(
        kube_node, ml_namespace, "predict", "mdep/iris", "-d", str(rows_json), "--probabilities"
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ROW", "PREDICTION", "P(0)", "P(1)", "P(2)"]
    assert [line.split()[:2] for line in lines[1:]] == [["1", "0"], ["2", "2"]]

    misfit = tmp_path / "misfit.json"
    misfit.write_text(json.dumps([{"petal length (cm)": 1.4}]))
    refused = modelyard(kube_node, ml_namespace, "predict", "mdep/iris", "-d", str(misfit))
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "error: modeldeployment/iris: the model server refused the request (422): missing feature"
    )

    logs = modelyard(kube_node, ml_namespace, "logs", "tj/iris-classifier", "--run", "1")
    assert logs.returncode == 0, logs.stderr
    summary = _summary(logs.stdout)
    assert summary["run"] == "run-1"
    assert summary["status"] == "Succeeded"

    follow = modelyard(kube_node, ml_namespace, "logs", "tj/iris-classifier", "--follow")
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout == logs.stdout  # the pod has ended: following prints it all and stops

    ingest = modelyard(kube_node, ml_namespace, "logs", "dset/iris")
    assert ingest.returncode == 0, ingest.stderr
    assert _summary(ingest.stdout)["status"] == "Succeeded"

    lineage = modelyard(kube_node, ml_namespace, "lineage", "mdep/iris")
    assert lineage.returncode == 0, lineage.stderr
    assert "└── modeldeployment/iris  Ready (Serving)" in lineage.stdout

    status = modelyard(kube_node, ml_namespace, "status")
    assert status.returncode == 0, status.stderr
    assert [line.split()[:2] for line in status.stdout.splitlines()[1:]] == [
        ["dataset/iris", "Ready"],
        ["trainingjob/iris-classifier", "Succeeded"],
        ["modeldeployment/iris", "Ready"],
    ]
    # What a user sees, in the log of a run with -s (docs/cli.md shows the same).
    for shown in (waited, status, lineage, table, logs):
        print(f"\n$ modelyard {' '.join(shown.args[3:-4])}\n{shown.stdout}")

    usage = modelyard(kube_node, ml_namespace, "logs", "mdep/iris")
    assert usage.returncode == EXIT_USAGE
