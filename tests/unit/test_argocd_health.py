"""Argo CD health checks, run in a real Lua 5.1 interpreter over the objects the operator
writes; the argocd-cm patch users apply embeds exactly these scripts; the GitOps examples build."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from modelyard.manifests import parse
from tests.conftest import EXAMPLES
from tests.plugins.kube import kubectl_binary
from tests.unit.argocd_health import (
    ARGOCD,
    KINDS,
    LUA,
    PATCH,
    Health,
    assess,
    config_key,
    find_lua,
    lua_literal,
    render_cm_patch,
    script,
)


@pytest.fixture(scope="module")
def lua() -> str:
    binary = find_lua()
    if binary is None:
        # `make test` installs it (hack/install-deps.sh test); a missing tool is no reason to
        # pass without checking anything.
        pytest.fail(f"{LUA} not on PATH: run `make test-deps` (Debian package lua5.1)")
    return binary


def _object(kind: str, generation: int = 2, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "iris", "namespace": "ml", "generation": generation},
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


def _ready(status: str, reason: str = "", message: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "observedGeneration": 2,
        "phase": "Whatever",
        "conditions": [
            {"type": "Other", "status": "False", "reason": "Unrelated", "message": "ignore me"},
            {
                "type": "Ready",
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 2,
            },
        ],
        **extra,
    }


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def test_a_new_object_without_status_is_progressing(lua: str, kind: str) -> None:
    health = assess(kind, _object(kind), lua)
    assert health == Health("Progressing", "Waiting for the operator to report status")


def test_a_spec_change_the_operator_has_not_seen_is_progressing(lua: str, kind: str) -> None:
    stale = _ready("True", "Ready", "all good") | {"observedGeneration": 1}
    health = assess(kind, _object(kind, generation=2, status=stale), lua)
    assert health.status == "Progressing"
    assert "generation 2" in health.message


def test_status_without_observed_generation_is_progressing(lua: str, kind: str) -> None:
    status = _ready("True", "Ready", "all good")
    del status["observedGeneration"]
    assert assess(kind, _object(kind, status=status), lua).status == "Progressing"


def test_status_without_a_ready_condition_is_progressing(lua: str, kind: str) -> None:
    status = {"observedGeneration": 2, "phase": "Pending", "conditions": []}
    health = assess(kind, _object(kind, status=status), lua)
    assert health == Health("Progressing", "Waiting for the Ready condition")
    no_list = {"observedGeneration": 2, "phase": "Pending"}
    assert assess(kind, _object(kind, status=no_list), lua).status == "Progressing"


def test_ready_unknown_is_progressing_with_the_operators_words(lua: str, kind: str) -> None:
    status = _ready("Unknown", "Running", "training run 3 of 3")
    health = assess(kind, _object(kind, status=status), lua)
    assert health == Health("Progressing", "Running: training run 3 of 3")


def test_ready_true_is_healthy(lua: str, kind: str) -> None:
    status = _ready("True", "Succeeded", "accuracy 0.97")
    assert assess(kind, _object(kind, status=status), lua) == Health(
        "Healthy", "Succeeded: accuracy 0.97"
    )


def test_ready_false_is_degraded_with_the_conditions_message(lua: str, kind: str) -> None:
    message = 'objective not met: accuracy 0.61 < 0.85 (run "r-3")\nsee the model card'
    status = _ready("False", "ObjectiveNotMet", message)
    health = assess(kind, _object(kind, status=status), lua)
    assert health == Health("Degraded", f"ObjectiveNotMet: {message}")


def test_degraded_message_survives_non_ascii_text(lua: str) -> None:
    status = _ready("False", "SchemaMismatch", "column «petal_width» is string, expected float")
    health = assess("Dataset", _object("Dataset", status=status), lua)
    assert health.message == "SchemaMismatch: column «petal_width» is string, expected float"


@pytest.mark.parametrize(
    ("kind", "extra", "message"),
    [
        ("Dataset", {"version": "sha256:abc"}, "Version sha256:abc"),
        ("TrainingJob", {"model": {"uri": "s3://b/m", "digest": "sha256:def"}}, "Model sha256:def"),
        (
            "ModelDeployment",
            {"url": "http://iris.ml.svc:8080"},
            "Serving at http://iris.ml.svc:8080",
        ),
    ],
)
def test_healthy_without_a_message_says_what_is_ready(
    lua: str, kind: str, extra: dict[str, Any], message: str
) -> None:
    status = _ready("True", "", "", **extra)
    assert assess(kind, _object(kind, status=status), lua) == Health("Healthy", message)


def test_lua_literals_round_trip_through_the_interpreter(lua: str) -> None:
    value = {"a": [1, 2.5, True, None, 'x"y\\z\n'], "b": {"c": "é"}}
    program = f"local v = {lua_literal(value)}\nio.write(v.a[5], v.b.c, tostring(v.a[3]))"
    result = subprocess.run([lua, "-"], input=program, capture_output=True, text=True, check=True)
    assert result.stdout == 'x"y\\z\nétrue'


# --- how users install them -------------------------------------------------------------------


def test_argocd_cm_patch_embeds_exactly_the_scripts() -> None:
    assert PATCH.read_text() == render_cm_patch(), (
        "gitops/argocd/argocd-cm-patch.yaml is stale: run `python -m tests.unit.argocd_health`"
    )
    patch = yaml.safe_load(PATCH.read_text())
    assert patch["kind"] == "ConfigMap" and patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"] == {config_key(kind): script(kind).read_text() for kind in KINDS}
    assert sorted(p.name for p in (ARGOCD / "health").glob("*.lua")) == sorted(
        script(kind).name for kind in KINDS
    )


def test_readme_documents_each_config_key() -> None:
    readme = (ARGOCD / "README.md").read_text()
    for kind in KINDS:
        assert config_key(kind) in readme


# --- GitOps examples --------------------------------------------------------------------------


def test_argocd_applications_point_at_paths_in_this_repository() -> None:
    apps = [
        doc
        for path in sorted((EXAMPLES / "argocd").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "Application"
    ]
    paths = {app["spec"]["source"]["path"] for app in apps}
    assert paths == {"charts/modelyard", "examples/quickstart"}
    for app in apps:
        assert (EXAMPLES.parent / app["spec"]["source"]["path"]).is_dir()
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_kustomize_overlay_builds_and_keeps_references_intact() -> None:
    result = subprocess.run(
        [kubectl_binary(), "kustomize", str(EXAMPLES / "kustomize")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout) if doc}
    namespace = docs["Namespace"]["metadata"]["name"]
    assert docs["Namespace"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    dataset, job, deployment = docs["Dataset"], docs["TrainingJob"], docs["ModelDeployment"]
    for doc in (dataset, job, deployment):
        assert doc["metadata"]["namespace"] == namespace
    # The name prefix reaches the references too, or the chain would point at nothing.
    assert job["spec"]["datasetRef"]["name"] == dataset["metadata"]["name"] != "iris"
    assert deployment["spec"]["model"]["trainingJobRef"]["name"] == job["metadata"]["name"]
    assert deployment["spec"]["replicas"] == 3
    for doc in (dataset, job, deployment):
        parse(doc)  # still valid against the API models after the patch
