"""The evaluation report of a training run: the plots a task gets are real PNGs that report.html
shows, user data cannot inject markup into the page, and each finding shows up on data built to
show it and stays away from clean data."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

from modelyard.api.trainingjob import Finding
from modelyard.storage.digest import bytes_digest
from modelyard.storage.layout import REPORT_FILE, REPORT_PLOT_PIN
from modelyard.workloads.common.modelcard import Feature
from modelyard.workloads.training.pipeline import build_pipeline, task_of
from modelyard.workloads.training.report import Report, build_report

Array = np.ndarray[Any, Any]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSIFIER_PLOTS = {
    "confusion_matrix.png",
    "roc.png",
    "precision_recall.png",
    "feature_importance.png",
}
REGRESSOR_PLOTS = {"predicted_vs_actual.png", "residuals.png", "feature_importance.png"}
HOSTILE = "<script>alert(1)</script>"


def report(
    estimator: Any,
    x: Array,
    y: Array,
    names: list[str],
    *,
    types: list[str] | None = None,
    leaderboard: list[dict[str, Any]] | None = None,
) -> Report:
    """Fits the training pipeline on a stratified 75/25 split and builds the report, as a run."""
    features = [
        Feature(name=n, type=t) for n, t in zip(names, types or ["float"] * len(names), strict=True)
    ]
    pipeline = build_pipeline(features, estimator)
    task = task_of(estimator)
    stratify = y if task == "classification" else None
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=stratify
    )
    pipeline.fit(x_train, y_train)
    return build_report(
        pipeline=pipeline,
        task=task,
        feature_names=names,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        metrics={"accuracy": 0.9} if task == "classification" else {"r2": 0.9},
        leaderboard=leaderboard or [],
        title=f"iris-classifier {HOSTILE} run-1",
    )


def clean_classification(classes: int = 2, rows: int = 1200) -> tuple[Array, Array, list[str]]:
    x, y = make_classification(
        n_samples=rows,
        n_features=6,
        n_informative=4,
        n_redundant=0,
        n_classes=classes,
        flip_y=0.05,
        random_state=0,
    )
    return x, y, [f"f{i}" for i in range(x.shape[1])]


def clean_regression(rows: int = 1200) -> tuple[Array, Array, list[str]]:
    x, y = make_regression(n_samples=rows, n_features=6, n_informative=4, noise=20, random_state=0)
    return x, y, [f"f{i}" for i in range(x.shape[1])]


def reasons(built: Report) -> list[str]:
    return [finding["reason"] for finding in built.findings]


def page(built: Report) -> str:
    return built.files[REPORT_FILE].decode()


def assert_valid_png(data: bytes) -> None:
    assert data.startswith(PNG_SIGNATURE)
    pixels = imread(io.BytesIO(data), format="png")
    height, width = pixels.shape[:2]
    assert height >= 200 and width >= 200


def assert_page_shows(built: Report, plots: set[str]) -> None:
    text = page(built)
    shown = set(re.findall(r'<img src="([^"]+)"', text))
    assert shown == plots
    for name in plots:
        assert_valid_png(built.files[name])
        # The page pins each plot by digest: a reader that trusts the page can check the plots.
        assert (
            f'<meta name="{REPORT_PLOT_PIN}" content="{name} {bytes_digest(built.files[name])}">'
            in (text)
        )


def test_a_binary_classifier_gets_its_four_plots_and_no_finding_on_clean_data() -> None:
    x, y, names = clean_classification()
    built = report(LogisticRegression(), x, y, names)
    assert set(built.files) == {REPORT_FILE, *CLASSIFIER_PLOTS}
    assert_page_shows(built, CLASSIFIER_PLOTS)
    assert built.findings == []
    assert "None: no class imbalance" in page(built)
    # Self-contained but for the plots: nothing to fetch, nothing to run.
    assert not re.search(r"<script|<link|<iframe|https?:|url\(", page(built))


def test_a_multiclass_classifier_with_hostile_labels_and_feature_names_is_escaped() -> None:
    x, y, names = clean_classification(classes=3)
    labels = np.array(["<b>setosa</b>", "$versicolor$", "virginica & co"], dtype=object)[y]
    names[0] = HOSTILE
    leaderboard = [
        {
            "rank": 1,
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"C": HOSTILE},
            "score": 0.91,
            "scoreStd": 0.02,
            "fitSeconds": 0.1,
        }
    ]
    built = report(LogisticRegression(), x, labels, names, leaderboard=leaderboard)
    assert set(built.files) == {REPORT_FILE, *CLASSIFIER_PLOTS}
    assert_page_shows(built, CLASSIFIER_PLOTS)
    text = page(built)
    assert "<script>" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "sklearn.linear_model.LogisticRegression" in text
    assert "each class against the rest" in text


def test_a_regressor_gets_prediction_and_residual_plots_and_no_finding_on_clean_data() -> None:
    x, y, names = clean_regression()
    built = report(Ridge(), x, y, names)
    assert set(built.files) == {REPORT_FILE, *REGRESSOR_PLOTS}
    assert_page_shows(built, REGRESSOR_PLOTS)
    assert built.findings == []


def test_the_same_model_and_data_give_the_same_bytes() -> None:
    x, y, names = clean_classification()
    assert report(LogisticRegression(), x, y, names) == report(LogisticRegression(), x, y, names)


def test_a_model_without_scores_gets_no_curves_and_a_note_saying_why() -> None:
    x, y, names = clean_classification()
    hard_vote = VotingClassifier(
        [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(max_depth=3))],
        voting="hard",
    )
    built = report(hard_vote, x, y, names)
    assert set(built.files) == {REPORT_FILE, "confusion_matrix.png", "feature_importance.png"}
    assert "neither class probabilities (predict_proba) nor decision scores" in page(built)


def test_class_imbalance_is_found_with_the_shares() -> None:
    x, y, names = clean_classification(rows=2000)
    rare = np.flatnonzero(y == 1)[:60]
    keep = np.concatenate([np.flatnonzero(y == 0), rare])
    built = report(LogisticRegression(), x[keep], y[keep], names)
    assert reasons(built) == ["ClassImbalance"]
    message = built.findings[0]["message"]
    assert "the rarest class '1' is 5.6% of the training split (45 of 804 rows)" in message
    assert "Class shares, rarest first: '1' 5.6%, '0' 94.4%." in message


def test_many_balanced_classes_are_not_an_imbalance() -> None:
    # Twelve even classes are 8.3 % each: under 10 %, but as balanced as twelve classes get.
    x, y = make_classification(
        n_samples=2400,
        n_features=8,
        n_informative=8,
        n_redundant=0,
        n_classes=12,
        n_clusters_per_class=1,
        class_sep=3.0,
        random_state=0,
    )
    built = report(LogisticRegression(), x, y, [f"f{i}" for i in range(8)])
    assert "ClassImbalance" not in reasons(built)


def test_overfitting_is_found_with_both_scores() -> None:
    x, y, names = clean_classification()
    noisy = np.where(np.random.default_rng(0).random(len(y)) < 0.3, 1 - y, y)
    built = report(DecisionTreeClassifier(random_state=0), x, noisy, names)
    assert reasons(built) == ["Overfitting"]
    message = built.findings[0]["message"]
    assert message.startswith("accuracy is 1.000 on the training split but 0.")
    assert "above 0.1" in message


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_feature_that_gives_the_label_away_is_possible_leakage(kind: str) -> None:
    x, y, names = clean_classification()
    leak = y.astype(float) if kind == "numeric" else np.array(["no", "yes"], dtype=object)[y]
    matrix = np.column_stack([x.astype(object), leak])
    types = ["float"] * len(names) + ["float" if kind == "numeric" else "string"]
    built = report(LogisticRegression(), matrix, y, [*names, "refund_issued"], types=types)
    assert reasons(built) == ["PossibleLeakage"]
    assert built.findings[0]["message"].startswith(
        "feature 'refund_issued' alone predicts the target with balanced_accuracy 1.000"
    )
    # As the run's status records them.
    assert [Finding.model_validate(f).model_dump() for f in built.findings] == built.findings


def test_a_regression_feature_that_is_the_target_is_possible_leakage() -> None:
    x, y, names = clean_regression()
    copy = y * 0.5 + np.random.default_rng(0).normal(0, 0.01, len(y))
    built = report(Ridge(), np.column_stack([x, copy]), y, [*names, "price_cents"])
    assert reasons(built) == ["PossibleLeakage"]
    assert "'price_cents' alone predicts the target with r2 " in built.findings[0]["message"]


def test_a_constant_target_is_no_leakage() -> None:
    # Against a constant target every feature "predicts" it with r2 1.0: nothing is learned.
    x, _, names = clean_regression()
    built = report(Ridge(), x, np.full(len(x), 3.0), names)
    assert "PossibleLeakage" not in reasons(built)


def test_wide_data_says_what_the_report_left_out() -> None:
    x, y = make_classification(n_samples=300, n_features=120, n_informative=10, random_state=0)
    built = report(LogisticRegression(), x, y, [f"f{i}" for i in range(120)])
    assert "feature_importance.png" not in built.files
    text = page(built)
    assert "Feature importance is not drawn: permutation importance of 120 features" in text
    assert "PossibleLeakage was checked on the first 100 of the 120 features only." in text
