"""The data-parallel fit's check between placing the training rows and training on them, on a
real Dask cluster (a local scheduler and worker processes behind nannies, as in worker pods)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

from modelyard.workloads.training.data_parallel import placed

pytestmark = pytest.mark.integration


@pytest.fixture
def client() -> Iterator[Client]:
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.wait_for_workers(2)
        yield client


def _workers(client: Client) -> set[str]:
    return set(client.scheduler_info(n_workers=-1)["workers"])


def _parts_on(client: Client, worker: str, elsewhere: bool = True) -> tuple[da.Array, da.Array]:
    """Training arrays whose parts are computed on `worker`, and elsewhere if it is lost and
    `elsewhere` (as `_training_arrays` places them)."""
    where = {"workers": [worker], "allow_other_workers": elsewhere}
    parts = [client.submit(np.ones, (5, 3), pure=False, **where) for _ in range(2)]
    x = da.concatenate(  # type: ignore[no-untyped-call]
        [da.from_delayed(part, (5, 3), float) for part in parts]  # type: ignore[no-untyped-call]
    )
    labels = client.submit(np.zeros, 10, pure=False, **where)
    y = da.from_delayed(labels, (10,), float)  # type: ignore[no-untyped-call]
    return x, y


def test_training_rows_placed_on_every_worker_are_trained_on(client: Client) -> None:
    workers = _workers(client)
    x, y = placed(client, *_parts_on(client, min(workers)), workers)
    assert x.compute().shape == (10, 3) and y.compute().shape == (10,)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "elsewhere",
    [
        pytest.param(True, id="parts-computed-again-elsewhere"),
        # No worker can compute them: the wait alone would never end.
        pytest.param(False, id="parts-only-on-the-lost-worker"),
    ],
)
def test_a_worker_lost_while_the_rows_are_placed_fails_the_attempt(
    client: Client, elsewhere: bool
) -> None:
    workers = _workers(client)
    lost = min(workers)
    x, y = _parts_on(client, lost, elsewhere)
    # The worker process dies as one out of memory does; its nanny starts it again under
    # another address, and Dask computes the lost parts again where they may run.
    client.run(os._exit, 1, workers=[lost], on_error="ignore")
    while lost in _workers(client):
        time.sleep(0.1)
    # Left alone, LightGBM would train on the workers that hold parts: not every one the run
    # sized its rows for.
    with pytest.raises(RuntimeError, match=f"{lost} left while the training rows were placed"):
        placed(client, x, y, workers)
