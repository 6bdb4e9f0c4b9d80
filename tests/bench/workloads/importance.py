"""`python -m tests.bench.workloads.importance`: the report's permutation importance against
scikit-learn's, on the quickstart's model (a 100-tree forest on iris, 4 features x 5 shuffles of
its test rows). Both give the same figures (tests/unit/test_permutation_importance.py); this
prints what each costs, the median of a few calls after one warm-up call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from sklearn import inspection
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.workloads.training import importance

ROUNDS = 7


def _median_seconds(call: Callable[[], object]) -> float:
    call()
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=7)
    forest = RandomForestClassifier(n_estimators=100, max_depth=5, random_state=0)
    pipeline = make_pipeline(StandardScaler(), forest).fit(x_train, y_train)
    ours = _median_seconds(
        lambda: importance.permutation_importance(
            pipeline, x_test, y_test, accuracy_score, repeats=5, seed=0
        )
    )
    theirs = _median_seconds(
        lambda: inspection.permutation_importance(
            pipeline, x_test, y_test, scoring="accuracy", n_repeats=5, random_state=0
        )
    )
    print(f"one predict call (ours): {ours:.3f} s")
    print(f"sklearn.inspection.permutation_importance: {theirs:.3f} s ({theirs / ours:.1f}x)")


if __name__ == "__main__":
    main()
