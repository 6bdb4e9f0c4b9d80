"""The Helm chart: lints clean, renders valid objects for every supported shape of install,
runs the operator locked down and least-privileged, and refuses values it doesn't know."""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import kubernetes_validate
import pytest
import yaml

from modelyard.api.modeldeployment import ModelDeploymentSpec
from modelyard.config import OperatorConfig
from modelyard.resources.common import labels as workload_labels
from modelyard.resources.dask import COMPONENT as ENGINE_COMPONENT
from modelyard.resources.jobs import INGEST_COMPONENT, TRAIN_COMPONENT, Owner
from modelyard.resources.router import build_router
from modelyard.resources.serving import COMPONENT as SERVER_COMPONENT
from modelyard.resources.serving import MONITOR_PORT, ModelRef, build_deployment
from modelyard.resources.serving import PORT as SERVER_PORT
from tests.conftest import REPO
from tests.unit.chart_render import (
    CHART,
    FULLNAME,
    KUBE_VERSION,
    NAMESPACE,
    Manifest,
    of_kind,
    one,
    render,
    run_helm,
    template_error,
)

# Kinds whose schema kubernetes-validate doesn't know: custom resources of other projects.
FOREIGN_API_VERSIONS = {"monitoring.coreos.com/v1", "kopf.dev/v1"}
RBAC_KINDS = ("ClusterRole", "Role")

VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "namespaced-rbac": {"rbac.clusterWide": "false", "watchNamespaces": "{team-a,team-b}"},
    "two-replicas": {"replicaCount": "2", "peering.installCRDs": "true"},
    "two-replicas-namespaced": {
        "replicaCount": "2",
        "rbac.clusterWide": "false",
        "watchNamespaces": "{team-a}",
    },
    "metrics-all-on": {
        "metrics.serviceMonitor.enabled": "true",
        "metrics.podMonitor.enabled": "true",
        "metrics.prometheusRule.enabled": "true",
        "metrics.dashboard.enabled": "true",
    },
    "no-crds": {"crds.install": "false"},
    "network-policy": {"workloads.networkPolicy.enabled": "true", "watchNamespaces": "{team-a}"},
    "prediction-test": {"tests.modelDeployment.name": "iris"},
}


def _variants() -> list[Any]:
    return [pytest.param(values, id=name) for name, values in VARIANTS.items()]


def _deployment(
    values: dict[str, str] | None = None, document: dict[str, Any] | None = None
) -> Manifest:
    return one(render(values, document), "Deployment")


def _operator_container(
    values: dict[str, str] | None = None, document: dict[str, Any] | None = None
) -> Manifest:
    containers = _deployment(values, document)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    container: Manifest = containers[0]
    return container


def _env(
    values: dict[str, str] | None = None, document: dict[str, Any] | None = None
) -> dict[str, str]:
    container = _operator_container(values, document)
    return {item["name"]: item["value"] for item in container["env"]}


def _operator_objects(manifests: list[Manifest], *kinds: str) -> list[Manifest]:
    """The operator's own objects of these kinds (default: its roles), not the users' aggregated
    roles nor the uninstall hook's: the ones named after the release."""
    return [
        doc
        for kind in kinds or RBAC_KINDS
        for doc in of_kind(manifests, kind)
        if doc["metadata"]["name"] == FULLNAME
    ]


def _rules(manifests: list[Manifest]) -> list[Manifest]:
    return [rule for role in _operator_objects(manifests) for rule in role["rules"]]


def _granted(rules: list[Manifest], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in rules
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


# --- lint and render -------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_chart_lints_clean(strict: bool) -> None:
    args = ["lint", str(CHART)] + (["--strict"] if strict else [])
    result = run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_chart_metadata_matches_the_docs_and_the_crds() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    minimum = re.fullmatch(r">=(\d+)\.(\d+)\.0-0", chart["kubeVersion"])
    assert minimum, chart["kubeVersion"]
    supported = f"Kubernetes {minimum[1]}.{minimum[2]} or newer"
    for page in (CHART / "README.md", REPO / "docs" / "operations.md"):
        assert supported in page.read_text(), page
    assert tuple(map(int, KUBE_VERSION.split(".")[:2])) >= (int(minimum[1]), int(minimum[2]))
    listed = yaml.safe_load(chart["annotations"]["artifacthub.io/crds"])
    generated = [
        yaml.safe_load(p.read_text()) for p in sorted((CHART / "files/crds").glob("*.yaml"))
    ]
    assert sorted((c["name"], c["kind"], c["version"]) for c in listed) == sorted(
        (crd["metadata"]["name"], crd["spec"]["names"]["kind"], crd["spec"]["versions"][0]["name"])
        for crd in generated
    )


@pytest.mark.parametrize("values", _variants())
def test_every_rendered_object_is_valid_for_the_target_kubernetes(values: dict[str, str]) -> None:
    manifests = render(values)
    assert manifests
    for doc in manifests:
        if doc["apiVersion"] in FOREIGN_API_VERSIONS:
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("values", _variants())
def test_namespaced_objects_go_to_the_release_or_a_watched_namespace(
    values: dict[str, str],
) -> None:
    watched = values.get("watchNamespaces", "{}").strip("{}").split(",")
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
    for doc in render(values):
        if doc["kind"] in cluster_scoped or doc["kind"] == "ClusterKopfPeering":
            assert "namespace" not in doc["metadata"], doc["kind"]
        else:
            assert doc["metadata"]["namespace"] in [NAMESPACE, *watched], doc["kind"]


# --- the operator pod --------------------------------------------------------------------------


def _assert_restricted(pod: Manifest) -> None:
    """The `restricted` Pod Security Standard, as docs/security.md lists it."""
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in context
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]


def test_operator_pod_meets_the_restricted_pod_security_standard() -> None:
    _assert_restricted(_deployment()["spec"]["template"]["spec"])


def test_operator_runs_the_modelyard_command_with_probes_on_healthz() -> None:
    container = _operator_container()
    assert container["image"] == "modelyard/operator:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["modelyard", "operator"]
    assert "--liveness-port=8080" in container["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http-metrics": 8000, "health": 8080}


