"""Input drift: PSI between a window of recent inputs and the training baseline on the card.

Requests only copy their rows into a ring buffer; binning and PSI run when /metrics is
scraped, so drift costs the hot path one array slice assignment.

Binning matches the card's baseline: a numeric value v falls in bin i when
edges[i-1] <= v < edges[i] (numpy.searchsorted(edges, v, side="right")), with len(edges) + 1
bins; a categorical value falls in its category's bin, any unseen value in the final "other"
bin. Missing values (NaN / None) are left out of both the window's shares and the PSI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelyard.workloads.common.modelcard import CategoricalBaseline, NumericBaseline

# Empty bins would make PSI infinite; floor both distributions' shares at this.
EPSILON = 1e-4


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """Population stability index: sum over bins of (a - e) * ln(a / e)."""
    e = np.clip(np.asarray(expected, dtype=np.float64), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_bins(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin index per value (NaNs dropped first), with len(edges) + 1 bins."""
    numbers = values.astype(np.float64)
    numbers = numbers[~np.isnan(numbers)]
    return np.searchsorted(np.asarray(edges, dtype=np.float64), numbers, side="right")


def shares(bins: np.ndarray, count: int) -> np.ndarray:
    """Share of values per bin; all zeros when there are none."""
    counts = np.bincount(bins, minlength=count).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


class DriftMonitor:
    """The last `window` input rows, and their PSI per feature against the baseline."""

    def __init__(
        self,
        features: Sequence[str],
        baseline: Sequence[NumericBaseline | CategoricalBaseline],
        window: int,
        dtype: Any,
    ) -> None:
        self._window = window
        self._buffer = np.empty((window, len(features)), dtype=dtype)
        self._next = 0
        self._filled = 0
        position = {name: i for i, name in enumerate(features)}
        # Baselines for features the model does not take (or without bins) cannot be scored.
        self._baselines = [
            (b.feature, position[b.feature], b)
            for b in baseline
            if b.feature in position and b.proportions
        ]

    @property
    def rows(self) -> int:
        return self._filled

    def observe(self, matrix: np.ndarray) -> None:
        rows = len(matrix)
        if rows >= self._window:
            self._buffer[:] = matrix[rows - self._window :]
            self._next, self._filled = 0, self._window
            return
        end = self._next + rows
        if end <= self._window:
            self._buffer[self._next : end] = matrix
        else:
            split = self._window - self._next
            self._buffer[self._next :] = matrix[:split]
            self._buffer[: rows - split] = matrix[split:]
        self._next = end % self._window
        self._filled = min(self._window, self._filled + rows)

    def scores(self) -> dict[str, float]:
        """PSI per feature over the current window; features with no observed values omitted."""
        window = self._buffer[: self._filled]
        result: dict[str, float] = {}
        for feature, column, baseline in self._baselines:
            values = window[:, column]
            if isinstance(baseline, NumericBaseline):
                bins = numeric_bins(values, baseline.edges)
            else:
                bins = categorical_bins(values, baseline.categories)
            if len(bins) == 0:
                continue
            score = psi(baseline.proportions, shares(bins, len(baseline.proportions)))
            if math.isfinite(score):
                result[feature] = score
        return result


def categorical_bins(values: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """Bin index per value (missing dropped): its category's, or len(categories) for unseen."""
    index = {category: i for i, category in enumerate(categories)}
    other = len(categories)
    return np.fromiter(
        (
            index.get(str(value), other)
            for value in values
            if value is not None and not (isinstance(value, float) and math.isnan(value))
        ),
        dtype=np.intp,
    )
