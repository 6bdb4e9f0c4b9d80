"""The evaluation report of a training run: PNG plots on the test split, findings a reviewer would
flag (class imbalance, overfitting, single-feature leakage), and a small report.html that shows
them with the metrics and the leaderboard.

Every step is bounded and seeded: the plots and findings of the same data and model are the same
bytes, and a large split is sampled rather than scanned, so the report costs little beside the
training. report.html pins each plot's sha256 (layout.REPORT_PLOT_PIN), so a reader that trusts
report.html's digest (recorded in the run's status) can check the plots too.
"""

from __future__ import annotations

import html
import io
import json
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # no display in the pod; sklearn's displays import pyplot

import numpy as np
from sklearn.base import clone
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    PredictionErrorDisplay,
    RocCurveDisplay,
    accuracy_score,
    r2_score,
)
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import TargetEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from modelyard.api.trainingjob import LeaderboardEntry
from modelyard.reasons import Reason
from modelyard.storage.digest import bytes_digest
from modelyard.storage.layout import REPORT_FILE, REPORT_PLOT_PIN
from modelyard.workloads.training import fonts
from modelyard.workloads.training.importance import permutation_importance

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Nothing above loads matplotlib's font manager: the stored font list goes into place first.
fonts.seed_cache()

Array = np.ndarray[Any, Any]

SEED = 0

# ClassImbalance: the rarest training class below this share (or below half an even share when
# there are many classes, so that 20 balanced classes at 5 % each are not flagged) ...
IMBALANCE_SHARE = 0.10
# ... or the most common class more than this many times the rarest.
IMBALANCE_RATIO = 10.0
# Overfitting: training-split score (accuracy or r2) this far above the test score.
OVERFITTING_GAP = 0.10
# PossibleLeakage: one feature alone, through a small tree, predicts the target this well
# (balanced accuracy for classifiers, so a 98 % majority class does not pass for leakage; r2).
LEAKAGE_SCORE = 0.98
LEAKAGE_TREE_DEPTH = 6
LEAKAGE_FOLDS = 3
# Fewer training rows than this say nothing about leakage.
LEAKAGE_MIN_ROWS = 30
# Both permutation importance and the leakage check cost a few predict calls or fits per feature:
# wider data gets the leakage check on its first features only, and no importance plot.
MAX_FEATURES_CHECKED = 100

# Row bounds: a big split is sampled (seeded) so the report's cost does not grow with it.
LEAKAGE_ROWS = 2000
TRAIN_SCORE_ROWS = 5000
# Permutation importance predicts features x repeats shuffled copies of the sampled rows (in one
# call: importance.py). Both the copies (fewer repeats with many features, at least one) and the
# rows predicted in all are bounded.
IMPORTANCE_MAX_REPEATS = 5
IMPORTANCE_COPIES = 30
IMPORTANCE_ROWS_PREDICTED = 30_000
IMPORTANCE_MIN_ROWS = 200
IMPORTANCE_MAX_ROWS = 1000
IMPORTANCE_TOP = 20
# Curves drawn per plot for a multiclass model (the most frequent test classes).
MAX_CURVES = 12
# Confusion-matrix cells get their counts written up to this many classes.
MAX_ANNOTATED_CLASSES = 20
# Labels and names from user data are cut to this length in plots and messages.
LABEL_CHARS = 40
# Finding.message's limit in the API.
MESSAGE_CHARS = 1024
DPI = 100


@dataclass(frozen=True)
class Report:
    """report.html and its plots by file name, and the findings for the run's status."""

    files: dict[str, bytes]
    findings: list[dict[str, str]]


@dataclass
class _Plots:
    """PNG bytes by file name, with a caption each, and notes on plots that were skipped."""

    images: dict[str, bytes] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, caption: str, draw: Callable[[Figure], None]) -> None:
        from matplotlib.figure import Figure  # after fonts.seed_cache(): it loads the fonts

        figure = Figure(figsize=(6.4, 4.8), dpi=DPI, layout="constrained")
        draw(figure)
        buffer = io.BytesIO()
        # No Software/date chunks: the same plot is the same bytes. The constrained layout
        # already keeps every label inside the figure: a "tight" bounding box would only draw
        # it a second time to measure it.
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
        self.images[name] = buffer.getvalue()
        self.captions[name] = caption


