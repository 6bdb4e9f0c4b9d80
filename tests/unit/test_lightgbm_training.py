"""LightGBM's estimators in training: built from the allowlist like scikit-learn's, with quiet,
CPU-bounded defaults, their parameters checked before any data is read, searchable, and the
LightGBM version recorded for the server's guard."""

from __future__ import annotations

from typing import Any

import lightgbm
import numpy as np
import pytest
from sklearn import datasets

from modelyard.api.trainingjob import TrainingJobSpec
from modelyard.workloads.common.modelcard import Feature, estimator_library_versions
from modelyard.workloads.common.termination import EXIT_USAGE, WorkloadError
from modelyard.workloads.training.pipeline import ESTIMATOR_STEP, build_estimator
from modelyard.workloads.training.selection import cpus, plan, select

CLASSIFIER = "lightgbm.LGBMClassifier"
REGRESSOR = "lightgbm.LGBMRegressor"
BAYES = "sklearn.naive_bayes.GaussianNB"
IRIS = datasets.load_iris()
X, Y = IRIS.data, IRIS.target
FEATURES = [Feature(name=f"f{i}", type="float") for i in range(X.shape[1])]
SMALL: dict[str, Any] = {"n_estimators": 10, "min_child_samples": 5}


def _spec(**fields: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"datasetRef": {"name": "iris"}, **fields})


@pytest.mark.parametrize("path", [CLASSIFIER, REGRESSOR])
def test_lightgbm_estimators_are_built_quiet_and_on_the_threads_given(path: str) -> None:
    estimator = build_estimator(path, {"num_leaves": 7}, threads=3)
    assert type(estimator).__name__ == path.rsplit(".", 1)[1]
    params = estimator.get_params()
    assert params["num_leaves"] == 7
    assert params["verbosity"] == -1
    assert params["n_jobs"] == 3


def test_the_specs_own_verbosity_and_threads_win() -> None:
    params = build_estimator(CLASSIFIER, {"verbose": 1, "n_jobs": 2}, threads=3).get_params()
    assert "verbosity" not in params and params["verbose"] == 1
    assert params["n_jobs"] == 2


def test_a_lone_fit_uses_the_pods_cpus_and_a_search_one_thread_per_fit() -> None:
    # A search runs one fit per CPU in as many processes: more threads each would
    # oversubscribe the pod's CPUs.
    lone = plan(_spec(estimator={"class": CLASSIFIER}), FEATURES, "y")
    assert lone.candidates[0].estimator.get_params()["n_jobs"] == cpus()
    searched = plan(
        _spec(estimator={"class": CLASSIFIER}, search={"params": {"num_leaves": [4, 8]}}),
        FEATURES,
        "y",
    )
    assert searched.candidates[0].estimator.get_params()["n_jobs"] == 1
    among = plan(_spec(candidates=[{"class": CLASSIFIER}, {"class": BAYES}]), FEATURES, "y")
    assert among.candidates[0].estimator.get_params()["n_jobs"] == 1


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"num_leaves": 1}, "Check failed: (num_leaves) > (1)"),
        ({"max_bin": 1}, "Check failed: (max_bin) > (1)"),  # LightGBM's own, beyond the class's
        ({"learning_rate": -0.1}, "Check failed: (learning_rate) > (0.0)"),
        ({"objective": "no-such-objective"}, "Unknown objective type name: no-such-objective"),
        ({"n_estimators": 0}, "Number of boosting rounds must be greater than 0"),
        ({"num_leavs": 8}, "'num_leavs' is not a parameter of LGBMClassifier or of LightGBM"),
    ],
)
def test_bad_lightgbm_params_are_refused_naming_the_field(
    params: dict[str, Any], detail: str
) -> None:
    with pytest.raises(WorkloadError) as error:
        plan(_spec(estimator={"class": CLASSIFIER, "params": params}), FEATURES, "y")
    assert error.value.reason == "InvalidParams"
    assert error.value.exit_code == EXIT_USAGE
    assert error.value.message.startswith("spec.estimator.params: "), error.value.message
    assert detail in error.value.message
    assert ".cpp" not in error.value.message  # LightGBM's source location is not for users


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        # LightGBM would keep num_leaves' default and drop the alias without a word.
        ({"num_leaf": 4}, "'num_leaf' is LightGBM's name for LGBMClassifier's 'num_leaves'"),
        ({"seed": 4}, "'seed' is LightGBM's name for LGBMClassifier's 'random_state'"),
        ({"nthread": 4}, "'nthread' is LightGBM's name for LGBMClassifier's 'n_jobs'"),
        ({"verbose": 0, "verbosity": 1}, "'verbose' and 'verbosity' name the same"),
    ],
)
def test_two_names_for_one_lightgbm_parameter_are_refused(
    params: dict[str, Any], detail: str
) -> None:
    with pytest.raises(WorkloadError) as error:
        build_estimator(CLASSIFIER, params)
    assert error.value.reason == "InvalidParams"
    assert error.value.message.startswith("spec.estimator.params: " + detail)


