"""Argo CD health checks (gitops/argocd/health), run in a real Lua 5.1 interpreter the way Argo CD
runs them: over every status the operator was recorded writing in real test runs
(tests/data/recorded-statuses.json, refreshed with `python -m tests.plugins.status_recording`),
and over hand-written edge cases this operator does not produce, labelled as such. The argocd-cm
patch users apply embeds exactly these scripts; the GitOps examples build."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.manifests import parse
from tests.conftest import EXAMPLES
from tests.plugins.kube import kubectl_binary
from tests.plugins.status_recording import CHECKED_IN, Recorded, Step, compact, dump, load
from tests.unit.argocd_health import (
    ARGOCD,
    KINDS,
    LUA,
    PATCH,
    SHARED_MARKER,
    Health,
    argocd_object,
    assess,
    assess_all,
    condition_problems,
    config_key,
    find_lua,
    health_sequence,
    lua_literal,
    problems,
    render_cm_patch,
    script,
    shared_part,
    transitions,
)

RECORDED = load(CHECKED_IN)


@pytest.fixture(scope="module")
def lua() -> str:
    binary = find_lua()
    if binary is None:
        # `make test` installs it (hack/install-deps.sh test); a missing tool is no reason to
        # pass without checking anything.
        pytest.fail(f"{LUA} not on PATH: run `make test-deps` (Debian package lua5.1)")
    return binary


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


# --- what the operator really writes -----------------------------------------------------------


def _condition(step: Step, type_: str) -> dict[str, Any]:
    conditions = (step.status or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def _current(step: Step) -> bool:
    return step.status is not None and step.status.get("observedGeneration") == step.generation


def _recorded_steps(kind: str, predicate: Callable[[Step], bool]) -> list[tuple[Recorded, Step]]:
    """Every recorded state of this kind (not being deleted) that matches."""
    found = [
        (recorded, step)
        for recorded in RECORDED
        if recorded.kind == kind
        for step in recorded.steps
        if not step.deleting and predicate(step)
    ]
    assert found, f"the recording has no such {kind} state: refresh it from a fuller run"
    return found


def _assess_steps(found: list[tuple[Recorded, Step]], kind: str, lua: str) -> list[Health]:
    return assess_all(kind, [argocd_object(recorded, step) for recorded, step in found], lua)


def test_the_recording_holds_every_kind_from_creation_to_healthy_and_to_failure(lua: str) -> None:
    for kind in KINDS:
        sequences = [health_sequence(r, lua) for r in RECORDED if r.kind == kind]
        assert any(transitions(h) == ["Progressing", "Healthy"] for h in sequences), kind
        assert any("Degraded" in transitions(h) for h in sequences), kind
        # A kind can go back to work with a result standing (refresh, retrain, new rollout).
        assert any("Healthy" in transitions(h)[:-1] for h in sequences), kind


@pytest.mark.parametrize("kind", KINDS)
def test_recorded_sequences_are_never_degraded_on_the_way_to_healthy(lua: str, kind: str) -> None:
    found = [
        problem
        for recorded in RECORDED
        if recorded.kind == kind
        for problem in problems(recorded, health_sequence(recorded, lua))
    ]
    assert not found, "\n".join(found)


def test_recorded_conditions_carry_observed_generation_and_a_reason() -> None:
    found = [problem for recorded in RECORDED for problem in condition_problems(recorded)]
    assert not found, "\n".join(found)


def test_recorded_work_in_progress_is_progressing_with_the_reconciling_reason(
    lua: str, kind: str
) -> None:
    found = _recorded_steps(
        kind, lambda s: _current(s) and _condition(s, "Reconciling").get("status") == "True"
    )
    for (_, step), health in zip(found, _assess_steps(found, kind, lua), strict=True):
        reconciling = _condition(step, "Reconciling")
        expected = f"{reconciling['reason']}: {reconciling['message']}".rstrip(": ")
        assert health == Health("Progressing", expected), step


def test_recorded_work_with_a_result_standing_is_progressing(lua: str, kind: str) -> None:
    """A refresh, retrain or rollout while the last result serves: Ready stays True, and the
    Application is not Healthy until the new result lands."""
    found = _recorded_steps(
        kind,
        lambda s: (
            _current(s)
            and _condition(s, "Ready").get("status") == "True"
            and _condition(s, "Reconciling").get("status") == "True"
        ),
    )
    assert {h.status for h in _assess_steps(found, kind, lua)} == {"Progressing"}


def test_recorded_stalls_are_degraded_with_the_operators_reason(lua: str, kind: str) -> None:
    found = _recorded_steps(
        kind, lambda s: _current(s) and _condition(s, "Stalled").get("status") == "True"
    )
    for (_, step), health in zip(found, _assess_steps(found, kind, lua), strict=True):
        stalled = _condition(step, "Stalled")
        assert health == Health("Degraded", f"{stalled['reason']}: {stalled['message']}"), step
        assert _condition(step, "Ready")["status"] == "False"


def test_recorded_ready_states_are_healthy(lua: str, kind: str) -> None:
    found = _recorded_steps(
        kind,
        lambda s: (
            _current(s)
            and _condition(s, "Ready").get("status") == "True"
            and not _condition(s, "Reconciling")
            and not _condition(s, "Stalled")
        ),
    )
    for (_, step), health in zip(found, _assess_steps(found, kind, lua), strict=True):
        ready = _condition(step, "Ready")
        assert health == Health("Healthy", f"{ready['reason']}: {ready['message']}"), step


def test_recorded_states_before_the_operator_caught_up_are_progressing(lua: str, kind: str) -> None:
    """No status yet, or one about an older generation (a spec change not yet acted on)."""
    found = _recorded_steps(kind, lambda s: not _current(s))
    healths = _assess_steps(found, kind, lua)
    assert {h.status for h in healths} == {"Progressing"}
    assert {h.message.rsplit(" ", 1)[0] for h in healths} <= {
        "Waiting for the operator to report",
        "Waiting for the operator to observe generation",
    }


def test_a_recorded_object_being_deleted_is_pending_deletion_as_argo_cd_says(lua: str) -> None:
    """Argo CD decides this itself before any health script (gitops-engine): an object whose
    deletion waits on its users shows Progressing, not Degraded."""
    deleting = [r for r in RECORDED if any(s.deleting for s in r.steps)]
    assert deleting, "the recording has no deletion: refresh it from a fuller run"
    for recorded in deleting:
        healths = health_sequence(recorded, lua)
        for step, health in zip(recorded.steps, healths, strict=True):
            if step.deleting:
                assert health == Health("Progressing", "Pending deletion")


# --- the same logic for the three kinds ---------------------------------------------------------


def test_the_shared_part_of_the_scripts_is_identical() -> None:
    shared = {kind: shared_part(kind) for kind in KINDS}
    assert len(set(shared.values())) == 1, "edit the part after SHARED_MARKER in all three"
    for kind in KINDS:
        own = script(kind).read_text().split(SHARED_MARKER)[0]
        # Only the summary of a ready object is the kind's own.
        assert own.count("local function") == 1 and "local function ready_summary" in own


# --- hand-written edge cases: states this operator does not write -------------------------------


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


def _conditions(*conditions: tuple[str, str, str, str]) -> dict[str, Any]:
    """A hand-written status at generation 2 with these (type, status, reason, message)."""
    return {
        "observedGeneration": 2,
        "conditions": [
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 2,
            }
            for type_, status, reason, message in conditions
        ],
    }


def test_hand_written_a_stall_of_an_older_generation_is_progressing(lua: str, kind: str) -> None:
    """A spec change (the fix) the operator has not acted on: the old failure no longer counts."""
    stale = _conditions(("Ready", "False", "ObjectiveNotMet", "x"), ("Stalled", "True", "O", "x"))
    stale["observedGeneration"] = 1
    health = assess(kind, _object(kind, generation=2, status=stale), lua)
    assert health == Health("Progressing", "Waiting for the operator to observe generation 2")


def test_hand_written_status_without_observed_generation_is_progressing(
    lua: str, kind: str
) -> None:
    status = _conditions(("Ready", "True", "Succeeded", "all good"))
    del status["observedGeneration"]
    assert assess(kind, _object(kind, status=status), lua).status == "Progressing"


def test_hand_written_status_without_a_ready_condition_is_progressing(lua: str, kind: str) -> None:
    status = {"observedGeneration": 2, "phase": "Pending", "conditions": []}
    health = assess(kind, _object(kind, status=status), lua)
    assert health == Health("Progressing", "Waiting for the Ready condition")
    no_list = {"observedGeneration": 2, "phase": "Pending"}
    assert assess(kind, _object(kind, status=no_list), lua).status == "Progressing"


def test_hand_written_ready_false_without_stalled_is_degraded(lua: str, kind: str) -> None:
    """What operators before kstatus conditions wrote on a failure."""
    message = 'accuracy 0.61 < 0.85 (run "r-3")\nsee the model card'
    status = _conditions(("Ready", "False", "ObjectiveNotMet", message))
    health = assess(kind, _object(kind, status=status), lua)
    assert health == Health("Degraded", f"ObjectiveNotMet: {message}")


def test_hand_written_stalled_wins_over_reconciling_and_ready(lua: str, kind: str) -> None:
    status = _conditions(
        ("Ready", "True", "Serving", "old model"),
        ("Reconciling", "True", "RollingOut", "new model"),
        ("Stalled", "True", "ImagePullBackOff", "pod x: back-off"),
    )
    health = assess(kind, _object(kind, status=status), lua)
    assert health == Health("Degraded", "ImagePullBackOff: pod x: back-off")


def test_hand_written_a_condition_without_reason_is_named_by_its_type(lua: str, kind: str) -> None:
    status = _conditions(("Ready", "False", "", "broken"))
    assert assess(kind, _object(kind, status=status), lua) == Health("Degraded", "Ready: broken")
    status = _conditions(("Ready", "Unknown", "", ""))
    assert assess(kind, _object(kind, status=status), lua) == Health("Progressing", "Ready")


def test_hand_written_degraded_message_survives_non_ascii_text(lua: str) -> None:
    status = _conditions(("Ready", "False", "SchemaMismatch", "column «petal_width» is string"))
    health = assess("Dataset", _object("Dataset", status=status), lua)
    assert health.message == "SchemaMismatch: column «petal_width» is string"


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
def test_hand_written_healthy_without_reason_or_message_says_what_is_ready(
    lua: str, kind: str, extra: dict[str, Any], message: str
) -> None:
    status = _conditions(("Ready", "True", "", "")) | extra
    assert assess(kind, _object(kind, status=status), lua) == Health("Healthy", message)


# --- the runner itself ----------------------------------------------------------------------


def test_lua_literals_round_trip_through_the_interpreter(lua: str) -> None:
    value = {"a": [1, 2.5, True, None, 'x"y\\z\n'], "b": {"c": "é"}}
    program = f"local v = {lua_literal(value)}\nio.write(v.a[5], v.b.c, tostring(v.a[3]))"
    result = subprocess.run([lua, "-"], input=program, capture_output=True, text=True, check=True)
    assert result.stdout == 'x"y\\z\nétrue'


@pytest.mark.parametrize(
    "body",
    [
        'return {status = string.format("%s", "Healthy")}',
        'local s = "healthy"\nreturn {status = s:upper()}',
        "return {status = tostring(math.floor(1))}",
    ],
)
def test_a_script_using_what_argo_cd_withholds_fails_here_too(
    lua: str, body: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Argo CD opens only the base, table and a safe os library for health scripts."""
    (tmp_path / "dataset.lua").write_text(body)
    monkeypatch.setattr("tests.unit.argocd_health.HEALTH", tmp_path)
    with pytest.raises(AssertionError, match=r"nil value|attempt to index"):
        assess("Dataset", _object("Dataset"), lua)


def test_compact_keeps_the_states_and_their_order(tmp_path: Path) -> None:
    ready = {"type": "Ready", "status": "True", "reason": "Ingested", "observedGeneration": 1}
    full = {
        "observedGeneration": 1,
        "phase": "Ready",
        "statistics": {"rows": 150},
        "conditions": [ready | {"lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "model": {"uri": "s3://b/m", "digest": "sha256:abc"},
    }
    kept = {
        "observedGeneration": 1,
        "phase": "Ready",
        "conditions": [ready],
        "model": {"digest": "sha256:abc"},
    }
    recorded = Recorded(
        "Dataset",
        "e2e-1a2b3c4d",
        "iris",
        "uid-1",
        [
            Step(1, None),
            Step(1, full),
            Step(1, full | {"statistics": {"rows": 151}}),  # differs only where no check reads
            Step(2, full, deleting=True),
        ],
    )
    (compacted,) = compact([recorded])
    assert compacted.namespace == "ns-1"
    assert compacted.steps == [Step(1, None), Step(1, kept), Step(2, kept, deleting=True)]
    dump(tmp_path / "recording.json", [compacted, recorded], "a test")
    assert load(tmp_path / "recording.json") == [compacted, recorded]


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
