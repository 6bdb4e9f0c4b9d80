"""Model selection: which estimator, with which parameters, becomes a run's model.

`plan` reads the spec (spec.estimator with an optional spec.search, or spec.candidates) and
refuses everything it can get wrong before any data is downloaded. `select` then
cross-validates every candidate's search on the training split and refits the best on all of
it. With candidates, every search runs on the same folds (one seeded splitter), so scores compare
like for like; every trial goes on the leaderboard, ranked by mean cross-validated score.

A spec without candidates trains exactly as before candidates existed: the same pipeline, the
same search (scikit-learn's default folds) and the same refit, so its model does not change.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import parallel_config
from joblib.externals.loky import get_reusable_executor
from lightgbm.basic import LightGBMError
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    ParameterGrid,
    RandomizedSearchCV,
    StratifiedKFold,
    check_cv,
)
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import threadpool_limits

from modelyard.api.trainingjob import (
    Metric,
    SearchSpec,
    SearchStrategy,
    TrainingJobSpec,
    search_trials,
)
from modelyard.config import OperatorConfig
from modelyard.reasons import Reason
from modelyard.workloads.common.modelcard import Feature, Trial
from modelyard.workloads.common.termination import EXIT_INVALID_DATA, EXIT_USAGE, WorkloadError
from modelyard.workloads.training.evaluation import SCORERS
from modelyard.workloads.training.pipeline import (
    ESTIMATOR_STEP,
    build_estimator,
    build_pipeline,
    estimator_class,
    task_of,
)

# The operator passes its own limit; run by hand, the operator's default applies.
DEFAULT_MAX_SEARCH_TRIALS = OperatorConfig.max_search_trials
# Whole CPUs of the pod's limit, from the downward API (resources/jobs.py).
CPUS_ENV = "MODELYARD_CPUS"
DEFAULT_METRIC = {"classification": Metric.ACCURACY, "regression": Metric.R2}
ESTIMATOR_PREFIX = "spec.estimator"


@dataclass(frozen=True)
class Candidate:
    """One estimator to cross-validate, with the spec fields that name its parts."""

    where: str  # spec.estimator or spec.candidates[i]
    class_: str
    params: dict[str, Any]
    space: dict[str, list[Any]] | None  # values to search per parameter; None: params alone
    space_field: str  # spec.search.params or spec.candidates[i].searchSpace
    estimator: BaseEstimator
    pipeline: Pipeline


@dataclass(frozen=True)
class Plan:
    task: str
    candidates: list[Candidate]
    search: SearchSpec | None
    metric: Metric  # what cross-validation scores by
    shared_folds: bool  # candidates: one seeded splitter; a lone estimator keeps the default


@dataclass(frozen=True)
class Selected:
    pipeline: Pipeline  # fitted on the whole training split
    estimator: str
    params: dict[str, Any]
    leaderboard: list[Trial]  # every trial, best first; empty when nothing was searched


def cpus() -> int:
    """Processes the search may use: the pod's whole CPUs (MODELYARD_CPUS), never more than
    this process may run on, at least one."""
    available = len(os.sched_getaffinity(0))
    try:
        given = int(os.environ.get(CPUS_ENV) or available)
    except ValueError:
        given = available
    return max(1, min(given, available))


def plan(spec: TrainingJobSpec, features: list[Feature], target: str) -> Plan:
    """Every candidate's pipeline and search space, checked; WorkloadError for what is wrong."""
    if spec.candidates:
        candidates = [
            _candidate(
                f"spec.candidates[{i}]",
                c.class_,
                c.params,
                c.search_space,
                f"spec.candidates[{i}].searchSpace",
                features,
                spec,
                target,
            )
            for i, c in enumerate(spec.candidates)
        ]
    else:
        assert spec.estimator is not None  # the API's rule: exactly one of the two
        candidates = [
            _candidate(
                ESTIMATOR_PREFIX,
                spec.estimator.class_,
                spec.estimator.params,
                spec.search.params if spec.search else None,
                "spec.search.params",
                features,
                spec,
                target,
            )
        ]
    task = task_of(candidates[0].estimator)
    for candidate in candidates[1:]:
        if task_of(candidate.estimator) != task:
            raise WorkloadError(
                Reason.MixedTasks,
                f"{candidate.where}.class: {candidate.class_} does "
                f"{task_of(candidate.estimator)}, but {candidates[0].where}.class "
                f"{candidates[0].class_} does {task}: candidates compete on one task",
                EXIT_USAGE,
            )
    _check_trials(spec)
    metric = Metric(spec.objective.metric) if spec.objective else DEFAULT_METRIC[task]
    return Plan(task, candidates, spec.search, metric, shared_folds=bool(spec.candidates))