def build_report(
    *,
    pipeline: Pipeline,
    task: str,
    feature_names: list[str],
    x_train: Array,
    y_train: Array,
    x_test: Array,
    y_test: Array,
    metrics: dict[str, float],
    leaderboard: list[dict[str, Any]],
    title: str,
) -> Report:
    """Plots and findings of a fitted pipeline on its own training and test splits.

    `pipeline` takes the raw feature matrix (columns in `feature_names` order); `task` is
    "classification" or "regression"; `leaderboard` holds LeaderboardEntry documents.
    """
    classification = task == "classification"
    predicted = pipeline.predict(x_test)
    plots = _Plots()
    with _plotting():
        if classification:
            _classification_plots(plots, pipeline, x_test, y_test, predicted)
        else:
            _regression_plots(plots, y_test, predicted)
        _importance_plot(plots, pipeline, classification, feature_names, x_test, y_test)
    checks = []
    if len(feature_names) > MAX_FEATURES_CHECKED:
        checks.append(
            f"PossibleLeakage was checked on the first {MAX_FEATURES_CHECKED} of the "
            f"{len(feature_names)} features only."
        )
    findings = [
        *(_class_imbalance(y_train) if classification else []),
        *_overfitting(pipeline, classification, x_train, y_train, y_test, predicted),
        *_leakage(classification, feature_names, x_train, y_train),
    ]
    page = _html(
        title=title,
        task=task,
        rows=(len(y_train), len(y_test)),
        metrics=metrics,
        leaderboard=[LeaderboardEntry.model_validate(entry) for entry in leaderboard],
        findings=findings,
        checks=checks,
        plots=plots,
    )
    return Report(files={REPORT_FILE: page, **plots.images}, findings=findings)


@contextmanager
def _plotting() -> Iterator[None]:
    # Labels come from user data: a "$" must not switch matplotlib into math mode.
    with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# Plots.


def _classification_plots(
    plots: _Plots, pipeline: Pipeline, x_test: Array, y_test: Array, predicted: Array
) -> None:
    classes = list(pipeline.classes_)
    names = [_short(c) for c in classes]

    def confusion(figure: Figure) -> None:
        ConfusionMatrixDisplay.from_predictions(
            y_test,
            predicted,
            labels=classes,
            display_labels=names,
            include_values=len(classes) <= MAX_ANNOTATED_CLASSES,
            xticks_rotation="vertical" if len(classes) > 4 else "horizontal",
            ax=figure.subplots(),
        )

    plots.add("confusion_matrix.png", "Confusion matrix on the test split.", confusion)
    scores = _scores(pipeline, x_test, len(classes))
    if scores is None:
        plots.notes.append(
            "ROC and precision-recall curves are not drawn: the model gives neither class "
            "probabilities (predict_proba) nor decision scores (decision_function)."
        )
        return
    shown = _curve_classes(classes, y_test)
    if not shown:
        plots.notes.append(
            "ROC and precision-recall curves are not drawn: the test split holds a single class."
        )
        return
    if len(classes) > 2 and len(shown) < len(classes):
        plots.notes.append(
            f"ROC and precision-recall curves show {len(shown)} of the {len(classes)} classes "
            "(the most frequent in the test split; a class absent from it has no curve)."
        )
    binary = len(classes) == 2
    against = f" of class {_short(classes[1])!r}" if binary else "s, each class against the rest"
    for name, display, caption, axes_labels in (
        ("roc.png", RocCurveDisplay, "ROC curve", ("false positive rate", "true positive rate")),
        ("precision_recall.png", PrecisionRecallDisplay, "Precision-recall curve", _PR_AXES),
    ):
        plots.add(
            name,
            f"{caption}{against}, on the test split.",
            _curves(display, axes_labels, y_test, scores, shown, binary),
        )


def _scores(pipeline: Pipeline, x: Array, n_classes: int) -> Array | None:
    """Per-class scores (n x classes), or the positive class's (n,) for a binary model."""
    for method in ("predict_proba", "decision_function"):
        if not hasattr(pipeline, method):
            continue
        try:
            scores: Array = np.asarray(getattr(pipeline, method)(x), dtype=np.float64)
        except (AttributeError, NotImplementedError):
            continue
        if n_classes == 2:
            return scores[:, 1] if scores.ndim == 2 else scores
        if scores.ndim == 2 and scores.shape[1] == n_classes:
            return scores
    return None


