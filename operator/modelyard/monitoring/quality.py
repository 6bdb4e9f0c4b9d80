"""Live quality from labelled predictions, as sums that add up across server processes."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class QualitySums:
    """Over a window of labelled rows: for classifiers `correct`, for regressors the errors."""

    labels: int = 0
    correct: int = 0
    sum_abs_error: float = 0.0
    sum_squared_error: float = 0.0

    def __add__(self, other: QualitySums) -> QualitySums:
        return QualitySums(
            self.labels + other.labels,
            self.correct + other.correct,
            self.sum_abs_error + other.sum_abs_error,
            self.sum_squared_error + other.sum_squared_error,
        )

    def value(self, metric: str) -> float | None:
        """accuracy, mae or rmse; None without labels."""
        if not self.labels:
            return None
        if metric == "accuracy":
            return self.correct / self.labels
        if metric == "mae":
            return self.sum_abs_error / self.labels
        if metric == "rmse":
            return math.sqrt(self.sum_squared_error / self.labels)
        raise ValueError(f"unknown live metric {metric!r}")