TOLERATIONS = [{"key": "pool", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
            ]
        }
    }
}
DIGEST = "sha256:" + "ab" * 32


def test_operator_settings_reach_the_operator_as_it_reads_them() -> None:
    document = {
        "watchNamespaces": ["team-a", "team-b"],
        "storage": {
            "endpoint": "http://minio.storage:9000",
            "bucket": "ml",
            "prefix": "prod",
            "region": "eu-west-1",
            "credentialsSecret": "s3-creds",
            "servingCredentialsSecret": "s3-read-only",
            "allowOverride": True,
            "readableLocations": {
                "*": ["s3://public-datasets/"],
                "team-a": ["s3://shared/team-a/", "s3://archive/a/"],
            },
        },
        "workloads": {
            "imagePullSecrets": ["regcred"],
            "imagePullPolicy": "Always",
            "allowedImages": ["registry.example/ml/custom", f"registry.example:5000/x@{DIGEST}"],
            "resources": {
                "requests": {"cpu": "250m", "memory": "1Gi"},
                "limits": {"cpu": 2, "memory": "4Gi"},
            },
            "tmpSize": "20Gi",
            "ingestDeadlineSeconds": 600,
            "maxSearchTrials": 50,
            "serverWorkers": 3,
            "jobTTLSeconds": 600,
            "tolerations": TOLERATIONS,
            "affinity": AFFINITY,
            "http": {
                "allowedNetworks": ["10.20.0.0/16", "fd00:1::/64"],
                "deniedNetworks": ["203.0.113.0/24"],
            },
        },
        "metrics": {"port": 9100},
    }
    config = OperatorConfig.from_env(_env(document=document))
    assert config == OperatorConfig(
        namespaces=("team-a", "team-b"),
        image_pull_policy="Always",
        image_pull_secrets=("regcred",),
        allowed_images=("registry.example/ml/custom", f"registry.example:5000/x@{DIGEST}"),
        s3_endpoint="http://minio.storage:9000",
        s3_bucket="ml",
        s3_prefix="prod",
        s3_region="eu-west-1",
        s3_credentials_secret="s3-creds",
        s3_serving_credentials_secret="s3-read-only",
        allow_storage_override=True,
        readable_locations=(
            ("*", ("s3://public-datasets/",)),
            ("team-a", ("s3://archive/a/", "s3://shared/team-a/")),
        ),
        http_allowed_networks=("10.20.0.0/16", "fd00:1::/64"),
        http_denied_networks=("203.0.113.0/24",),
        workload_cpu_request="250m",
        workload_memory_request="1Gi",
        workload_cpu_limit="2",
        workload_memory_limit="4Gi",
        workload_tmp_size="20Gi",
        ingest_deadline_seconds=600,
        max_search_trials=50,
        server_workers=3,
        job_ttl_seconds=600,
        workload_tolerations=json.dumps(TOLERATIONS, sort_keys=True),
        workload_affinity=json.dumps(AFFINITY, sort_keys=True),
        metrics_port=9100,
        trainer_image="modelyard/trainer:0.1.0",
        server_image="modelyard/server:0.1.0",
        router_image="modelyard/router:0.1.0",
    )
    assert config.locations_readable_by("team-a") == (
        "s3://public-datasets/",
        "s3://archive/a/",
        "s3://shared/team-a/",
    )


def test_settings_left_empty_are_not_passed_at_all() -> None:
    # An empty JSON setting would make the operator parse "{}" or "[]": leaving the variable
    # out keeps its own default, and `kubectl describe` shows only what was set.
    env = _env()
    for name in (
        "MODELYARD_READABLE_LOCATIONS",
        "MODELYARD_WORKLOAD_TOLERATIONS",
        "MODELYARD_WORKLOAD_AFFINITY",
    ):
        assert name not in env, name


def test_workload_node_selector_reaches_the_operator_as_key_value_pairs() -> None:
    env = _env({"workloads.nodeSelector.pool": "ml", "workloads.nodeSelector.zone": "a"})
    assert env["MODELYARD_WORKLOAD_NODE_SELECTOR"] == "pool=ml,zone=a"
    assert "MODELYARD_WORKLOAD_NODE_SELECTOR" not in _env()


def test_default_values_give_the_operator_its_own_defaults() -> None:
    assert OperatorConfig.from_env(_env()) == OperatorConfig()


def test_workload_images_follow_the_operator_image_repository_and_tag() -> None:
    env = _env({"image.repository": "registry.example/ml/operator", "image.tag": "1.2.3"})
    assert env["MODELYARD_TRAINER_IMAGE"] == "registry.example/ml/trainer:1.2.3"
    assert env["MODELYARD_SERVER_IMAGE"] == "registry.example/ml/server:1.2.3"
    assert env["MODELYARD_ROUTER_IMAGE"] == "registry.example/ml/router:1.2.3"
    explicit = _env({"workloads.serverImage": "mine/server:dev"})
    assert explicit["MODELYARD_SERVER_IMAGE"] == "mine/server:dev"


def test_one_replica_runs_standalone_and_is_replaced_not_overlapped() -> None:
    assert "--standalone" in _operator_container()["args"]
    assert _deployment()["spec"]["strategy"] == {"type": "Recreate"}
    assert not [doc for doc in render() if doc["apiVersion"] == "kopf.dev/v1"]


def test_two_replicas_elect_a_leader_through_a_cluster_kopf_peering() -> None:
    manifests = render({"replicaCount": "2"})
    assert "--standalone" not in _operator_container({"replicaCount": "2"})["args"]
    assert "strategy" not in one(manifests, "Deployment")["spec"]
    assert one(manifests, "ClusterKopfPeering")["metadata"]["name"] == "modelyard"
    assert _granted(_rules(manifests), "kopf.dev", "clusterkopfpeerings") == {
        "list",
        "watch",
        "patch",
    }
    # A cluster-wide operator peers through the ClusterKopfPeering only.
    assert _granted(_rules(manifests), "kopf.dev", "kopfpeerings") == set()
    # kopf's CRDs are not ours: only on request.
    crds = {doc["metadata"]["name"] for doc in of_kind(manifests, "CustomResourceDefinition")}
    assert not {name for name in crds if name.endswith(".kopf.dev")}