def test_a_lightgbm_candidates_bad_params_name_its_field() -> None:
    candidates = [{"class": BAYES}, {"class": CLASSIFIER, "params": {"max_bin": 1}}]
    with pytest.raises(WorkloadError) as error:
        plan(_spec(candidates=candidates), FEATURES, "y")
    assert error.value.reason == "InvalidParams"
    assert error.value.message.startswith("spec.candidates[1].params: Check failed: (max_bin)")


def test_a_bad_value_in_a_lightgbm_search_space_names_the_parameter() -> None:
    spec = _spec(estimator={"class": REGRESSOR}, search={"params": {"subsample": [0.5, 2.0]}})
    with pytest.raises(WorkloadError) as error:
        plan(spec, FEATURES, "y")
    assert error.value.reason == "InvalidParams"
    assert error.value.message.startswith("spec.search.params.subsample: Check failed")


def test_objectives_that_need_a_number_of_classes_are_accepted() -> None:
    # Which classes the dataset has is unknown before the download: multiclass and binary both
    # pass the check.
    for objective in ("multiclass", "binary"):
        build_estimator(CLASSIFIER, {"objective": objective})


def test_a_grid_search_over_lightgbm_params_selects_and_refits() -> None:
    spec = _spec(
        estimator={"class": CLASSIFIER, "params": SMALL},
        search={"params": {"num_leaves": [2, 8], "learning_rate": [0.05, 0.3]}, "cv": 3},
    )
    selected = select(plan(spec, FEATURES, "y"), X, Y, n_jobs=2)
    assert len(selected.leaderboard) == 4
    assert selected.params["num_leaves"] in (2, 8)
    model = selected.pipeline.named_steps[ESTIMATOR_STEP]
    assert isinstance(model, lightgbm.LGBMClassifier)
    assert model.get_params()["num_leaves"] == selected.params["num_leaves"]
    assert (selected.pipeline.predict(X) == Y).mean() > 0.9


def test_lightgbm_candidates_are_seeded_and_compete_with_scikit_learns() -> None:
    candidates = [
        {"class": CLASSIFIER, "params": {**SMALL, "subsample": 0.5, "subsample_freq": 1}},
        {"class": BAYES},
    ]
    boards = [
        [
            (t.estimator, t.params, t.score)
            for t in select(plan(_spec(candidates=candidates), FEATURES, "y"), X, Y, 1).leaderboard
        ]
        for _ in range(2)
    ]
    assert boards[0] == boards[1]
    (lightgbm_trial,) = [params for name, params, _ in boards[0] if name == CLASSIFIER]
    assert lightgbm_trial["random_state"] == 0


def test_the_card_records_the_lightgbm_version_of_a_lightgbm_model_only() -> None:
    assert estimator_library_versions(CLASSIFIER) == {"lightgbm": lightgbm.__version__}
    assert estimator_library_versions(REGRESSOR) == {"lightgbm": lightgbm.__version__}
    assert estimator_library_versions(BAYES) == {}


def test_an_objective_for_other_classes_fails_the_fit_naming_the_field() -> None:
    # `binary` passes the check (the dataset's classes are unknown then); iris has three.
    spec = _spec(estimator={"class": CLASSIFIER, "params": {**SMALL, "objective": "binary"}})
    with pytest.raises(WorkloadError) as error:
        select(plan(spec, FEATURES, "y"), X, Y, n_jobs=1)
    assert error.value.reason == "InvalidParams"
    assert error.value.message.startswith("spec.estimator.params: Number of classes")


def test_lightgbm_fits_no_differently_for_being_checked() -> None:
    # The check fits a clone: the estimator handed back is unfitted, with the spec's params.
    estimator = build_estimator(REGRESSOR, SMALL, threads=1)
    assert not hasattr(estimator, "booster_")
    fitted = estimator.fit(X, X[:, 0])
    expected = lightgbm.LGBMRegressor(**SMALL, verbosity=-1, n_jobs=1).fit(X, X[:, 0])
    assert np.array_equal(fitted.predict(X), expected.predict(X))