def _curve_classes(classes: list[Any], y_test: Array) -> list[tuple[int, Any]]:
    """(column, class) of the classes that get a curve: in the test split, the most frequent."""
    present, counts = np.unique(y_test, return_counts=True)
    if len(present) < 2:
        return []
    if len(classes) == 2:
        return [(1, classes[1])]
    frequency = dict(zip(present.tolist(), counts.tolist(), strict=True))
    ranked = sorted(
        (i for i, c in enumerate(classes) if _plain(c) in frequency),
        key=lambda i: -frequency[_plain(classes[i])],
    )
    return [(i, classes[i]) for i in sorted(ranked[:MAX_CURVES])]


_PR_AXES = ("recall", "precision")


def _curves(
    display: Any,
    axes_labels: tuple[str, str],
    y_test: Array,
    scores: Array,
    shown: list[tuple[int, Any]],
    binary: bool,
) -> Callable[[Figure], None]:
    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        for column, label in shown:
            display.from_predictions(
                y_test == label,
                scores if binary else scores[:, column],
                pos_label=True,
                name=_short(label),
                ax=axes,
            )
        axes.set_xlabel(axes_labels[0])
        axes.set_ylabel(axes_labels[1])
        axes.legend(fontsize="small", loc="best")

    return draw


def _regression_plots(plots: _Plots, y_test: Array, predicted: Array) -> None:
    def error_plot(kind: str) -> Callable[[Figure], None]:
        def draw(figure: Figure) -> None:
            PredictionErrorDisplay.from_predictions(
                y_test,
                predicted,
                kind=kind,
                subsample=1000,
                random_state=SEED,
                ax=figure.subplots(),
            )

        return draw

    sampled = " (a seeded sample of 1000 rows)" if len(y_test) > 1000 else ""
    plots.add(
        "predicted_vs_actual.png",
        f"Predicted against actual values on the test split{sampled}; the diagonal is a perfect "
        "prediction.",
        error_plot("actual_vs_predicted"),
    )
    plots.add(
        "residuals.png",
        f"Residuals (actual - predicted) against predicted values on the test split{sampled}.",
        error_plot("residual_vs_predicted"),
    )


