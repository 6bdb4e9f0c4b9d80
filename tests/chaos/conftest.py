"""Chaos tests (`-m chaos`): the operator as its own process, killed, cut off, doubled or denied.
Reduced sizes by default; MODELYARD_CHAOS_FULL=1 runs the sizes of docs/reliability.md.

They run on a control plane of their own (tests/plugins/controlplane.py; no node, so workload pods
stay Pending)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.plugins import controlplane
from tests.plugins.kube import Cluster
from tests.plugins.operator import OperatorProcess

FULL = os.environ.get("MODELYARD_CHAOS_FULL") == "1"

OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with controlplane.running(tmp_path_factory.mktemp("chaos") / "control-plane") as plane:
        yield Cluster(kubeconfig=plane.kubeconfig, local=True)


@pytest.fixture
def operator_process(crds: Cluster, namespace: str, tmp_path: Path) -> Iterator[OperatorFactory]:
    """Makes `modelyard operator` processes for the test's namespace; all are stopped after."""
    made: list[OperatorProcess] = []

    def make(**kwargs: object) -> OperatorProcess:
        kwargs.setdefault("kubeconfig", crds.kubeconfig)
        log = tmp_path / f"operator-{len(made)}.log"
        process = OperatorProcess(namespace=namespace, log=log, **kwargs)  # type: ignore[arg-type]
        made.append(process)
        return process

    yield make
    for process in made:
        process.stop()
