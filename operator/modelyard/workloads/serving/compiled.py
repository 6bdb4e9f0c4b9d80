"""Pipelines recompiled into plain numpy, for the models training produces most often.

scikit-learn spends ~0.5 ms per predict() call on input validation, array-API dispatch and
dataframe detection before it does any arithmetic; for a one-row request that is nearly all
of the server's time. The server has already validated the input, so for pipelines built
only from the steps below it evaluates the fitted parameters directly with numpy: same
arithmetic, same order of operations, a few microseconds. Anything else, or any compiled
pipeline whose outputs differ from scikit-learn's on sample rows at load time (model.py
checks), is served by scikit-learn itself.

Supported: Pipeline, ColumnTransformer (integer column lists), SimpleImputer (NaN missing
values, no indicator), StandardScaler, MinMaxScaler, OneHotEncoder (no drop, no infrequent
categories), linear classifiers and single-output linear regressors, decision trees, random
forests and extra-trees (single output), histogram gradient boosting on numeric features
(binary and multiclass log-loss, squared-error regression). The last matters most: its
scikit-learn predict() starts an OpenMP team per call, which costs milliseconds per request on
a busy node. LightGBM's estimators are not recompiled: their booster predicts, on one thread,
with the parameters their predict() would pass, after the compiled preprocessing; only the
validation and wrapping around it are skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

Transform = Callable[[np.ndarray], np.ndarray]
InPlace = Callable[[np.ndarray], None]

_LINEAR_CLASSIFIERS = (LogisticRegression, RidgeClassifier, SGDClassifier, LinearSVC)
_LINEAR_REGRESSORS = (LinearRegression, Ridge, Lasso, ElasticNet, SGDRegressor)
_FORESTS = (
    RandomForestClassifier,
    RandomForestRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
)
_TREES = (DecisionTreeClassifier, DecisionTreeRegressor)


class Unsupported(Exception):
    """A step this module does not reproduce; the model is served by scikit-learn."""


@dataclass(frozen=True)
class Compiled:
    predict: Transform
    predict_proba: Transform | None  # None: not compiled; scikit-learn computes it


def compile_pipeline(estimator: Any) -> Compiled | None:
    try:
        if isinstance(estimator, Pipeline):
            *steps, final = [step for _, step in estimator.steps]
        else:
            steps, final = [], estimator
        transform = _chain(
            [_transformer(step) for step in steps if step not in (None, "passthrough")]
        )
        predict, proba = _final(final)
    except Unsupported:
        return None

    def predict_all(matrix: np.ndarray) -> np.ndarray:
        return predict(transform(matrix))

    if proba is None:
        return Compiled(predict_all, None)
    compiled_proba = proba  # bound for the closure, narrowed for mypy

    def proba_all(matrix: np.ndarray) -> np.ndarray:
        return compiled_proba(transform(matrix))

    return Compiled(predict_all, proba_all)


@dataclass(frozen=True)
class _Elementwise:
    """Numeric steps run in place on one private float64 copy: one copy per request, not one
    per step (scikit-learn copies at each step too, so the arithmetic is the same)."""

    steps: tuple[InPlace, ...]

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        result = np.array(matrix, dtype=np.float64)
        for step in self.steps:
            step(result)
        return result


def _chain(transforms: list[Transform]) -> Transform:
    merged: list[Transform] = []
    for transform in transforms:
        previous = merged[-1] if merged else None
        if isinstance(previous, _Elementwise) and isinstance(transform, _Elementwise):
            merged[-1] = _Elementwise(previous.steps + transform.steps)
        else:
            merged.append(transform)
    transforms = merged
    if not transforms:
        return _identity
    if len(transforms) == 1:
        return transforms[0]

    def run(matrix: np.ndarray) -> np.ndarray:
        for transform in transforms:
            matrix = transform(matrix)
        return matrix

    return run


def _identity(matrix: np.ndarray) -> np.ndarray:
    return matrix


def _transformer(step: Any) -> Transform:
    kind = type(step)
    if kind is Pipeline:
        return _chain(
            [_transformer(inner) for _, inner in step.steps if inner not in (None, "passthrough")]
        )
    if kind is ColumnTransformer:
        return _column_transformer(step)
    if kind is SimpleImputer:
        return _imputer(step)
    if kind is StandardScaler:
        return _standard_scaler(step)
    if kind is MinMaxScaler:
        return _min_max_scaler(step)
    if kind is OneHotEncoder:
        return _one_hot(step)
    raise Unsupported(kind.__name__)


def _column_transformer(step: ColumnTransformer) -> Transform:
    blocks: list[tuple[np.ndarray, Transform]] = []
    for _, transformer, columns in step.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        if not isinstance(columns, list | np.ndarray) or not all(
            isinstance(c, int | np.integer) and not isinstance(c, bool) for c in columns
        ):
            raise Unsupported("ColumnTransformer columns other than integer lists")
        if len(columns) == 0:
            continue  # scikit-learn skips empty selections too
        inner = _identity if transformer == "passthrough" else _transformer(transformer)
        blocks.append((np.asarray(columns, dtype=np.intp), inner))
    if not blocks:
        raise Unsupported("ColumnTransformer that drops everything")
    if len(blocks) == 1 and blocks[0][0].tolist() == list(range(step.n_features_in_)):
        return blocks[0][1]  # every column, in order: selecting them would only copy

    def run(matrix: np.ndarray) -> np.ndarray:
        parts = [inner(matrix[:, columns]) for columns, inner in blocks]
        return parts[0] if len(parts) == 1 else np.hstack(parts)

    return run


def _imputer(step: SimpleImputer) -> Transform:
    missing = step.missing_values
    if step.add_indicator or not (isinstance(missing, float) and np.isnan(missing)):
        raise Unsupported("SimpleImputer with an indicator or non-NaN missing values")
    statistics = step.statistics_
    if step.strategy in ("mean", "median"):
        fill = np.asarray(statistics, dtype=np.float64)
        if np.isnan(fill).any():
            raise Unsupported("SimpleImputer that drops all-missing columns")

        def impute(result: np.ndarray) -> None:
            np.copyto(result, fill, where=np.isnan(result))

        return _Elementwise((impute,))
    values = np.asarray(statistics, dtype=object)
    if any(isinstance(v, float) and np.isnan(v) for v in values):
        raise Unsupported("SimpleImputer that drops all-missing columns")

    def categorical(matrix: np.ndarray) -> np.ndarray:
        result = np.array(matrix, dtype=object)
        mask = result != result  # NaN is the only value unequal to itself
        if mask.any():
            result[mask] = values[np.nonzero(mask)[1]]
        return result

    return categorical


def _standard_scaler(step: StandardScaler) -> Transform:
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std else None

    def standardize(result: np.ndarray) -> None:
        if mean is not None:
            result -= mean
        if scale is not None:
            result /= scale

    return _Elementwise((standardize,))


def _min_max_scaler(step: MinMaxScaler) -> Transform:
    scale, offset = step.scale_, step.min_
    low, high = step.feature_range
    clip = step.clip

    def rescale(result: np.ndarray) -> None:
        result *= scale
        result += offset
        if clip:
            np.clip(result, low, high, out=result)

    return _Elementwise((rescale,))


def _one_hot(step: OneHotEncoder) -> Transform:
    if step.drop_idx_ is not None or getattr(step, "_infrequent_enabled", False):
        raise Unsupported("OneHotEncoder with drop or infrequent categories")
    if step.handle_unknown not in ("ignore", "error"):
        raise Unsupported(f"OneHotEncoder(handle_unknown={step.handle_unknown!r})")
    lookups: list[dict[Any, int]] = []
    offsets: list[int] = []
    width = 0
    for categories in step.categories_:
        values = categories.tolist()
        if any(isinstance(v, float) and np.isnan(v) for v in values):
            raise Unsupported("OneHotEncoder with NaN as a category")
        lookups.append({value: i for i, value in enumerate(values)})
        offsets.append(width)
        width += len(values)
    ignore = step.handle_unknown == "ignore"
    columns = list(zip(lookups, offsets, strict=True))

    def run(matrix: np.ndarray) -> np.ndarray:
        result = np.zeros((len(matrix), width))
        for j, (lookup, offset) in enumerate(columns):
            for r, value in enumerate(matrix[:, j].tolist()):
                position = lookup.get(value)
                if position is not None:
                    result[r, offset + position] = 1.0
                elif not ignore:
                    # scikit-learn's own wording, so answers do not depend on the path taken.
                    raise ValueError(
                        f"Found unknown categories [{value!r}] in column {j} during transform"
                    )
        return result

    return run


def _final(step: Any) -> tuple[Transform, Transform | None]:
    kind = type(step)
    if kind in _LINEAR_CLASSIFIERS:
        return _linear_classifier(step)
    if kind in _TREES:
        return _trees(step, [step], classifier=kind is DecisionTreeClassifier, average=False)
    if kind in _FORESTS:
        classifier = kind in (RandomForestClassifier, ExtraTreesClassifier)
        return _trees(step, list(step.estimators_), classifier=classifier, average=True)
    if kind in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
        return _hist_gradient_boosting(step)
    if kind.__module__.startswith("lightgbm."):
        return _lightgbm(step)
    if kind in _LINEAR_REGRESSORS:
        coef = np.asarray(step.coef_, dtype=np.float64)
        if coef.ndim != 1:
            raise Unsupported("multi-output regression")
        intercept = step.intercept_

        def regress(matrix: np.ndarray) -> np.ndarray:
            result: np.ndarray = matrix @ coef + intercept
            return result

        return regress, None
    raise Unsupported(kind.__name__)


def _linear_classifier(step: Any) -> tuple[Transform, Transform | None]:
    coef = step.coef_
    if not isinstance(coef, np.ndarray) or coef.ndim not in (1, 2):
        raise Unsupported("sparse or malformed coefficients")
    if coef.ndim == 1:  # RidgeClassifier keeps a binary problem's coefficients flat
        coef = coef.reshape(1, -1)
    coef_t = coef.T
    intercept = step.intercept_
    classes = step.classes_
    binary = coef.shape[0] == 1

    def decision(matrix: np.ndarray) -> np.ndarray:
        scores: np.ndarray = matrix @ coef_t + intercept
        return scores

    def predict(matrix: np.ndarray) -> np.ndarray:
        scores = decision(matrix)
        indices = (scores[:, 0] > 0).astype(np.intp) if binary else np.argmax(scores, axis=1)
        result: np.ndarray = classes[indices]
        return result

    if type(step) is not LogisticRegression:
        return predict, None

    def proba(matrix: np.ndarray) -> np.ndarray:
        scores = decision(matrix)
        if binary:
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack((1.0 - positive, positive))
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    return predict, proba


@dataclass(frozen=True)
class _Forest:
    """Nodes of many trees in flat arrays, renumbered so that a split's right child directly
    follows its left one; a leaf's child is itself and it never steps right."""

    child: np.ndarray  # left child; the right one is child + 1
    feature: np.ndarray
    threshold: np.ndarray  # +inf at leaves: nothing is greater
    missing_right: np.ndarray  # NaN steps right here (False at leaves)
    roots: np.ndarray  # first node of each tree, deepest trees first
    busy: tuple[int, ...]  # per level, how many of the roots' trees are deeper than it
    unsort: np.ndarray | None  # position in roots of each tree, in the model's order
    source: np.ndarray  # for each node here, its index among the trees' original nodes
    as_float32: bool  # scikit-learn's trees compare float32 inputs; boosting compares float64
    walk_from: int = 1  # batches this large or larger take the walk (see _crossover)

    def leaves(self, matrix: np.ndarray) -> np.ndarray:
        """Leaf per (tree, row), shape [trees, rows], trees in the model's order."""
        dtype = np.float32 if self.as_float32 else np.float64
        data = np.asarray(np.asarray(matrix, dtype=dtype), dtype=np.float64)
        pick = self.walk if len(data) >= self.walk_from else self.every_node
        result = pick(data).reshape(len(self.roots), len(data))
        if self.unsort is not None:
            result = result.take(self.unsort, axis=0)
        return result

    def walk(self, data: np.ndarray) -> np.ndarray:
        """Leaf per (tree, row) pair, flat, pairs tree-major, trees deepest first.

        All pairs step down one level together: a gather each of the node's feature, the
        row's value of it, the threshold and the child. Only nodes on the rows' paths are
        read, and the pairs of trees already at their leaves (a tail, as the deepest trees
        come first) are left alone.
        """
        rows, width = data.shape
        values = data.ravel()
        node = np.repeat(self.roots, rows)
        offsets = np.arange(len(node), dtype=np.intp) % rows
        offsets *= width
        missing = bool(np.isnan(values).any())
        for count in self.busy:
            pairs = count * rows
            current = node[:pairs]
            index = self.feature.take(current)
            index += offsets[:pairs]
            x = values.take(index)
            right = x > self.threshold.take(current)  # NaN is never greater
            if missing:
                right |= np.isnan(x) & self.missing_right.take(current)
            following = self.child.take(current)
            following += right
            node[:pairs] = following
        return node

    def every_node(self, data: np.ndarray) -> np.ndarray:
        """As walk(), by deciding every split of every tree for every row at once ([rows x
        nodes] comparisons), then stepping through that table: fewer, larger numpy calls,
        which wins for a row or two."""
        rows = len(data)
        nodes = len(self.child)
        x = data.take(self.feature, axis=1)
        right = x > self.threshold
        if np.isnan(x).any():
            right |= np.isnan(x) & self.missing_right
        following = self.child + right  # next node per (row, node), into the flat table
        if rows == 1:
            node = self.roots
            for _ in self.busy:  # whole-array steps: cheaper than slicing for so few pairs
                node = following.take(node)
            return node
        starts = np.arange(0, rows * nodes, nodes, dtype=np.intp)
        following += starts[:, None]
        table = following.ravel()
        node = (self.roots[:, None] + starts).ravel()
        for _ in self.busy:
            node = table.take(node)
        node %= nodes
        return node


