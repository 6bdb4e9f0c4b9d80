"""`helm template` output is accepted by a real API server (server-side dry run)."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO
from tests.plugins.kube import Cluster, kubectl_binary
from tests.unit.chart_render import helm

pytestmark = pytest.mark.integration

VARIANTS = {
    "defaults": [],
    # Roles go into watched namespaces, which must exist: {namespace} is the test's own.
    "namespaced-rbac": [
        "--set",
        "rbac.clusterWide=false",
        "--set",
        "watchNamespaces={{{namespace}}}",
    ],
    "dashboard": ["--set", "metrics.dashboard.enabled=true"],
    "network-policy": [
        "--set",
        "workloads.networkPolicy.enabled=true",
        "--set",
        "watchNamespaces={{{namespace}}}",
    ],
}


@pytest.mark.parametrize("arguments", VARIANTS.values(), ids=VARIANTS.keys())
def test_rendered_chart_applies_with_server_dry_run(
    crds: Cluster, namespace: str, arguments: list[str]
) -> None:
    rendered = subprocess.run(
        [
            helm(),
            "template",
            "modelyard",
            str(REPO / "charts" / "modelyard"),
            "--namespace",
            namespace,
            *(argument.format(namespace=namespace) for argument in arguments),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    applied = subprocess.run(
        [
            kubectl_binary(),
            f"--kubeconfig={crds.kubeconfig}",
            "apply",
            "--dry-run=server",
            "--server-side",
            "--field-manager=modelyard-test",
            # A release already in the cluster (when KUBECONFIG names yours) owns the
            # cluster-scoped objects; the question here is only whether the server accepts ours.
            "--force-conflicts",
            "-f",
            "-",
        ],
        input=rendered,
        capture_output=True,
        text=True,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert "deployment.apps/modelyard serverside-applied (server dry run)" in applied.stdout
