"""Model selection on a small real dataset: candidates compete on the same folds, the best is
refitted, every trial is ranked, and what the spec gets wrong is refused by field."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import datasets
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score

from modelyard.api.trainingjob import TrainingJobSpec
from modelyard.workloads.common.modelcard import Feature
from modelyard.workloads.common.termination import WorkloadError
from modelyard.workloads.training.pipeline import build_estimator, build_pipeline
from modelyard.workloads.training.selection import cpus, plan, select

IRIS = datasets.load_iris()
X, Y = IRIS.data, IRIS.target
FEATURES = [Feature(name=f"f{i}", type="float") for i in range(X.shape[1])]
LOGISTIC = "sklearn.linear_model.LogisticRegression"
STUMP = "sklearn.tree.DecisionTreeClassifier"
BAYES = "sklearn.naive_bayes.GaussianNB"


def _spec(candidates: list[dict[str, Any]], **fields: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(
        {"datasetRef": {"name": "iris"}, "candidates": candidates, **fields}
    )


THREE = [
    {"class": LOGISTIC, "params": {"max_iter": 1000}, "searchSpace": {"C": [0.01, 1.0]}},
    {"class": STUMP, "params": {"random_state": 0}, "searchSpace": {"max_depth": [1]}},
    {"class": BAYES},
]


def test_the_best_candidate_is_chosen_and_refitted_on_all_rows() -> None:
    selected = select(plan(_spec(THREE), FEATURES, "y"), X, Y, n_jobs=1)
    best = max(selected.leaderboard, key=lambda t: t.score or -1)
    assert selected.leaderboard[0] == best
    assert (selected.estimator, selected.params) == (
        LOGISTIC,
        {"max_iter": 1000, "random_state": 0, "C": 1.0},
    )
    assert selected.leaderboard[0].estimator == LOGISTIC
    # Refitted on every row it was given: it knows all three classes and predicts well.
    assert list(selected.pipeline.classes_) == [0, 1, 2]
    assert (selected.pipeline.predict(X) == Y).mean() > 0.95


def test_the_leaderboard_holds_every_trial_ranked_by_score() -> None:
    selected = select(plan(_spec(THREE), FEATURES, "y"), X, Y, n_jobs=1)
    board = selected.leaderboard
    assert [t.rank for t in board] == [1, 2, 3, 4]
    assert sorted((t.estimator, str(t.params)) for t in board) == sorted(
        [
            (LOGISTIC, str({"max_iter": 1000, "random_state": 0, "C": 0.01})),
            (LOGISTIC, str({"max_iter": 1000, "random_state": 0, "C": 1.0})),
            (STUMP, str({"random_state": 0, "max_depth": 1})),
            (BAYES, str({})),
        ]
    )
    scores = [t.score for t in board]
    assert all(s is not None for s in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    assert all(t.fit_seconds >= 0 and t.score_std is not None for t in board)


def test_every_candidate_is_scored_on_the_same_seeded_folds() -> None:
    # The same estimator twice scores the same only if both saw the same folds; and the score
    # is the one of a stratified, shuffled, seeded 5-fold split.
    twice = [{"class": BAYES}, {"class": STUMP, "params": {"max_depth": 1}}, {"class": BAYES}]
    board = select(plan(_spec(twice), FEATURES, "y"), X, Y, n_jobs=1).leaderboard
    bayes = [t for t in board if t.estimator == BAYES]
    assert bayes[0].score == bayes[1].score and bayes[0].score_std == bayes[1].score_std
    pipeline = build_pipeline(FEATURES, build_estimator(BAYES, None))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    expected = cross_val_score(pipeline, X, Y, cv=folds, scoring="accuracy").mean()
    assert bayes[0].score == pytest.approx(expected, abs=1e-6)


def test_random_search_samples_at_most_max_trials_per_candidate() -> None:
    candidates = [
        {"class": LOGISTIC, "params": {"max_iter": 1000}, "searchSpace": {"C": [0.01, 0.1, 1, 10]}},
        {"class": STUMP, "searchSpace": {"max_depth": [1, 2, 3], "min_samples_leaf": [1, 5]}},
    ]
    spec = _spec(candidates, search={"strategy": "random", "maxTrials": 3, "cv": 3})
    board = select(plan(spec, FEATURES, "y"), X, Y, n_jobs=1).leaderboard
    assert sorted(t.estimator for t in board) == [LOGISTIC] * 3 + [STUMP] * 3


def test_the_objectives_metric_ranks_the_candidates() -> None:
    spec = _spec(THREE, objective={"metric": "log_loss", "minimum": 1.0})
    board = select(plan(spec, FEATURES, "y"), X, Y, n_jobs=1).leaderboard
    # scikit-learn's neg_log_loss: negative, greater is better.
    assert all(t.score is not None and t.score < 0 for t in board)


def test_candidates_of_two_tasks_are_refused_naming_the_odd_one() -> None:
    mixed = [{"class": LOGISTIC}, {"class": "sklearn.linear_model.Ridge"}]
    with pytest.raises(WorkloadError) as error:
        plan(_spec(mixed), FEATURES, "y")
    assert error.value.reason == "MixedTasks"
    assert error.value.message.startswith("spec.candidates[1].class: ")


@pytest.mark.parametrize(
    ("candidate", "reason", "field"),
    [
        ({"class": STUMP, "params": {"depth": 3}}, "InvalidParams", "spec.candidates[1].params"),
        (
            {"class": STUMP, "searchSpace": {"max_depth": [2, -1]}},
            "InvalidParams",
            "spec.candidates[1].searchSpace.max_depth",
        ),
        (
            {"class": STUMP, "searchSpace": {"max_depth": 3}},
            "InvalidSearch",
            "spec.candidates[1].searchSpace.max_depth",
        ),
    ],
)
def test_a_candidates_bad_params_are_refused_naming_its_field(
    candidate: dict[str, Any], reason: str, field: str
) -> None:
    with pytest.raises(WorkloadError) as error:
        plan(_spec([{"class": BAYES}, candidate]), FEATURES, "y")
    assert error.value.reason == reason
    assert error.value.message.startswith(f"{field}: "), error.value.message


def test_a_search_beyond_the_operators_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_MAX_SEARCH_TRIALS", "3")
    with pytest.raises(WorkloadError) as error:
        plan(_spec(THREE), FEATURES, "y")
    assert error.value.reason == "SearchTooLarge"
    assert "spec.candidates: 4 candidates, more than the 3 allowed" in error.value.message


def test_a_lone_estimators_search_is_the_one_it_always_was() -> None:
    # No candidates: scikit-learn's default folds and refit, whatever the cores, so a spec
    # written before candidates existed trains the same model.
    spec = TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "iris"},
            "estimator": {"class": STUMP, "params": {"random_state": 0}},
            "search": {"params": {"max_depth": [1, 2, 3]}, "cv": 3},
        }
    )
    pipeline = build_pipeline(FEATURES, build_estimator(STUMP, {"random_state": 0}))
    before = GridSearchCV(pipeline, {"model__max_depth": [1, 2, 3]}, cv=3, scoring="accuracy")
    before.fit(X, Y)
    for n_jobs in (1, 2):
        selected = select(plan(spec, FEATURES, "y"), X, Y, n_jobs=n_jobs)
        assert selected.params == {"random_state": 0, **{"max_depth": 3}}
        assert selected.params["max_depth"] == before.best_params_["model__max_depth"]
        assert np.array_equal(selected.pipeline.predict(X), before.predict(X))
        assert selected.leaderboard[0].score == round(before.best_score_, 6)
        assert len(selected.leaderboard) == 3


def test_search_processes_follow_the_pods_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    available = len(os.sched_getaffinity(0))
    monkeypatch.delenv("MODELYARD_CPUS", raising=False)
    assert cpus() == available
    monkeypatch.setenv("MODELYARD_CPUS", "1")
    assert cpus() == 1
    # More than this process may run on would only oversubscribe its cores.
    monkeypatch.setenv("MODELYARD_CPUS", str(available + 4))
    assert cpus() == available
    monkeypatch.setenv("MODELYARD_CPUS", "0")
    assert cpus() == 1


def _loky_workers() -> list[str]:
    """Command lines of this process's joblib worker processes."""
    children: list[str] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        # A thread may end between the listing and the read (joblib's, as a search ends).
        with contextlib.suppress(FileNotFoundError):
            children += (task / "children").read_text().split()
    found = []
    for child in children:
        with contextlib.suppress(OSError):
            if b"LokyProcess" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def test_a_parallel_search_leaves_no_worker_processes_behind() -> None:
    # They would outlive the trainer and keep its stdout and stderr open.
    selected = select(plan(_spec(THREE), FEATURES, "y"), X, Y, n_jobs=2)
    assert selected.estimator == LOGISTIC  # the same choice as on one CPU
    assert _loky_workers() == []


def test_unseeded_candidates_are_seeded_so_the_same_data_selects_the_same_model() -> None:
    forest = "sklearn.ensemble.ExtraTreesClassifier"
    candidates = [{"class": forest, "searchSpace": {"max_depth": [2, 3]}}, {"class": BAYES}]
    boards = [
        [
            (t.estimator, t.params, t.score)
            for t in select(plan(_spec(candidates), FEATURES, "y"), X, Y, n_jobs=1).leaderboard
        ]
        for _ in range(2)
    ]
    assert boards[0] == boards[1]
    assert all(params.get("random_state") == 0 for name, params, _ in boards[0] if name == forest)


def test_a_search_space_that_takes_away_what_the_metric_needs_names_the_field() -> None:
    svc = {"class": "sklearn.svm.SVC", "searchSpace": {"probability": [True, False]}}
    spec = _spec([svc, {"class": BAYES}], objective={"metric": "log_loss", "minimum": 1.0})
    with pytest.raises(WorkloadError) as refused:
        select(plan(spec, FEATURES, "y"), X, Y, n_jobs=1)
    assert refused.value.reason == "MetricNotApplicable"
    assert refused.value.message.startswith("spec.candidates[0].searchSpace")