def _forest(
    trees: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    width: int,
    as_float32: bool,
) -> _Forest:
    """From per-tree (left, right, feature, threshold, missing-goes-left, is-leaf) arrays, for
    inputs of `width` columns."""
    laid_out = [_breadth_first(*tree) for tree in trees]
    depths = np.asarray([depth for *_, depth in laid_out])
    order = np.argsort(-depths, kind="stable")
    sizes = np.asarray([len(layout[0]) for layout in laid_out])
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # of each tree's original nodes
    children, features, thresholds, missing, sources, roots = [], [], [], [], [], []
    offset = 0
    for tree in order:
        source, child, feature, threshold, missing_right, _ = laid_out[tree]
        children.append(child + offset)
        features.append(feature)
        thresholds.append(threshold)
        missing.append(missing_right)
        sources.append(source + starts[tree])
        roots.append(offset)
        offset += len(source)
    forest = _Forest(
        child=np.concatenate(children).astype(np.intp),
        feature=np.concatenate(features).astype(np.intp),
        threshold=np.concatenate(thresholds).astype(np.float64),
        missing_right=np.concatenate(missing).astype(bool),
        roots=np.asarray(roots, dtype=np.intp),
        busy=tuple(int((depths > level).sum()) for level in range(int(depths.max()))),
        unsort=None if (order == np.arange(len(order))).all() else np.argsort(order),
        source=np.concatenate(sources).astype(np.intp),
        as_float32=as_float32,
    )
    return replace(forest, walk_from=_crossover(forest, width))


