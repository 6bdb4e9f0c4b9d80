"""How a data-parallel run splits the snapshot into tasks and places them: every row in one
task, and every worker given the same number of training rows, within one task's rows, since
LightGBM trains each worker on what it holds and the busiest worker is the one that runs out of
memory."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.workloads.training.data_parallel import PARTITION_ROWS, assign, partition

WORKERS = ["tls://10.0.0.1:1", "tls://10.0.0.2:1", "tls://10.0.0.3:1"]


def _shares(groups: list[int], workers: list[str]) -> dict[str, int]:
    test_rows = np.arange(0, sum(groups), 5)  # every fifth row is a test row
    parts = [part for part in partition(groups, test_rows, len(workers)) if part.train_rows]
    shares = dict.fromkeys(workers, 0)
    for part, worker in zip(parts, assign(parts, workers), strict=True):
        shares[worker] += part.train_rows
    return shares


def test_every_row_is_in_one_part_and_test_rows_keep_their_place() -> None:
    groups = [131_072] * 40 + [50_000]
    test_rows = np.arange(3, sum(groups), 7)
    parts = partition(groups, test_rows, 3)
    assert sum(part.rows for part in parts) == sum(groups)
    assert [g for part in parts for g in part.groups] == list(range(len(groups)))
    start, found = 0, []
    for part in parts:
        assert part.rows <= PARTITION_ROWS or len(part.groups) == 1
        found.extend(start + part.test)
        start += part.rows
    assert np.array_equal(found, test_rows)


@pytest.mark.parametrize(
    "groups",
    [
        # The transaction-fraud snapshot's row groups (11 million rows, 2 GiB workers).
        [131_072] * 83 + [121_024],
        # Uneven groups, as ingestion of batches of several sizes writes them.
        [190_000, 131_072, 20_000, 250_000, 64_000, 131_072, 5_000, 190_000, 131_072, 77_000],
    ],
)
def test_each_worker_trains_on_the_same_rows_within_one_part(groups: list[int]) -> None:
    shares = _shares(groups, WORKERS)
    assert sum(shares.values()) == sum(groups) - len(range(0, sum(groups), 5))
    assert max(shares.values()) - min(shares.values()) <= PARTITION_ROWS


def test_few_row_groups_still_give_every_worker_training_rows() -> None:
    shares = _shares([100_000, 100_000, 100_000], WORKERS)
    assert all(shares.values()), shares


def test_placement_follows_the_workers_present_not_a_fixed_count() -> None:
    two = WORKERS[:2]
    shares = _shares([131_072] * 12, two)
    assert set(shares) == set(two)
    assert max(shares.values()) - min(shares.values()) <= 131_072