def test_an_operator_of_named_namespaces_with_cluster_rbac_peers_in_each_of_them() -> None:
    # kopf peers per namespace whenever it watches named ones, whatever the RBAC's kind.
    manifests = render({"replicaCount": "2", "watchNamespaces": "{a,b}"})
    assert sorted(p["metadata"]["namespace"] for p in of_kind(manifests, "KopfPeering")) == [
        "a",
        "b",
    ]
    assert not of_kind(manifests, "ClusterKopfPeering")
    assert _granted(_rules(manifests), "kopf.dev", "kopfpeerings") == {"list", "watch", "patch"}
    assert _granted(_rules(manifests), "kopf.dev", "clusterkopfpeerings") == set()


def test_peering_crds_are_installed_on_request_and_peering_waits_for_them() -> None:
    manifests = render({"replicaCount": "2", "peering.installCRDs": "true"})
    crds = {
        doc["metadata"]["name"]: doc["spec"]["scope"]
        for doc in of_kind(manifests, "CustomResourceDefinition")
        if doc["spec"]["group"] == "kopf.dev"
    }
    assert crds == {
        "kopfpeerings.kopf.dev": "Namespaced",
        "clusterkopfpeerings.kopf.dev": "Cluster",
    }
    peering = one(manifests, "ClusterKopfPeering")
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def test_namespaced_operator_with_replicas_peers_in_each_watched_namespace() -> None:
    values = {"replicaCount": "3", "rbac.clusterWide": "false", "watchNamespaces": "{a,b}"}
    manifests = render(values)
    peerings = of_kind(manifests, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["a", "b"]
    assert {p["metadata"]["name"] for p in peerings} == {"modelyard"}
    assert not of_kind(manifests, "ClusterKopfPeering")
    for role in _operator_objects(manifests, "Role"):
        assert _granted(role["rules"], "kopf.dev", "kopfpeerings") == {"list", "watch", "patch"}


# --- RBAC -------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", _variants())
def test_rbac_has_no_wildcards_and_secrets_create_only(values: dict[str, str]) -> None:
    manifests = render(values)
    assert _rules(manifests)
    every_rule = [
        rule for kind in RBAC_KINDS for role in of_kind(manifests, kind) for rule in role["rules"]
    ]
    for rule in every_rule:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        if "secrets" in rule["resources"]:  # a run's TLS Secret: created, never read
            assert rule["verbs"] == ["create"], rule
        assert "nonResourceURLs" not in rule, rule
    for rule in _rules(manifests):
        assert "resourceNames" not in rule, rule


def test_cluster_role_grants_what_the_operator_does() -> None:
    manifests = render()
    rules = _rules(manifests)
    assert not _operator_objects(manifests, "Role")
    for kind in ("datasets", "trainingjobs", "modeldeployments"):
        assert _granted(rules, "modelyard.dev", kind) == {"get", "list", "watch", "patch"}
        assert _granted(rules, "modelyard.dev", f"{kind}/status") == {"patch"}
        assert _granted(rules, "modelyard.dev", f"{kind}/finalizers") == {"update"}
    assert _granted(rules, "batch", "jobs") == {"get", "list", "watch", "create"}
    assert _granted(rules, "", "pods") == {"list", "watch"}
    assert _granted(rules, "", "pods/log") == {"get"}
    assert _granted(rules, "", "secrets") == {"create"}
    assert _granted(rules, "kubernetes.dask.org", "daskclusters") == {
        "get",
        "list",
        "create",
        "delete",
    }
    assert _granted(rules, "apps", "replicasets") == {"list"}
    assert _granted(rules, "apps", "deployments") == {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    }
    assert _granted(rules, "", "services") == {"get", "create", "patch", "delete"}
    assert _granted(rules, "", "endpoints") == {"get"}
    assert _granted(rules, "discovery.k8s.io", "endpointslices") == {"list"}
    assert _granted(rules, "", "configmaps") == {"get", "create", "patch", "delete"}
    for group, resource in (
        ("autoscaling", "horizontalpodautoscalers"),
        ("policy", "poddisruptionbudgets"),
    ):
        assert _granted(rules, group, resource) == {"get", "create", "patch", "delete"}
    assert _granted(rules, "", "events") == {"create", "list", "watch"}
    assert _granted(rules, "events.k8s.io", "events") == set()
    # kopf's namespace and CRD scanning is off (controllers/runner.py): nothing cluster-scoped.
    assert _granted(rules, "", "namespaces") == set()
    assert _granted(rules, "apiextensions.k8s.io", "customresourcedefinitions") == set()
    assert len(rules) == 17
    binding = _operator_objects(manifests, "ClusterRoleBinding")[0]
    account = _operator_objects(manifests, "ServiceAccount")[0]["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
    ]


def test_namespaced_rbac_binds_a_role_in_each_watched_namespace_only() -> None:
    values = VARIANTS["namespaced-rbac"]
    manifests = render(values)
    assert not _operator_objects(manifests, "ClusterRole")
    assert not _operator_objects(manifests, "ClusterRoleBinding")
    roles = _operator_objects(manifests, "Role")
    bindings = _operator_objects(manifests, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == _rules(render())
    assert _env(values)["MODELYARD_NAMESPACES"] == "team-a,team-b"


AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
KINDS = ("datasets", "trainingjobs", "modeldeployments")
READ = {"get", "list", "watch"}
WRITE = {"create", "update", "patch", "delete", "deletecollection"}


def _user_roles(manifests: list[Manifest]) -> dict[str, Manifest]:
    """The aggregated ClusterRoles by the built-in role they join."""
    roles = {}
    for role in of_kind(manifests, "ClusterRole"):
        joins = [k[len(AGGREGATE) :] for k in role["metadata"]["labels"] if k.startswith(AGGREGATE)]
        if joins:
            assert len(joins) == 1, role["metadata"]
            roles[joins[0]] = role
    return roles


def test_users_of_view_edit_and_admin_get_modelyard_objects_through_aggregation() -> None:
    manifests = render()
    roles = _user_roles(manifests)
    assert sorted(roles) == ["admin", "edit", "view"]
    for builtin, role in roles.items():
        assert role["metadata"]["name"] == f"{FULLNAME}-{builtin}"
        assert role["metadata"]["labels"][AGGREGATE + builtin] == "true"
        rules = role["rules"]
        assert {g for rule in rules for g in rule["apiGroups"]} == {"modelyard.dev"}
        for kind in KINDS:
            expected = READ if builtin == "view" else READ | WRITE
            assert _granted(rules, "modelyard.dev", kind) == expected, (builtin, kind)
            # Status is the operator's: users read it and never write it.
            assert _granted(rules, "modelyard.dev", f"{kind}/status") == READ, (builtin, kind)
            assert _granted(rules, "modelyard.dev", f"{kind}/finalizers") == set()
    # They join the built-in roles; the chart binds them to nobody.
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in of_kind(manifests, kind):
            assert binding["roleRef"]["name"] not in {r["metadata"]["name"] for r in roles.values()}


def test_aggregated_roles_can_be_left_out() -> None:
    assert not _user_roles(render({"rbac.aggregateToDefaultRoles": "false"}))
    assert not _user_roles(render({"rbac.create": "false"}))


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def test_namespaced_install_needs_nothing_cluster_scoped() -> None:
    values = VARIANTS["namespaced-rbac"]
    manifests = render(values)
    # Nothing cluster-wide is bound to anyone: the only ClusterRoles are the users' aggregated
    # roles, which the chart binds to nobody.
    assert not of_kind(manifests, "ClusterRoleBinding")
    assert {r["metadata"]["name"] for r in of_kind(manifests, "ClusterRole")} == {
        r["metadata"]["name"] for r in _user_roles(manifests).values()
    }
    # So a namespace admin can install it when the CRDs are already there.
    alone = render({**values, "crds.install": "false", "rbac.aggregateToDefaultRoles": "false"})
    assert not [doc["kind"] for doc in alone if doc["kind"] in CLUSTER_SCOPED]


def test_namespaced_rbac_without_namespaces_is_refused_with_a_reason() -> None:
    assert "watchNamespaces" in template_error({"rbac.clusterWide": "false"})


# --- uninstall -------------------------------------------------------------------------------


HOOK = f"{FULLNAME}-uninstall"
HOOK_POLICY = "before-hook-creation,hook-succeeded"


def _hook_objects(manifests: list[Manifest]) -> list[Manifest]:
    return [
        doc
        for doc in manifests
        if doc["metadata"].get("annotations", {}).get("helm.sh/hook") == "pre-delete"
    ]


def _hook_grants(manifests: list[Manifest]) -> dict[tuple[str | None, str, str], set[str]]:
    """(namespace or None for cluster-wide, group, resource) → verbs the hook's account has."""
    roles = {
        (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]): doc
        for doc in _hook_objects(manifests)
        if doc["kind"] in RBAC_KINDS
    }
    grants: dict[tuple[str | None, str, str], set[str]] = {}
    for binding in _hook_objects(manifests):
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": HOOK, "namespace": NAMESPACE}
        ]
        namespace = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    key = (namespace, group, resource)
                    grants.setdefault(key, set()).update(rule["verbs"])
    return grants