def _crossover(forest: _Forest, width: int) -> int:
    """The smallest batch for which the walk is faster than deciding every node, timed here
    once: it depends on the forest's shape and on the machine. Both give the same leaves."""
    for rows in _CROSSOVER_BATCHES:
        if rows * len(forest.child) > _EVERY_NODE_LIMIT:
            return rows
        data = np.zeros((rows, width))
        if _fastest(forest.walk, data) <= _fastest(forest.every_node, data):
            return rows
    return _CROSSOVER_BATCHES[-1] * 2


_CROSSOVER_BATCHES = (1, 2, 4, 8, 16, 32)
_EVERY_NODE_LIMIT = 1 << 20  # [rows x nodes] elements; beyond, deciding every node is too big


def _fastest(function: Callable[[np.ndarray], np.ndarray], data: np.ndarray) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        function(data)
        best = min(best, time.perf_counter() - started)
    return best


def _breadth_first(
    left: np.ndarray,
    right: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    go_left_if_missing: np.ndarray,
    leaf: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """One tree renumbered breadth first, siblings side by side: (original node per new
    node, left child, feature, threshold, missing-goes-right, depth). Level by level, so a
    forest of millions of nodes loads in numpy's time, not Python's."""
    is_leaf_at = np.asarray(leaf, dtype=bool)
    level = np.zeros(1, dtype=np.intp)
    levels, children = [], []
    numbered = 0  # nodes of the levels above this one
    while len(level):
        levels.append(level)
        split = ~is_leaf_at[level]
        below = numbered + len(level)  # where the next level's numbers start
        # The k-th split of this level has its children at below + 2k and below + 2k + 1;
        # a leaf is its own child.
        children.append(
            np.where(split, below + 2 * (np.cumsum(split) - 1), numbered + np.arange(len(level)))
        )
        numbered = below
        level = np.column_stack((left[level[split]], right[level[split]])).ravel().astype(np.intp)
    nodes = np.concatenate(levels)
    is_leaf = is_leaf_at[nodes]
    return (
        nodes,
        np.concatenate(children).astype(np.intp),
        np.where(is_leaf, 0, np.asarray(feature)[nodes]),
        np.where(is_leaf, np.inf, np.asarray(threshold, dtype=np.float64)[nodes]),
        ~is_leaf & ~np.asarray(go_left_if_missing, dtype=bool)[nodes],
        len(levels) - 1,
    )


def _trees(
    step: Any, trees: list[Any], classifier: bool, average: bool
) -> tuple[Transform, Transform | None]:
    """Like scikit-learn, inputs are compared as float32, NaN follows each split's
    missing-value direction, a forest adds its trees' outputs in order and divides by their
    number."""
    if step.n_outputs_ != 1:
        raise Unsupported("multi-output trees")
    structures = [tree.tree_ for tree in trees]
    forest = _forest(
        [
            (
                structure.children_left,
                structure.children_right,
                structure.feature,
                structure.threshold,
                structure.missing_go_to_left,
                structure.children_left == -1,
            )
            for structure in structures
        ],
        width=step.n_features_in_,
        as_float32=True,
    )
    if classifier:
        value = np.concatenate([s.value[:, 0, : len(step.classes_)] for s in structures])
    else:
        value = np.concatenate([s.value[:, 0, 0] for s in structures])
    value = value[forest.source]
    count = len(trees)

    def outputs(matrix: np.ndarray) -> np.ndarray:
        per_tree: np.ndarray = value[forest.leaves(matrix)]  # [trees, rows(, classes)]
        if not average:
            single: np.ndarray = per_tree[0]
            return single
        total: np.ndarray = np.add.reduce(per_tree, axis=0)  # tree by tree, in order
        total /= count
        return total

    if not classifier:
        return outputs, None
    classes = step.classes_

    def predict(matrix: np.ndarray) -> np.ndarray:
        result: np.ndarray = classes.take(np.argmax(outputs(matrix), axis=1), axis=0)
        return result

    return predict, outputs


def _hist_gradient_boosting(step: Any) -> tuple[Transform, Transform | None]:
    """Raw score = baseline + every tree's leaf value, in iteration order, per class; then the
    loss's inverse link (sigmoid, softmax, identity), as scikit-learn's _raw_predict does."""
    loss = type(step._loss).__name__
    if step.is_categorical_ is not None or getattr(step, "_preprocessor", None) is not None:
        raise Unsupported("histogram gradient boosting with categorical features")
    if loss not in ("HalfBinomialLoss", "HalfMultinomialLoss", "HalfSquaredError"):
        raise Unsupported(f"histogram gradient boosting with {loss}")
    per_class = step.n_trees_per_iteration_
    # Iteration-major, so trees [i * per_class + k] belong to class k.
    predictors = [predictor for iteration in step._predictors for predictor in iteration]
    nodes = [predictor.nodes for predictor in predictors]
    forest = _forest(
        [
            (
                n["left"],
                n["right"],
                n["feature_idx"],
                n["num_threshold"],
                n["missing_go_to_left"],
                n["is_leaf"].astype(bool),
            )
            for n in nodes
        ],
        width=step.n_features_in_,
        as_float32=False,
    )
    value = np.concatenate([n["value"] for n in nodes]).astype(np.float64)[forest.source]
    baseline = np.asarray(step._baseline_prediction, dtype=np.float64).reshape(per_class, 1)
    iterations = len(step._predictors)

    def raw(matrix: np.ndarray) -> np.ndarray:
        leaves = forest.leaves(matrix).reshape(iterations, per_class, -1)
        # The baseline, then each iteration's leaves, summed one after the other (a reduction
        # over the outer axis adds in order): the very additions scikit-learn makes.
        terms = np.empty((iterations + 1, *leaves.shape[1:]))
        terms[0] = baseline
        np.take(value, leaves, out=terms[1:])
        total: np.ndarray = np.add.reduce(terms, axis=0).T  # [rows, per_class]
        return total

    if loss == "HalfSquaredError":

        def regress(matrix: np.ndarray) -> np.ndarray:
            result: np.ndarray = raw(matrix)[:, 0]
            return result

        return regress, None

    def proba(matrix: np.ndarray) -> np.ndarray:
        scores = raw(matrix)
        if per_class == 1:
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack((1.0 - positive, positive))
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    classes = step.classes_

    def predict(matrix: np.ndarray) -> np.ndarray:
        result: np.ndarray = classes.take(np.argmax(proba(matrix), axis=1), axis=0)
        return result

    return predict, proba


def _lightgbm(step: Any) -> tuple[Transform, Transform | None]:
    """LightGBM's LGBMClassifier / LGBMRegressor.predict() without their input validation:
    the booster's predict with the parameters they would pass, then their post-processing
    (the probability of each class of a binary model, the label of the likeliest class)."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from lightgbm.basic import _ConfigAliases

    if type(step) not in (LGBMClassifier, LGBMRegressor) or callable(step.objective):
        raise Unsupported(f"{type(step).__name__} with its objective")
    params = step._process_params(stage="predict")
    # What LGBMModel.predict() removes, passes by itself, or sets per call (its threads).
    for alias in _ConfigAliases.get_by_alias(
        "data",
        "X",
        "raw_score",
        "start_iteration",
        "num_iteration",
        "pred_leaf",
        "pred_contrib",
        "num_threads",
    ):
        params.pop(alias, None)
    params["num_threads"] = 1  # a request's rows are few: an OpenMP team costs more than it saves
    booster = step.booster_

    def booster_predict(matrix: np.ndarray) -> np.ndarray:
        result: np.ndarray = booster.predict(matrix, validate_features=False, **params)
        return result

    if type(step) is LGBMRegressor:
        return booster_predict, None
    classes = step.classes_
    multiclass = step.n_classes_ > 2

    def proba(matrix: np.ndarray) -> np.ndarray:
        result = booster_predict(matrix)
        return result if multiclass else np.vstack((1.0 - result, result)).transpose()

    def predict(matrix: np.ndarray) -> np.ndarray:
        result: np.ndarray = classes.take(np.argmax(proba(matrix), axis=1), axis=0)
        return result

    return predict, proba