def _candidate(
    where: str,
    class_: str,
    params: dict[str, Any] | None,
    space: dict[str, Any] | None,
    space_field: str,
    features: list[Feature],
    spec: TrainingJobSpec,
    target: str,
) -> Candidate:
    try:
        # Candidates compete: an unseeded one (a forest, boosting) would score differently on
        # every run, and so could the winner. Seeded, the same data selects the same model.
        if (
            where != ESTIMATOR_PREFIX
            and "random_state" not in {**(params or {}), **(space or {})}
            and "random_state" in estimator_class(class_)().get_params()
        ):
            params = {**(params or {}), "random_state": 0}
        # A lone fit may use every CPU; a search runs one fit per CPU (select), one thread each.
        threads = 1 if spec.search or spec.candidates else cpus()
        estimator = build_estimator(class_, params, threads)
    except WorkloadError as error:
        # pipeline.py names spec.estimator; a candidate's own field is what needs fixing.
        raise WorkloadError(error.reason, _relabel(error.message, where), error.exit_code) from None
    grid = _space(space, space_field, class_, params or {}) if space is not None else None
    pipeline = build_pipeline(features, estimator, spec.feature_engineering, target)
    return Candidate(where, class_, dict(params or {}), grid, space_field, estimator, pipeline)


def _relabel(message: str, where: str) -> str:
    return where + message.removeprefix(ESTIMATOR_PREFIX) if where != ESTIMATOR_PREFIX else message


def _space(
    space: dict[str, Any], field: str, class_: str, params: dict[str, Any]
) -> dict[str, list[Any]]:
    """The search space, each value checked against the estimator (an unknown parameter, a
    negative depth) so a mistake is refused now, not after the download and half the fits."""
    grid: dict[str, list[Any]] = {}
    for key, values in space.items():
        if not isinstance(values, list) or not values:
            raise WorkloadError(
                Reason.InvalidSearch,
                f"{field}.{key}: expected a non-empty list of candidate values",
                EXIT_USAGE,
            )
        for value in values:
            try:
                build_estimator(class_, {**params, key: value})
            except WorkloadError as error:
                detail = error.message.removeprefix(f"{ESTIMATOR_PREFIX}.params: ")
                raise WorkloadError(error.reason, f"{field}.{key}: {detail}", EXIT_USAGE) from None
        grid[key] = values
    return grid


def _check_trials(spec: TrainingJobSpec) -> None:
    limit = int(os.environ.get("MODELYARD_MAX_SEARCH_TRIALS") or DEFAULT_MAX_SEARCH_TRIALS)
    trials = search_trials(spec)
    if trials > limit:
        where = "spec.candidates" if spec.candidates else "spec.search"
        raise WorkloadError(
            Reason.SearchTooLarge,
            f"{where}: {trials} candidates, more than the {limit} allowed",
            EXIT_USAGE,
        )