def test_uninstall_runs_a_hook_that_stops_the_operator_and_releases_its_finalizers() -> None:
    manifests = render()
    job = one(_hook_objects(manifests), "Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == _operator_container()["image"]
    assert container["command"] == ["modelyard", "uninstall-cleanup"]
    # The Deployment it stops is the operator's own; no namespace list: all of them.
    assert f"--deployment={_deployment()['metadata']['name']}" in container["args"]
    assert f"--namespace={NAMESPACE}" in container["args"]
    assert not [arg for arg in container["args"] if arg.startswith("--watch-namespace")]
    assert pod["serviceAccountName"] == HOOK
    assert pod["restartPolicy"] == "Never"
    assert job["metadata"]["annotations"]["helm.sh/hook-output-log-policy"] == "hook-failed"
    _assert_restricted(pod)


def test_uninstall_hook_resources_exist_before_the_job_and_go_after_it_succeeded() -> None:
    hooks = _hook_objects(render())
    assert sorted(doc["kind"] for doc in hooks) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Job",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    weight = {
        doc["kind"]: int(doc["metadata"]["annotations"]["helm.sh/hook-weight"]) for doc in hooks
    }
    # Helm creates hooks by weight (a tie goes by name): the account, then its roles, then the
    # bindings, then the Job that uses them.
    assert weight["ServiceAccount"] < weight["Role"] == weight["ClusterRole"]
    assert weight["Role"] < weight["RoleBinding"] == weight["ClusterRoleBinding"] < weight["Job"]
    for doc in hooks:
        assert doc["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == HOOK_POLICY
        assert doc["metadata"]["labels"]["app.kubernetes.io/component"] == "uninstall"


def test_uninstall_hook_may_delete_only_the_operator_and_only_patch_the_objects() -> None:
    manifests = render()
    grants = _hook_grants(manifests)
    assert grants == {
        (NAMESPACE, "apps", "deployments"): {"get", "delete"},
        (NAMESPACE, "", "pods"): {"list"},
        (None, "modelyard.dev", "datasets"): {"get", "list", "patch"},
        (None, "modelyard.dev", "trainingjobs"): {"get", "list", "patch"},
        (None, "modelyard.dev", "modeldeployments"): {"get", "list", "patch"},
    }
    (deployments,) = [
        rule
        for doc in _hook_objects(manifests)
        if doc["kind"] == "Role"
        for rule in doc["rules"]
        if "deployments" in rule["resources"]
    ]
    assert deployments["resourceNames"] == [FULLNAME]


def test_namespaced_uninstall_hook_works_in_the_watched_namespaces_only() -> None:
    manifests = render(VARIANTS["namespaced-rbac"])
    job = one(_hook_objects(manifests), "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--watch-namespace")] == [
        "--watch-namespace=team-a",
        "--watch-namespace=team-b",
    ]
    grants = _hook_grants(manifests)
    assert {namespace for namespace, _, _ in grants} == {NAMESPACE, "team-a", "team-b"}
    assert grants[("team-b", "modelyard.dev", "datasets")] == {"get", "list", "patch"}
    assert not [doc for doc in _hook_objects(manifests) if doc["kind"].startswith("Cluster")]


