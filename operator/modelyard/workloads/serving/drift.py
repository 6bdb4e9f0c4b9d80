"""Input drift: PSI between a window of recent inputs and the training baseline on the card.

Requests only copy their rows into a ring buffer; binning runs when /metrics is scraped or the
operator collects (POST /monitoring/collect), so drift costs the hot path one array slice
assignment. The operator sums the bin counts of every server process and scores the sum with
the same function (monitoring.psi) as /metrics does here.

Binning matches the card's baseline: a numeric value v falls in bin i when
edges[i-1] <= v < edges[i] (numpy.searchsorted(edges, v, side="right")), with len(edges) + 1
bins; a categorical value falls in its category's bin, any unseen value in the final "other"
bin. Missing values (NaN / None) are left out of both the window's counts and the PSI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelyard.monitoring.psi import psi, shares
from modelyard.monitoring.report import FeatureCounts
from modelyard.workloads.common.modelcard import CategoricalBaseline, NumericBaseline

__all__ = ["DriftMonitor", "categorical_bins", "numeric_bins", "psi"]


def numeric_bins(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin index per value (NaNs dropped first), with len(edges) + 1 bins."""
    numbers = values.astype(np.float64)
    numbers = numbers[~np.isnan(numbers)]
    return np.searchsorted(np.asarray(edges, dtype=np.float64), numbers, side="right")


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

    def counts(self) -> list[FeatureCounts]:
        """Rows per baseline bin over the current window, with the baseline's shares, for every
        feature with a baseline (all zeros when the window holds no value of it)."""
        window = self._buffer[: self._filled]
        result = []
        for feature, column, baseline in self._baselines:
            values = window[:, column]
            if isinstance(baseline, NumericBaseline):
                bins = numeric_bins(values, baseline.edges)
            else:
                bins = categorical_bins(values, baseline.categories)
            expected = list(baseline.proportions)
            counts = np.bincount(bins, minlength=len(expected)).tolist()
            result.append(FeatureCounts(feature, counts, expected))
        return result

    def scores(self) -> dict[str, float]:
        """PSI per feature over the current window; features with no observed values omitted."""
        result: dict[str, float] = {}
        for counts in self.counts():
            if not sum(counts.counts):
                continue
            score = psi(counts.expected, shares(counts.counts))
            if math.isfinite(score):
                result[counts.name] = score
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