def _importance_plot(
    plots: _Plots,
    pipeline: Pipeline,
    classification: bool,
    feature_names: list[str],
    x_test: Array,
    y_test: Array,
) -> None:
    if len(y_test) < 2 or not feature_names:
        plots.notes.append("Feature importance is not drawn: the test split is too small.")
        return
    if len(feature_names) > MAX_FEATURES_CHECKED:
        plots.notes.append(
            f"Feature importance is not drawn: permutation importance of {len(feature_names)} "
            f"features would cost more than the report may (at most {MAX_FEATURES_CHECKED})."
        )
        return
    repeats = min(IMPORTANCE_MAX_REPEATS, max(1, IMPORTANCE_COPIES // len(feature_names)))
    budget = IMPORTANCE_ROWS_PREDICTED // (len(feature_names) * repeats)
    rows = _sample(len(y_test), min(IMPORTANCE_MAX_ROWS, max(IMPORTANCE_MIN_ROWS, budget)))
    result = permutation_importance(
        pipeline,
        x_test[rows],
        y_test[rows],
        accuracy_score if classification else r2_score,
        repeats,
        SEED,
    )
    top = np.argsort(-result.mean, kind="stable")[:IMPORTANCE_TOP][::-1]
    metric = "accuracy" if classification else "r2"

    def draw(figure: Figure) -> None:
        axes: Axes = figure.subplots()
        axes.barh(
            [_short(feature_names[i]) for i in top],
            result.mean[top],
            xerr=result.std[top],
            color="tab:blue",
        )
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_xlabel(f"drop in {metric} when the feature is shuffled")
        axes.set_title("Permutation importance (test split)")

    shown = (
        f"the {len(top)} most important of {len(feature_names)}"
        if len(top) < len(feature_names)
        else f"all {len(feature_names)}"
    )
    plots.add(
        "feature_importance.png",
        f"Permutation importance of {shown} features: the mean drop in {metric} over "
        f"{repeats} shuffle(s) of each feature, on {len(rows)} test rows.",
        draw,
    )


# Findings.


def _class_imbalance(y_train: Array) -> list[dict[str, str]]:
    classes, counts = np.unique(y_train, return_counts=True)
    if len(classes) < 2:
        return []
    shares = counts / counts.sum()
    threshold = min(IMBALANCE_SHARE, 0.5 / len(classes))
    rarest, commonest = int(np.argmin(counts)), int(np.argmax(counts))
    ratio = counts[commonest] / counts[rarest]
    if shares[rarest] >= threshold and ratio <= IMBALANCE_RATIO:
        return []
    listed = ", ".join(
        f"{_short(classes[i])!r} {shares[i]:.1%}" for i in np.argsort(counts, kind="stable")[:8]
    )
    more = f" (and {len(classes) - 8} more)" if len(classes) > 8 else ""
    return [
        _finding(
            Reason.ClassImbalance,
            f"the rarest class {_short(classes[rarest])!r} is {shares[rarest]:.1%} of the "
            f"training split ({counts[rarest]} of {counts.sum()} rows) and the most common is "
            f"{ratio:.1f} times as frequent; flagged below {threshold:.1%} or above "
            f"{IMBALANCE_RATIO:g} times. Class shares, rarest first: {listed}{more}. Consider "
            "class_weight, resampling, or a metric such as balanced_accuracy or f1_macro.",
        )
    ]


def _overfitting(
    pipeline: Pipeline,
    classification: bool,
    x_train: Array,
    y_train: Array,
    y_test: Array,
    predicted: Array,
) -> list[dict[str, str]]:
    if len(y_train) == 0 or len(y_test) < 2:
        return []
    score, metric = (accuracy_score, "accuracy") if classification else (r2_score, "r2")
    rows = _sample(len(y_train), TRAIN_SCORE_ROWS)
    train = float(score(y_train[rows], pipeline.predict(x_train[rows])))
    test = float(score(y_test, predicted))
    if not (math.isfinite(train) and math.isfinite(test)) or train - test <= OVERFITTING_GAP:
        return []
    sampled = f", {len(rows)} sampled rows" if len(rows) < len(y_train) else ""
    return [
        _finding(
            Reason.Overfitting,
            f"{metric} is {train:.3f} on the training split{sampled} but {test:.3f} on the "
            f"test split: a gap of {train - test:.3f}, above {OVERFITTING_GAP:g}. The model "
            "learned the training rows more than the pattern; regularize it (e.g. max_depth, "
            "min_samples_leaf, alpha) or train on more data.",
        )
    ]


def _leakage(
    classification: bool, feature_names: list[str], x_train: Array, y_train: Array
) -> list[dict[str, str]]:
    """Features that alone predict the target: often the target itself under another name, or
    something known only after it (a refund flag when predicting fraud)."""
    if len(y_train) < LEAKAGE_MIN_ROWS or len(np.unique(y_train)) < 2:
        return []  # a constant target is predicted by anything: r2 would flag every feature
    rows = _sample(len(y_train), LEAKAGE_ROWS)
    y = y_train[rows]
    metric = "balanced_accuracy" if classification else "r2"
    folds = (
        StratifiedKFold(LEAKAGE_FOLDS, shuffle=True, random_state=SEED)
        if classification
        else KFold(LEAKAGE_FOLDS, shuffle=True, random_state=SEED)
    )
    findings = []
    for index, name in enumerate(feature_names[:MAX_FEATURES_CHECKED]):
        column, numeric = _column(x_train[rows, index])
        tree = (DecisionTreeClassifier if classification else DecisionTreeRegressor)(
            max_depth=LEAKAGE_TREE_DEPTH, random_state=SEED
        )
        # A category becomes its (cross-fitted) mean target, so a tree can group categories.
        model = (
            clone(tree)
            if numeric
            else make_pipeline(TargetEncoder(target_type="auto", cv=LEAKAGE_FOLDS), tree)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                score = float(np.mean(cross_val_score(model, column, y, cv=folds, scoring=metric)))
            except ValueError:
                continue  # e.g. too few rows of a class for the folds: no evidence either way
        if math.isfinite(score) and score >= LEAKAGE_SCORE:
            findings.append(
                _finding(
                    Reason.PossibleLeakage,
                    f"feature {_short(name)!r} alone predicts the target with {metric} "
                    f"{score:.3f} (a decision tree of depth {LEAKAGE_TREE_DEPTH} on that "
                    f"feature only, {LEAKAGE_FOLDS}-fold cross-validated on {len(rows)} "
                    f"training rows; flagged at {LEAKAGE_SCORE:g}). Check that it is known "
                    "before the target is, and is not the target under another name.",
                )
            )
    return findings


def _column(values: Array) -> tuple[Array, bool]:
    """One feature as a 2-D input of its own, and whether it is numeric."""
    try:
        return values.astype(np.float64).reshape(-1, 1), True
    except (TypeError, ValueError):
        return values.astype(object).reshape(-1, 1), False


def _finding(reason: Reason, message: str) -> dict[str, str]:
    return {"reason": reason.value, "message": message[:MESSAGE_CHARS]}


# Helpers.


def _sample(count: int, limit: int) -> Array:
    """Row indices: all of them, or a seeded sample of `limit` in their original order."""
    if count <= limit:
        return np.arange(count)
    rows: Array = np.sort(np.random.default_rng(SEED).choice(count, size=limit, replace=False))
    return rows


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _short(value: Any) -> str:
    text = str(_plain(value))
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


# The page.

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.finding { border-left: 4px solid #d97706; padding: 0.25rem 0.75rem; margin: 0.5rem 0; }
figure { margin: 1rem 0 2rem; } img { max-width: 100%; }
figcaption, .note { color: #555; }
"""


def _html(
    *,
    title: str,
    task: str,
    rows: tuple[int, int],
    metrics: dict[str, float],
    leaderboard: list[LeaderboardEntry],
    findings: list[dict[str, str]],
    checks: list[str],
    plots: _Plots,
) -> bytes:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        *(
            f'<meta name="{REPORT_PLOT_PIN}" content="{e(name)} {bytes_digest(data)}">'
            for name, data in plots.images.items()
        ),
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(task.capitalize())}; {rows[0]} training rows, {rows[1]} test rows.</p>",
        "<h2>Findings</h2>",
    ]
    if findings:
        parts += [
            f'<p class="finding"><strong>{e(f["reason"])}</strong>: {e(f["message"])}</p>'
            for f in findings
        ]
    else:
        parts.append("<p>None: no class imbalance, overfitting or single-feature leakage seen.</p>")
    parts += [f'<p class="note">{e(note)}</p>' for note in checks]
    parts += ["<h2>Metrics (test split)</h2>", "<table><tr><th>metric</th><th>value</th></tr>"]
    parts += [
        f'<tr><td>{e(name)}</td><td class="number">{value:.4g}</td></tr>'
        for name, value in metrics.items()
    ]
    parts.append("</table>")
    if leaderboard:
        parts += [
            "<h2>Leaderboard</h2>",
            "<p>Mean cross-validated score of each trial, best first (error metrics negated).</p>",
            "<table><tr><th>rank</th><th>estimator</th><th>params</th><th>score</th>"
            "<th>std</th><th>fit seconds</th></tr>",
        ]
        parts += [
            f'<tr><td class="number">{entry.rank}</td><td>{e(entry.estimator)}</td>'
            f"<td>{e(json.dumps(entry.params or {}, sort_keys=True, default=str))}</td>"
            f'<td class="number">{entry.score:.4g}</td>'
            f'<td class="number">{_optional(entry.score_std)}</td>'
            f'<td class="number">{_optional(entry.fit_seconds)}</td></tr>'
            for entry in leaderboard
        ]
        parts.append("</table>")
    parts.append("<h2>Plots</h2>")
    parts += [f'<p class="note">{e(note)}</p>' for note in plots.notes]
    parts += [
        f'<figure><img src="{e(name)}" alt="{e(caption)}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
        for name, caption in plots.captions.items()
    ]
    parts.append("</body></html>\n")
    return "\n".join(parts).encode()


def _optional(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
