"""Argo CD syncing the quickstart from Git onto the local node, with Modelyard's health checks
installed as gitops/argocd/README.md says (Argo CD built from Go modules and run as host
processes: tests/plugins/argocd.py). What a user of Argo CD sees, step by step: the first sync
goes Progressing → Healthy and stays Synced; new data pushed to Git retrains and rolls out; a
TrainingJob that cannot meet its objective is Degraded with its reason; a Dataset removed from Git
while a ModelDeployment uses it waits; a ModelDeployment removed from Git is pruned with what it
served. And Argo CD's own Lua reads every recorded status as the Lua 5.1 tests do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.plugins import argocd as argo
from tests.plugins.kube import Cluster
from tests.plugins.status_recording import CHECKED_IN, Recorded, StatusRecorder, Step, load
from tests.unit.argocd_health import argocd_object, find_lua, health_sequence

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def binaries(request: pytest.FixtureRequest) -> Path:
    return argo.build(request)


@pytest.fixture(scope="module")
def argocd(
    binaries: Path,
    kube_node: Cluster,
    release: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[argo.ArgoCD]:
    with argo.running(kube_node, binaries, tmp_path_factory.mktemp("argocd")) as running:
        yield running


def test_argocd_syncs_the_quickstart_from_git(
    argocd: argo.ArgoCD, kube_node: Cluster, ml_namespace: str
) -> None:
    timings = argo.quickstart_scenario(argocd, kube_node, ml_namespace)
    print(", ".join(f"{k}: {v:.0f}s" for k, v in timings.items()))


def test_argo_cds_own_lua_reads_recorded_statuses_as_the_lua_tests_do(
    binaries: Path, recorded_statuses: StatusRecorder, tmp_path: Path
) -> None:
    """The unit tests run the scripts in Lua 5.1; Argo CD runs them in gopher-lua, after its
    own checks (an object being deleted). Every distinct recorded state, the checked-in ones
    and this session's so far, gets the same verdict from both."""
    lua = find_lua()
    assert lua is not None, "lua5.1 not on PATH: run `make test-deps`"
    states: dict[str, tuple[Recorded, Step]] = {}
    for recorded in load(CHECKED_IN) + recorded_statuses.objects():
        for step in recorded.steps:
            obj = argocd_object(recorded, step)
            if step.deleting:
                obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            obj["metadata"] |= {"name": "x", "namespace": "y"}
            states.setdefault(json.dumps(obj, sort_keys=True), (recorded, step))
    single = [Recorded(r.kind, r.namespace, r.name, r.uid, [s]) for r, s in states.values()]
    ours = [health_sequence(recorded, lua)[0] for recorded in single]
    with ThreadPoolExecutor(max_workers=2) as pool:
        theirs = list(
            pool.map(lambda key: argo.admin_health(binaries, json.loads(key), tmp_path), states)
        )
    different = [
        (key, mine, argo_cd)
        for key, mine, argo_cd in zip(states, ours, theirs, strict=True)
        if mine != argo_cd
    ]
    assert not different, different[:5]
    print(f"{len(states)} distinct recorded states read alike by Lua 5.1 and Argo CD")
