"""The integration tier runs on a control plane of its own, not the shared local cluster: a
Modelyard operator installed there (`make demo` leaves one, watching every namespace) would act on
the tests' objects alongside the operator under test. A cluster named by KUBECONFIG is still used
as it is."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.plugins import controlplane
from tests.plugins.kube import Cluster, foreign_kubeconfig


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    foreign = foreign_kubeconfig()
    if foreign is not None:
        yield Cluster(kubeconfig=foreign, local=False)
        return
    state = tmp_path_factory.mktemp("integration") / "control-plane"
    with controlplane.running(state, controlplane.DEFAULT_CONTROLLERS) as plane:
        yield Cluster(kubeconfig=plane.kubeconfig, local=True)
