"""Fail closed: with the chart's RBAC minus one permission (create jobs), the object that needs it
gets Ready=False/PermissionDenied naming the verb and resource, the log an error, and the rest of
the operator keeps working."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.chaos.conftest import OperatorFactory
from tests.chaos.objects import Objects, dataset, ready, training_job
from tests.kubelet import wait_for
from tests.plugins.kube import Cluster
from tests.unit.chart_render import render

pytestmark = pytest.mark.chaos

ACCOUNT = "modelyard-limited"


def chart_rules_without(group: str, resource: str, verb: str) -> list[dict[str, Any]]:
    """The rules the Helm chart grants the operator, less one verb on one resource."""
    roles = [doc for doc in render() if doc["kind"] in ("ClusterRole", "Role")]
    rules = copy.deepcopy([rule for role in roles for rule in role.get("rules") or []])
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return rules


def token_kubeconfig(admin: Path, token: str, path: Path) -> Path:
    """The admin kubeconfig's cluster, with a service account's token as the user."""
    config = yaml.safe_load(admin.read_text())
    config["users"] = [{"name": ACCOUNT, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = ACCOUNT
    path.write_text(yaml.safe_dump(config))
    return path


def limited_kubeconfig(
    cluster: Cluster, namespace: str, rules: list[dict[str, Any]], path: Path
) -> Path:
    with cluster.api_client() as api:
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": ACCOUNT}})
        rbac.create_namespaced_role(namespace, {"metadata": {"name": ACCOUNT}, "rules": rules})
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": ACCOUNT},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": ACCOUNT,
                },
                "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
            },
        )
        token = core.create_namespaced_service_account_token(
            ACCOUNT, namespace, {"spec": {"expirationSeconds": 3600}}
        ).status.token
    return token_kubeconfig(cluster.kubeconfig, token, path)


def test_missing_permission_fails_closed_with_a_stable_reason(
    crds: Cluster, namespace: str, operator_process: OperatorFactory, tmp_path: Path
) -> None:
    rules = chart_rules_without("batch", "jobs", "create")
    kubeconfig = limited_kubeconfig(crds, namespace, rules, tmp_path / "kubeconfig")
    operator = operator_process(kubeconfig=kubeconfig)
    operator.start()
    objects = Objects(crds.api_client(), namespace)

    objects.create(dataset("denied"))
    objects.create(training_job("waiting", "absent"))

    condition = wait_for(
        "Dataset denied Ready=False PermissionDenied",
        lambda: (lambda c: c if c and c["reason"] == "PermissionDenied" else None)(
            ready(objects.get("Dataset", "denied") or {})
        ),
    )
    assert condition["status"] == "False"
    assert 'cannot create resource "jobs"' in condition["message"], condition["message"]
    # Stopped until a human grants it, which Argo CD shows as Degraded, not as progress.
    conditions = {c["type"]: c for c in objects.get("Dataset", "denied")["status"]["conditions"]}
    assert conditions["Stalled"]["status"] == "True", conditions
    assert conditions["Stalled"]["reason"] == "PermissionDenied", conditions
    assert "Reconciling" not in conditions, conditions
    assert not objects.jobs(), "nothing was created without the permission"
    # The rest goes on: another object's reconcile still reports.
    wait_for(
        "TrainingJob waiting Ready=False DatasetNotFound",
        lambda: (
            (ready(objects.get("TrainingJob", "waiting") or {}) or {}).get("reason")
            == "DatasetNotFound"
        ),
    )
    assert operator.running(), "the operator kept running"
    assert "permission denied" in operator.logs()