@pytest.mark.parametrize(
    "values",
    [{"uninstall.releaseFinalizers": "false"}, {"rbac.create": "false"}],
    ids=["turned-off", "no-rbac"],
)
def test_uninstall_hook_can_be_left_out(values: dict[str, str]) -> None:
    assert not _hook_objects(render(values))


# --- network policy ------------------------------------------------------------------------------


S3_RULE = {
    "to": [{"ipBlock": {"cidr": "10.0.5.0/24"}}],
    "ports": [{"protocol": "TCP", "port": 9000}],
}
WORKLOAD_COMPONENTS = (INGEST_COMPONENT, TRAIN_COMPONENT, SERVER_COMPONENT, ENGINE_COMPONENT)


def _selects(selector: Manifest, pod_labels: dict[str, str]) -> bool:
    """What the API server does with a label selector (the operators the chart uses)."""
    if not selector.get("matchLabels", {}).items() <= pod_labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = pod_labels.get(expression["key"])
        if expression["operator"] == "In":
            if value not in expression["values"]:
                return False
        else:
            assert expression["operator"] == "NotIn", expression
            if value in expression["values"]:
                return False
    return True


def _egress_policies(manifests: list[Manifest]) -> list[Manifest]:
    return [
        p
        for p in of_kind(manifests, "NetworkPolicy")
        if p["metadata"]["name"].endswith("-workloads")
    ]


@dataclass(frozen=True)
class _Pod:
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int]  # container ports by name


def _deployment_pod(manifest: Manifest) -> _Pod:
    template = manifest["spec"]["template"]
    return _Pod(
        manifest["metadata"]["namespace"],
        template["metadata"]["labels"],
        {
            port["name"]: port["containerPort"]
            for container in template["spec"]["containers"]
            for port in container.get("ports", [])
        },
    )


def _peer_matches(peer: Manifest, policy_namespace: str, pod: _Pod) -> bool:
    if "ipBlock" in peer:
        return False  # the pods here are reached by selectors
    if "namespaceSelector" in peer:
        namespace = {"kubernetes.io/metadata.name": pod.namespace}
        if not _selects(peer["namespaceSelector"], namespace):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or _selects(peer["podSelector"], pod.labels)


def _port_matches(rule: Manifest, destination: _Pod, port: int) -> bool:
    if "ports" not in rule:
        return True
    for entry in rule["ports"]:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        # A named port is the destination pod's container port of that name.
        number = (
            destination.ports.get(entry["port"])
            if isinstance(entry["port"], str)
            else entry["port"]
        )
        if number is not None and number <= port <= entry.get("endPort", number):
            return True
    return False


def _reaches(policies: list[Manifest], source: _Pod, destination: _Pod, port: int) -> bool:
    """What a network plugin enforcing NetworkPolicies lets through (TCP): the source's egress
    and the destination's ingress must both allow the connection."""

    def allows(direction: str, selected: _Pod, peer: _Pod, peers_key: str) -> bool:
        applying = [
            p
            for p in policies
            if p["metadata"]["namespace"] == selected.namespace
            and direction in p["spec"]["policyTypes"]
            and _selects(p["spec"]["podSelector"], selected.labels)
        ]
        return not applying or any(
            (
                peers_key not in rule
                or any(_peer_matches(x, selected.namespace, peer) for x in rule[peers_key])
            )
            and _port_matches(rule, destination, port)
            for p in applying
            for rule in p["spec"].get(direction.lower(), [])
        )

    return allows("Egress", source, destination, "to") and allows(
        "Ingress", destination, source, "from"
    )


def test_network_policy_lets_a_canary_router_reach_its_tracks_and_no_other_workload_a_server() -> (
    None
):
    # The admin's rule for an S3 server in the namespace: the workloads' egress, not the router's.
    s3 = _Pod("team-a", {"app": "minio"}, {})
    document = {
        "watchNamespaces": ["team-a"],
        "workloads": {
            "networkPolicy": {
                "enabled": True,
                "egress": [
                    {
                        "to": [{"podSelector": {"matchLabels": s3.labels}}],
                        "ports": [{"protocol": "TCP", "port": 9000}],
                    }
                ],
            }
        },
    }
    policies = of_kind(render(document=document), "NetworkPolicy")
    config = OperatorConfig(s3_endpoint="http://10.0.0.1:8333", s3_credentials_secret="s3")
    spec = ModelDeploymentSpec.model_validate({"model": {"trainingJobRef": {"name": "iris"}}})
    model = ModelRef("s3://m/model.joblib", "sha256:" + "ab" * 32, None)

    def servers(namespace: str) -> tuple[_Pod, _Pod, _Pod]:
        owner = Owner("ModelDeployment", "iris", namespace, "uid")
        main, canary = (
            _deployment_pod(build_deployment(owner, spec, track, model, 1, config))
            for track in ("main", "canary")
        )
        return main, canary, _deployment_pod(build_router(owner, 10, 1, config))

    main, canary, router = servers("team-a")
    assert _reaches(policies, router, main, SERVER_PORT)
    assert _reaches(policies, router, canary, SERVER_PORT)
    dns = _Pod("kube-system", {"k8s-app": "kube-dns"}, {})
    assert _reaches(policies, router, dns, 53)
    # Nothing else: not the servers' monitoring ports, not what the admin opened to workloads.
    assert not _reaches(policies, router, main, MONITOR_PORT)
    assert _reaches(policies, main, s3, 9000)
    assert not _reaches(policies, router, s3, 9000)
    # Another tenant's servers are out of reach of this namespace's router.
    other_main, *_ = servers("team-b")
    assert not _reaches(policies, router, other_main, SERVER_PORT)
    # No other workload pod reaches a model server: a server runs a pickled model.
    for source in (
        main,
        canary,
        _Pod("team-a", workload_labels("Dataset", "iris", INGEST_COMPONENT), {}),
        _Pod("team-a", workload_labels("TrainingJob", "iris", TRAIN_COMPONENT), {}),
        _Pod("team-a", workload_labels("TrainingJob", "iris", ENGINE_COMPONENT), {}),
    ):
        assert not _reaches(policies, source, canary, SERVER_PORT), source.labels
    # Clients outside the workloads (not selected by any policy) still reach the router.
    client = _Pod("team-a", {"app": "client"}, {})
    assert _reaches(policies, client, router, SERVER_PORT)