def select(chosen: Plan, x: Any, y: Any, n_jobs: int, backend: str | None = None) -> Selected:
    """Cross-validate every candidate on (x, y), refit the best on all of it, within `n_jobs`
    CPUs: as many processes, and native threads (OpenMP, BLAS) bounded to match, since they
    default to every core of the node and a pod's CPU quota would throttle them.

    `backend`: a joblib backend of the run's engine (engine.search_backend), which runs the
    searches' fits on its workers, as many at once as they have threads. The folds are made
    here, the ones the search would make, so that they go to the engine once with (x, y) and
    before any fit, not with every fit. The best is refitted here."""
    with threadpool_limits(limits=n_jobs):
        if backend is not None:
            folds = _folds(chosen, x, y)
            arrays = [x, y, *(part for fold in folds for part in fold)]
            with parallel_config(backend=backend, scatter=arrays):
                return _select(chosen, x, y, -1, folds)
        try:
            return _select(chosen, x, y, n_jobs)
        finally:
            if n_jobs > 1:
                # joblib keeps its worker processes for a next search. There is none, and left
                # running they would outlive the trainer, holding its output pipes open.
                get_reusable_executor(reuse=True).shutdown(wait=True)


def _folds(chosen: Plan, x: Any, y: Any) -> list[tuple[Any, Any]]:
    """The searches' folds: with candidates, one seeded splitter's; otherwise the ones
    scikit-learn's search makes from spec.search.cv (its check_cv); none without a search."""
    search = chosen.search or SearchSpec()
    if chosen.shared_folds:
        splitter = (
            StratifiedKFold(search.cv, shuffle=True, random_state=0)
            if chosen.task == "classification"
            else KFold(search.cv, shuffle=True, random_state=0)
        )
    elif chosen.search is not None:
        classifier = is_classifier(chosen.candidates[0].pipeline)
        splitter = check_cv(search.cv, y, classifier=classifier)
    else:
        return []
    try:
        return list(splitter.split(x, y))
    except ValueError as error:  # fewer rows of a class than folds, say
        raise WorkloadError(
            Reason.TrainingFailed, f"spec.search.cv: {error}", EXIT_INVALID_DATA
        ) from None


def _select(
    chosen: Plan, x: Any, y: Any, n_jobs: int, folds: list[tuple[Any, Any]] | None = None
) -> Selected:
    if not chosen.shared_folds:
        return _single(chosen, chosen.candidates[0], x, y, n_jobs, folds)
    search = chosen.search or SearchSpec()
    if folds is None:
        folds = _folds(chosen, x, y)
    trials: list[dict[str, Any]] = []
    for index, candidate in enumerate(chosen.candidates):
        searched = _searcher(candidate, search, chosen.metric, folds, n_jobs, True)
        _run(candidate, searched, x, y)
        trials += _entries(candidate, searched.cv_results_, index)
    trials.sort(key=_order)
    best = chosen.candidates[trials[0]["candidate"]]
    best_searched = trials[0]["searched"]
    fitted = clone(best.pipeline).set_params(
        **{f"{ESTIMATOR_STEP}__{k}": v for k, v in best_searched.items()}
    )
    _run(best, fitted, x, y)
    return Selected(
        pipeline=fitted,
        estimator=best.class_,
        params={**best.params, **_plain(best_searched)},
        leaderboard=_ranked(trials),
    )


def _single(
    chosen: Plan,
    candidate: Candidate,
    x: Any,
    y: Any,
    n_jobs: int,
    folds: list[tuple[Any, Any]] | None = None,
) -> Selected:
    """spec.estimator: fitted as before candidates existed (n_jobs changes the speed only; the
    folds, made beforehand or by the search itself, are the same)."""
    if chosen.search is None:
        _run(candidate, candidate.pipeline, x, y)
        return Selected(candidate.pipeline, candidate.class_, candidate.params, [])
    cv = chosen.search.cv if folds is None else folds
    searched = _searcher(candidate, chosen.search, chosen.metric, cv, n_jobs)
    _run(candidate, searched, x, y)
    entries = _entries(candidate, searched.cv_results_)
    # scikit-learn's best (the first of its top rank) is the one refitted: it leads the board.
    leader = entries.pop(searched.best_index_)
    entries.sort(key=_order)
    best = {k.removeprefix(f"{ESTIMATOR_STEP}__"): v for k, v in searched.best_params_.items()}
    fitted: Pipeline = searched.best_estimator_
    return Selected(
        pipeline=fitted,
        estimator=candidate.class_,
        params={**candidate.params, **_plain(best)},
        leaderboard=_ranked([leader, *entries]),
    )


