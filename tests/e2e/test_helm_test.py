"""`helm test` on the installed release, as a cluster admin runs it after an install or upgrade:
its pods check the operator's metrics and send a prediction to a served model."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.conftest import EXAMPLES, REPO
from tests.e2e.chain import kubectl, wait_ready
from tests.e2e.conftest import OPERATOR_NAMESPACE, RELEASE
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.e2e


def test_helm_test_predicts_through_a_served_model(
    kube_node: Cluster, release: list[str], ml_namespace: str, custom: Any
) -> None:
    kubectl(kube_node, "apply", "-n", ml_namespace, "-f", str(EXAMPLES / "quickstart"))
    wait_ready(kube_node, ml_namespace, "modeldeployment/iris")
    subprocess.run(
        [
            *release,
            "upgrade",
            RELEASE,
            str(REPO / "charts" / "modelyard"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--reuse-values",
            "--set",
            "tests.modelDeployment.name=iris",
            "--set",
            f"tests.modelDeployment.namespace={ml_namespace}",
            "--set-json",
            f"tests.modelDeployment.instances={json.dumps([[5.1, 3.5, 1.4, 0.2]])}",
            "--wait",
        ],
        check=True,
    )
    tested = subprocess.run(
        # No --logs: the chart has Helm print each check's output (hook-output-log-policy),
        # and a passed test pod is deleted at once.
        [*release, "test", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--timeout", "3m"],
        capture_output=True,
        text=True,
        check=False,
    )
    print(tested.stdout, tested.stderr)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Phase:          Succeeded" in tested.stdout
    assert tested.stdout.count("Phase:          Succeeded") == 2, "metrics and prediction"
    # Helm prints the checks' output on stderr.
    output = tested.stdout + tested.stderr
    assert f"http://iris.{ml_namespace}.svc.cluster.local/v1/models/iris:predict: [0]" in output
    assert "the operator is ready" in output