def test_network_policy_gives_the_sources_rules_to_ingest_pods_only() -> None:
    database = _Pod("team-a", {"app": "postgres"}, {})
    s3 = _Pod("team-a", {"app": "minio"}, {})

    def rule(pod: _Pod, port: int) -> Manifest:
        return {
            "to": [{"podSelector": {"matchLabels": pod.labels}}],
            "ports": [{"protocol": "TCP", "port": port}],
        }

    document = {
        "watchNamespaces": ["team-a"],
        "workloads": {
            "networkPolicy": {
                "enabled": True,
                "egress": [rule(s3, 9000)],
                "ingestEgress": [rule(database, 5432)],
            }
        },
    }
    policies = of_kind(render(document=document), "NetworkPolicy")
    ingest = _Pod("team-a", workload_labels("Dataset", "iris", INGEST_COMPONENT), {})
    assert _reaches(policies, ingest, database, 5432)
    assert _reaches(policies, ingest, s3, 9000)
    # Pods that run model or estimator code reach S3, not the sources.
    for component, kind in (
        (SERVER_COMPONENT, "ModelDeployment"),
        (TRAIN_COMPONENT, "TrainingJob"),
        (ENGINE_COMPONENT, "TrainingJob"),
    ):
        pod = _Pod("team-a", workload_labels(kind, "iris", component), {})
        assert _reaches(policies, pod, s3, 9000), component
        assert not _reaches(policies, pod, database, 5432), component
    # Without source rules there is no policy for them.
    assert not [
        p
        for p in of_kind(render(VARIANTS["network-policy"]), "NetworkPolicy")
        if p["metadata"]["name"].endswith("-ingest")
    ]


