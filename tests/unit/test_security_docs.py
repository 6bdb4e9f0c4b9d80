"""docs/security.md tells the truth: its RBAC table is exactly what the chart grants, and the
estimator allowlist it describes holds at admission (the CRD) and in the trainer."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable

import pytest
import yaml

from modelyard import crds
from modelyard.api import TrainingJob
from modelyard.api.trainingjob import EstimatorClass
from modelyard.reasons import Reason
from modelyard.workloads.common.termination import EXIT_USAGE, WorkloadError
from modelyard.workloads.training.pipeline import estimator_class
from tests.conftest import REPO
from tests.unit.chart_render import FULLNAME, Manifest, of_kind, render

SECURITY = REPO / "docs" / "security.md"
HEADER = "| API group | resources | verbs | when | why |"

# (group, resource) → verbs
Grants = dict[tuple[str, str], frozenset[str]]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _documented() -> dict[tuple[str, str], tuple[frozenset[str], frozenset[str]]]:
    """(group, resource) → (verbs, when) from the table in docs/security.md."""
    lines = SECURITY.read_text().splitlines()
    start = lines.index(HEADER) + 2  # past the header and its --- row
    table = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        group, resources, verbs, when, _ = _cells(line)
        api_group = "" if group == "core" else group.strip("`")
        for resource in resources.split(","):
            key = (api_group, resource.strip().strip("`"))
            assert key not in table, f"{key} is listed twice"
            table[key] = (
                frozenset(verb.strip() for verb in verbs.split(",")),
                frozenset(word.strip() for word in when.split(",")),
            )
    return table


def _granted(manifests: Iterable[Manifest]) -> Grants:
    """What the operator's own roles grant (named after the release; the users' aggregated roles
    and the uninstall hook's have a table of their own)."""
    grants: dict[tuple[str, str], set[str]] = {}
    for kind in ("ClusterRole", "Role"):
        for role in of_kind(list(manifests), kind):
            if role["metadata"]["name"] != FULLNAME:
                continue
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        grants.setdefault((group, resource), set()).update(rule["verbs"])
    return {key: frozenset(verbs) for key, verbs in grants.items()}


def _expected(applies: Iterable[str]) -> Grants:
    """The documented rules whose `when` conditions all hold for an install."""
    holding = {"always", *applies}
    return {key: verbs for key, (verbs, when) in _documented().items() if when <= holding}


@pytest.mark.parametrize(
    ("values", "applies"),
    [
        pytest.param({}, ["every namespace"], id="defaults"),
        pytest.param({"replicaCount": "2"}, ["every namespace", "peering"], id="peering"),
        pytest.param(
            {"rbac.clusterWide": "false", "watchNamespaces": "{team-a}"},
            ["named namespaces"],
            id="namespaced",
        ),
        pytest.param(
            {"rbac.clusterWide": "false", "watchNamespaces": "{team-a}", "replicaCount": "3"},
            ["named namespaces", "peering"],
            id="namespaced-peering",
        ),
        pytest.param(
            {"watchNamespaces": "{team-a}", "replicaCount": "2"},
            ["named namespaces", "peering"],
            id="cluster-role-named-namespaces-peering",
        ),
    ],
)
def test_rbac_table_is_exactly_what_the_chart_grants(
    values: dict[str, str], applies: list[str]
) -> None:
    assert _granted(render(values)) == _expected(applies)


def test_rbac_table_lists_no_wildcards_and_secrets_create_only() -> None:
    """A run's TLS Secret is created, never read: nothing that reads a Secret is granted."""
    documented = _documented()
    for (group, resource), (verbs, _) in documented.items():
        assert "*" not in {group, resource, *verbs}
    assert documented[("", "secrets")][0] == {"create"}


def test_admission_allows_exactly_the_estimator_allowlist() -> None:
    crd = yaml.safe_load(crds.render_all()[crds.crd_filename(TrainingJob)])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    allowed = spec["properties"]["estimator"]["properties"]["class"]["enum"]
    assert sorted(allowed) == sorted(member.value for member in EstimatorClass)
    assert all(path.startswith(("sklearn.", "lightgbm.")) for path in allowed)


@pytest.mark.parametrize(
    "path", ["os.system", "subprocess.Popen", "sklearn.pipeline.Pipeline", "this.s"]
)
def test_trainer_refuses_an_estimator_outside_the_allowlist(path: str) -> None:
    with pytest.raises(WorkloadError) as refused:
        estimator_class(path)
    assert refused.value.reason == Reason.EstimatorNotAllowed
    assert refused.value.exit_code == EXIT_USAGE
    assert path in refused.value.message and "spec.estimator.class" in refused.value.message


def test_trainer_checks_the_allowlist_before_importing_anything() -> None:
    # `this` prints the Zen of Python when imported: a fresh interpreter shows whether it was.
    probe = (
        "import sys\n"
        "from modelyard.workloads.training.pipeline import estimator_class\n"
        "from modelyard.workloads.common.termination import WorkloadError\n"
        "try:\n"
        "    estimator_class('this.s')\n"
        "except WorkloadError:\n"
        "    pass\n"
        "print('this' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout == "False\n", result.stdout


def test_trainer_imports_every_allowed_estimator() -> None:
    for member in EstimatorClass:
        assert estimator_class(member.value).__name__ == member.value.rsplit(".", 1)[1]
