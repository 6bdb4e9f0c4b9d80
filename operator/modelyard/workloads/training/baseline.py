"""Training-split feature distributions stored in the model card, for drift scores at serving."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from modelyard.workloads.common.modelcard import CategoricalBaseline, Feature, NumericBaseline

BINS = 10
TOP_CATEGORIES = 20


def feature_baselines(
    features: list[Feature], x_train: np.ndarray[Any, Any]
) -> list[NumericBaseline | CategoricalBaseline]:
    baselines: list[NumericBaseline | CategoricalBaseline] = []
    for i, feature in enumerate(features):
        column = x_train[:, i]
        if feature.type in ("integer", "float"):
            values = np.asarray(column, dtype=np.float64)
            values = values[np.isfinite(values)]
            if len(values) == 0:
                continue
            edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
            counts = np.bincount(
                np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1
            )
            baselines.append(
                NumericBaseline(
                    feature=feature.name,
                    edges=[float(edge) for edge in edges],
                    proportions=[float(c) / len(values) for c in counts],
                )
            )
        else:
            present = [value for value in column if isinstance(value, str)]
            if not present:
                continue
            counts_by_value = Counter(present).most_common(TOP_CATEGORIES)
            covered = sum(count for _, count in counts_by_value)
            baselines.append(
                CategoricalBaseline(
                    feature=feature.name,
                    categories=[value for value, _ in counts_by_value],
                    proportions=[count / len(present) for _, count in counts_by_value]
                    + [(len(present) - covered) / len(present)],
                )
            )
    return baselines