def test_network_policy_lets_only_the_operator_reach_the_servers_monitoring_ports() -> None:
    values = {**VARIANTS["network-policy"], "workloads.serverWorkers": "3"}
    manifests = render(values)
    (policy,) = [
        p
        for p in of_kind(manifests, "NetworkPolicy")
        if p["metadata"]["name"].endswith("-monitoring")
    ]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    server = workload_labels("ModelDeployment", "iris", "server")
    assert _selects({"matchExpressions": [], **spec["podSelector"]}, server)
    for component in set(WORKLOAD_COMPONENTS) - {"server"}:
        pod = workload_labels("Dataset", "iris", component)
        assert not _selects({"matchExpressions": [], **spec["podSelector"]}, pod), component
    serving, monitoring = spec["ingress"]
    assert "from" not in serving  # clients, the canary router and Prometheus
    assert serving["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert monitoring["ports"] == [{"protocol": "TCP", "port": 9090, "endPort": 9092}]
    (source,) = monitoring["from"]
    assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
    operator_pod = _deployment()["spec"]["template"]["metadata"]["labels"]
    assert source["podSelector"]["matchLabels"].items() <= operator_pod.items()


def test_network_policy_lets_only_the_namespaces_training_and_dask_pods_reach_dask_pods() -> None:
    (policy,) = [
        p
        for p in of_kind(render(VARIANTS["network-policy"]), "NetworkPolicy")
        if p["metadata"]["name"].endswith("-engine")
    ]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    engine = workload_labels("TrainingJob", "fraud", ENGINE_COMPONENT)
    assert _selects({"matchExpressions": [], **spec["podSelector"]}, engine)
    (rule,) = spec["ingress"]
    (source,) = rule["from"]
    # A pod selector alone: pods of the policy's own namespace, never another tenant's.
    assert set(source) == {"podSelector"}
    allowed = {
        c
        for c in WORKLOAD_COMPONENTS
        if _selects(source["podSelector"], workload_labels("TrainingJob", "fraud", c))
    }
    assert allowed == {TRAIN_COMPONENT, ENGINE_COMPONENT}
    operator_pod = _deployment()["spec"]["template"]["metadata"]["labels"]
    assert not _selects(source["podSelector"], operator_pod)


def test_no_network_policy_unless_asked() -> None:
    assert not of_kind(render(), "NetworkPolicy")


def test_network_policy_limits_workload_egress_to_dns_and_the_given_rules() -> None:
    document = {
        "watchNamespaces": ["team-a", "team-b"],
        "workloads": {"networkPolicy": {"enabled": True, "egress": [S3_RULE]}},
    }
    policies = _egress_policies(render(document=document))
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["team-a", "team-b"]
    for policy in policies:
        spec = policy["spec"]
        # Egress only: clients must still reach the model servers.
        assert spec["policyTypes"] == ["Egress"]
        assert "ingress" not in spec
        for component in WORKLOAD_COMPONENTS:
            pod = workload_labels("Dataset", "iris", component)
            assert _selects(spec["podSelector"], pod), component
        operator_pod = _deployment()["spec"]["template"]["metadata"]["labels"]
        assert not _selects(spec["podSelector"], operator_pod)
        dns, engine, *rest = spec["egress"]
        assert dns["to"] == [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ]
        assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [
            ("TCP", 53),
            ("UDP", 53),
        ]
        # Training pods reach their Dask scheduler; Dask pods each other (same namespace only).
        (peers,) = engine["to"]
        assert set(peers) == {"podSelector"}
        assert _selects(
            {"matchExpressions": [], **peers["podSelector"]},
            workload_labels("TrainingJob", "fraud", ENGINE_COMPONENT),
        )
        assert rest == [S3_RULE]


def test_network_policy_namespaces_can_differ_from_the_watched_ones() -> None:
    values = {
        "workloads.networkPolicy.enabled": "true",
        "workloads.networkPolicy.namespaces": "{ml}",
    }
    policies = of_kind(render(values), "NetworkPolicy")
    assert {p["metadata"]["namespace"] for p in policies} == {"ml"}


def test_network_policy_without_namespaces_is_refused_with_a_reason() -> None:
    error = template_error({"workloads.networkPolicy.enabled": "true"})
    assert "workloads.networkPolicy.namespaces" in error and "watchNamespaces" in error


# --- helm test --------------------------------------------------------------------------------


def _test_pods(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {
        pod["metadata"]["name"]: pod
        for pod in of_kind(manifests, "Pod")
        if pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    }


def _run_check(pod: Manifest, *args: str) -> subprocess.CompletedProcess[str]:
    """The test pod's own command, run here (the operator image's Python is this one)."""
    (container,) = pod["spec"]["containers"]
    command = [sys.executable if word == "python" else word for word in container["command"]]
    return subprocess.run(
        [*command, *(args or container["args"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class _Answers(http.server.BaseHTTPRequestHandler):
    """A stand-in Service: GET gives `metrics`; POST gives `status` and `body` and keeps the
    request it got."""

    metrics: ClassVar[str] = ""
    status: ClassVar[int] = 200
    body: ClassVar[Any] = None
    received: ClassVar[list[Any]] = []

    def do_GET(self) -> None:
        self._answer(200, self.metrics.encode())

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Answers.received.append(json.loads(self.rfile.read(length)))
        self._answer(self.status, json.dumps(self.body).encode())

    def _answer(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def service() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    _Answers.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_helm_test_checks_the_operator_behind_its_metrics_service() -> None:
    manifests = render()
    pods = _test_pods(manifests)
    assert list(pods) == [f"{FULLNAME}-test-operator"]
    pod = pods[f"{FULLNAME}-test-operator"]
    service = one(manifests, "Service")
    port = service["spec"]["ports"][0]["port"]
    url = f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}/metrics"
    assert pod["spec"]["containers"][0]["args"] == ["metrics", url]
    assert pod["spec"]["containers"][0]["image"] == _operator_container()["image"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["metadata"]["annotations"]["helm.sh/hook-output-log-policy"] == (
        "hook-succeeded,hook-failed"
    )
    _assert_restricted(pod["spec"])
    assert not _test_pods(render({"metrics.service.enabled": "false"}))


def test_helm_test_sends_a_prediction_to_the_model_deployment_named() -> None:
    values = {"tests.modelDeployment.name": "iris", "tests.modelDeployment.namespace": "ml"}
    pod = _test_pods(render(values))[f"{FULLNAME}-test-predict"]
    assert pod["spec"]["containers"][0]["args"] == [
        "predict",
        "http://iris.ml.svc.cluster.local/v1/models/iris:predict",
        "[[5.1,3.5,1.4,0.2]]",
    ]
    _assert_restricted(pod["spec"])
    error = template_error(
        {"tests.modelDeployment.name": "iris", "tests.modelDeployment.instances": "null"}
    )
    assert "tests.modelDeployment.instances" in error


def test_the_operator_check_passes_only_on_the_operators_metrics(service: str) -> None:
    pod = _test_pods(render())[f"{FULLNAME}-test-operator"]
    _Answers.metrics = "# HELP modelyard_objects Objects by kind and phase.\n"
    passed = _run_check(pod, "metrics", f"{service}/metrics")
    assert passed.returncode == 0, passed.stderr
    _Answers.metrics = "# HELP go_goroutines Number of goroutines.\n"
    failed = _run_check(pod, "metrics", f"{service}/metrics")
    assert failed.returncode != 0 and "not the Modelyard operator" in failed.stderr


def test_the_prediction_check_wants_one_prediction_per_instance(service: str) -> None:
    values = {"tests.modelDeployment.name": "iris"}
    pod = _test_pods(render(values))[f"{FULLNAME}-test-predict"]
    url = f"{service}/v1/models/iris:predict"
    instances = pod["spec"]["containers"][0]["args"][2]
    _Answers.status, _Answers.body = 200, {"predictions": [0]}
    passed = _run_check(pod, "predict", url, instances)
    assert passed.returncode == 0, passed.stderr
    assert _Answers.received == [{"instances": [[5.1, 3.5, 1.4, 0.2]]}]
    _Answers.body = {"predictions": []}
    assert _run_check(pod, "predict", url, instances).returncode != 0
    _Answers.status, _Answers.body = 400, {"error": "expected 4 features, got 3"}
    refused = _run_check(pod, "predict", url, instances)
    assert refused.returncode != 0 and "HTTP 400" in refused.stderr
    assert "expected 4 features" in refused.stderr


# --- CRDs ---------------------------------------------------------------------------------------


def _modelyard_crds(manifests: list[Manifest]) -> list[Manifest]:
    return [
        doc
        for doc in of_kind(manifests, "CustomResourceDefinition")
        if doc["spec"]["group"] == "modelyard.dev"
    ]


def test_crds_are_the_generated_ones_and_kept_on_uninstall_by_default() -> None:
    crds = {doc["metadata"]["name"]: doc for doc in _modelyard_crds(render())}
    generated = {
        doc["metadata"]["name"]: doc
        for doc in (yaml.safe_load(p.read_text()) for p in (CHART / "files/crds").glob("*.yaml"))
    }
    assert (
        sorted(crds)
        == sorted(generated)
        == [
            "datasets.modelyard.dev",
            "modeldeployments.modelyard.dev",
            "trainingjobs.modelyard.dev",
        ]
    )
    for name, crd in crds.items():
        assert crd["spec"] == generated[name]["spec"], name
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelyard"


def test_crds_can_be_left_to_helm_uninstall() -> None:
    for crd in _modelyard_crds(render({"crds.keep": "false"})):
        assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


def test_crds_are_left_out_when_installed_separately() -> None:
    manifests = render({"crds.install": "false"})
    assert not of_kind(manifests, "CustomResourceDefinition")
    assert of_kind(manifests, "Deployment")


# --- values schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "named"),
    [
        pytest.param({"replicaCont": "2"}, "replicaCont", id="unknown-top-level-key"),
        pytest.param({"storage.bucketName": "x"}, "bucketName", id="unknown-nested-key"),
        pytest.param(
            {"workloads.allowedImages": "{modelyard/trainer:latest}"},
            "/workloads/allowedImages/0",
            id="allowed-image-with-a-tag",
        ),
        pytest.param(
            {"workloads.allowedImages": "{modelyard/trainer@sha256:abc}"},
            "/workloads/allowedImages/0",
            id="allowed-image-with-a-short-digest",
        ),
        pytest.param(
            {"storage.readableLocations.team-a": "{https://example.com/data}"},
            "/storage/readableLocations/team-a/0",
            id="readable-location-not-s3",
        ),
        pytest.param(
            {"workloads.http.allowedNetworks": "{10.0.0.1}"},
            "/workloads/http/allowedNetworks/0",
            id="network-without-prefix-length",
        ),
        pytest.param({"image.tag": "1"}, "/image/tag", id="number-for-a-string"),
        pytest.param({"replicaCount": "two"}, "/replicaCount", id="string-for-a-number"),
        pytest.param({"image.pullPolicy": "Sometimes"}, "/image/pullPolicy", id="not-in-enum"),
        pytest.param({"crds.install": "yes"}, "/crds/install", id="string-for-a-boolean"),
        pytest.param(
            {"metrics.prometheusRule.driftPSI": "high"},
            "/metrics/prometheusRule/driftPSI",
            id="word-for-a-threshold",
        ),
    ],
)
def test_values_schema_rejects_mistakes_naming_the_key(values: dict[str, str], named: str) -> None:
    error = template_error(values)
    assert "schema" in error and named in error, error


def test_values_schema_closes_every_object_it_defines() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        yield path, node
        for name, child in node.get("properties", {}).items():
            yield from walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}[]")

    for path, node in walk(schema, "values"):
        if "properties" in node:
            assert node.get("additionalProperties") is False, path


def test_every_value_is_documented_in_the_chart_readme() -> None:
    readme = (CHART / "README.md").read_text()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def leaves(node: dict[str, Any], path: str) -> Iterator[str]:
        for name, child in node.get("properties", {}).items():
            here = f"{path}.{name}" if path else name
            if "properties" in child and here != "resources":
                yield from leaves(child, here)
            else:
                yield here

    undocumented = [
        key for key in leaves(schema, "") if key != "global" and f"`{key}`" not in readme
    ]
    assert not undocumented, f"add to charts/modelyard/README.md: {undocumented}"
    assert set(defaults) <= set(schema["properties"])


# --- metrics --------------------------------------------------------------------------------------


def test_metrics_service_exposes_the_operator_port() -> None:
    manifests = render()
    service = one(manifests, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8000, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {doc["kind"] for doc in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}


def test_service_monitor_scrapes_the_metrics_service() -> None:
    manifests = render(VARIANTS["metrics-all-on"])
    monitor = one(manifests, "ServiceMonitor")
    service = one(manifests, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


ALERT_METRICS = {
    "ModelyardTrainingRunFailed": 'modelyard_trainingjob_runs_total{result="failed"}',
    "ModelyardServerErrors": 'modelyard_server_requests_total{status=~"5.."}',
    "ModelyardClientErrors": 'modelyard_server_requests_total{status=~"4.."}',
    "ModelyardFeatureDrift": "modelyard_server_feature_drift_psi",
    "ModelyardModelDrifted": "modelyard_modeldeployment_drifted",
    "ModelyardModelQualityDegraded": "modelyard_modeldeployment_quality_degraded",
}


def test_prometheus_rule_alerts_on_training_failures_serving_errors_and_drift() -> None:
    rule = one(render(VARIANTS["metrics-all-on"]), "PrometheusRule")
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == set(ALERT_METRICS)
    for name, selector in ALERT_METRICS.items():
        assert selector in alerts[name]["expr"], name
        assert alerts[name]["labels"]["severity"] in {"warning", "critical"}
        assert "{{ $labels." in alerts[name]["annotations"]["summary"]
    assert alerts["ModelyardFeatureDrift"]["expr"].endswith("> 0.2")


def test_alert_thresholds_are_values() -> None:
    rule = one(
        render(
            {"metrics.prometheusRule.enabled": "true", "metrics.prometheusRule.driftPSI": "0.3"}
        ),
        "PrometheusRule",
    )
    drift = [r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"].endswith("Drift")]
    assert drift[0]["expr"].endswith("> 0.3")


def test_grafana_dashboard_is_picked_up_by_the_sidecar_and_shows_the_alerted_metrics() -> None:
    config_map = one(render(VARIANTS["metrics-all-on"]), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["modelyard.json"])
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    for metric in (
        "modelyard_trainingjob_runs_total",
        "modelyard_server_requests_total",
        "modelyard_server_request_duration_seconds_bucket",
        "modelyard_server_feature_drift_psi",
        "modelyard_modeldeployment_feature_drift_psi",
        "modelyard_modeldeployment_live_metric",
    ):
        assert metric in exprs


def test_prometheus_rule_is_on_by_default_where_the_cluster_serves_its_api() -> None:
    def kinds(*extra: str) -> list[str]:
        result = run_helm("template", "r", str(CHART), *extra)
        assert result.returncode == 0, result.stderr
        return [doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc]

    served = ("--api-versions", "monitoring.coreos.com/v1/PrometheusRule")
    assert "PrometheusRule" in kinds(*served)
    assert "PrometheusRule" not in kinds()
    assert "PrometheusRule" not in kinds(*served, "--set", "metrics.prometheusRule.enabled=false")
    assert "PrometheusRule" in kinds("--set", "metrics.prometheusRule.enabled=true")


def test_chart_readme_lists_every_metric_the_alerts_and_dashboard_use() -> None:
    readme = (CHART / "README.md").read_text()
    dashboard = (CHART / "files/dashboards/modelyard.json").read_text()
    rules = (CHART / "templates/prometheusrule.yaml").read_text()

    used = set(re.findall(r"modelyard_[a-z_]+", dashboard + rules))
    documented = {m.removesuffix("_bucket") for m in used}
    for metric in documented:
        assert f"`{metric}`" in readme, f"{metric} is used but not documented in the chart README"
