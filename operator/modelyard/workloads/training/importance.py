"""Permutation importance with one predict call.

The figures are `sklearn.inspection.permutation_importance`'s, shuffle for shuffle (the same
seed, the same cumulative shuffles of each column), but every shuffled copy of the rows is
predicted in one call instead of one call per feature and shuffle. A forest's predict costs
several milliseconds per call whatever the rows (joblib dispatches each tree), so for the
quickstart's 100-tree forest on iris (4 features x 5 shuffles) the library's 21 calls take
0.14 s and this one 0.02 s on one core (`python -m tests.bench.workloads.importance`); on 2,000
rows x 10 features, a third of a forest's report (docs/evaluation.md#cost).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

Array = np.ndarray[Any, Any]
Score = Callable[[Array, Array], float]


@dataclass(frozen=True)
class Importances:
    """The drop in score when each feature is shuffled: mean and standard deviation over the
    shuffles, one entry per column."""

    mean: Array
    std: Array


def permutation_importance(
    pipeline: Pipeline, x: Array, y: Array, score: Score, repeats: int, seed: int
) -> Importances:
    """`score(y, predicted)` of the pipeline on `x`, less its score with each column shuffled
    `repeats` times, as sklearn's permutation_importance(random_state=seed) computes it."""
    # sklearn draws one seed from random_state, and every column's shuffles start from it.
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    copies = []
    for column in range(x.shape[1]):
        state = np.random.RandomState(column_seed)
        shuffled = x.copy()
        order = np.arange(len(x))
        for _ in range(repeats):
            state.shuffle(order)
            shuffled[:, column] = shuffled[order, column]
            copies.append(shuffled.copy())
    predicted = np.split(pipeline.predict(np.concatenate(copies)), len(copies))
    permuted = np.array([score(y, rows) for rows in predicted]).reshape(x.shape[1], repeats)
    drops = score(y, pipeline.predict(x)) - permuted
    return Importances(mean=drops.mean(axis=1), std=drops.std(axis=1))