def _order(entry: dict[str, Any]) -> tuple[float, int, int]:
    """Best mean score first, an undefined score last; ties keep the spec's order."""
    score = entry["score"]
    return (-score if score is not None else math.inf, entry["candidate"], entry["trial"])


def _searcher(
    candidate: Candidate,
    search: SearchSpec,
    metric: Metric,
    cv: int | list[tuple[Any, Any]],
    n_jobs: int,
    among_candidates: bool = False,
) -> GridSearchCV | RandomizedSearchCV:
    space = candidate.space or {}
    grid = {f"{ESTIMATOR_STEP}__{key}": values for key, values in space.items()}
    common: dict[str, Any] = {"cv": cv, "scoring": SCORERS[metric], "n_jobs": n_jobs}
    if among_candidates:
        # Only the winner is refitted. A failing fit names its candidate: scikit-learn's
        # default, a NaN score, would leave the trial unranked (a lone estimator keeps it).
        common.update(refit=False, error_score="raise")
    if search.strategy == SearchStrategy.GRID or not space:
        return GridSearchCV(candidate.pipeline, grid, **common)
    # A lone estimator samples as it always did; a candidate never asks for more than exists.
    size = len(ParameterGrid(grid))
    trials = min(search.max_trials, size) if among_candidates else search.max_trials
    return RandomizedSearchCV(candidate.pipeline, grid, n_iter=trials, random_state=0, **common)


def _run(candidate: Candidate, model: Any, x: Any, y: Any) -> None:
    field = candidate.space_field if candidate.space else f"{candidate.where}.params"
    try:
        model.fit(x, y)
    except InvalidParameterError as error:
        raise WorkloadError(Reason.InvalidParams, f"{field}: {error}", EXIT_USAGE) from None
    except LightGBMError as error:
        # Params checked in plan() that do not suit the data: an objective for other classes.
        raise WorkloadError(Reason.InvalidParams, f"{field}: {error}", EXIT_USAGE) from None
    except ValueError as error:
        where = "" if candidate.where == ESTIMATOR_PREFIX else f"{candidate.where}: "
        raise WorkloadError(Reason.TrainingFailed, f"{where}{error}", EXIT_INVALID_DATA) from None
    except AttributeError as error:
        # A trial whose parameters take away what the metric needs (SVC with probability
        # false under log_loss): scikit-learn's scorer finds no predict_proba.
        raise WorkloadError(
            Reason.MetricNotApplicable,
            f"{field}: a trial cannot be scored by the selection metric: {error}",
            EXIT_USAGE,
        ) from None


def _entries(candidate: Candidate, results: dict[str, Any], index: int = 0) -> list[dict[str, Any]]:
    """One leaderboard entry per trial of a fitted search's cv_results_."""
    prefix = f"{ESTIMATOR_STEP}__"
    entries = []
    for trial, searched in enumerate(results["params"]):
        plain = _plain({k.removeprefix(prefix): v for k, v in searched.items()})
        entries.append(
            {
                "estimator": candidate.class_,
                "params": {**candidate.params, **plain},
                "score": _number(results["mean_test_score"][trial]),
                "score_std": _number(results["std_test_score"][trial]),
                "fit_seconds": round(float(results["mean_fit_time"][trial]), 4),
                "searched": plain,
                "candidate": index,
                "trial": trial,
            }
        )
    return entries


def _ranked(entries: Sequence[dict[str, Any]]) -> list[Trial]:
    hidden = ("searched", "candidate", "trial")
    return [
        Trial(rank=rank, **{k: v for k, v in entry.items() if k not in hidden})
        for rank, entry in enumerate(entries, start=1)
    ]


def _number(value: Any) -> float | None:
    """Rounded; None for a score cross-validation could not define (a fit that failed)."""
    number = float(value)
    return round(number, 6) if math.isfinite(number) else None


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars → Python, so params serialize into JSON status."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
