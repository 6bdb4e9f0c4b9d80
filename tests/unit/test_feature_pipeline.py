"""Feature engineering in the fitted pipeline: derived features are its first step, each declared
encoding and scaling is the step that runs, a spec without it changes nothing, and the server
(unpickled model, every request shape) predicts what the trainer's pipeline predicts."""

from __future__ import annotations

import io
import math
from typing import Any

import joblib
import numpy as np
import orjson
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import MinMaxScaler, OrdinalEncoder, RobustScaler, TargetEncoder

from modelyard.api.features import FeatureEngineeringSpec
from modelyard.reasons import Reason
from modelyard.storage.digest import bytes_digest
from modelyard.workloads.common.modelcard import Feature
from modelyard.workloads.common.termination import WorkloadError
from modelyard.workloads.serving import protocol
from modelyard.workloads.serving.compiled import compile_pipeline
from modelyard.workloads.serving.model import Model
from modelyard.workloads.training.pipeline import (
    DERIVE_STEP,
    build_pipeline,
    engineering_card,
)
from modelyard.workloads.training.transformers import DerivedFeatures, HashedColumn
from tests.unit.test_serve_protocol import train

FEATURES = [
    Feature(name="income", type="float"),
    Feature(name="debt", type="float"),
    Feature(name="city", type="string"),
    Feature(name="signup", type="string"),
    Feature(name="member", type="boolean"),
]
CITIES = ["oslo", "lima", "pune", "kyiv", "baku"]


def dataset(rows: int = 300, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Rows as training builds them (object matrix, booleans as "true"/"false", NaN missing),
    and a label that depends on the signup month: learnable only from a derived month."""
    rng = np.random.default_rng(seed)
    income = rng.uniform(1_000, 9_000, rows)
    debt = rng.uniform(0, 9_000, rows)
    x = np.empty((rows, len(FEATURES)), dtype=object)
    x[:, 0] = income
    x[:, 1] = debt
    x[:, 2] = [CITIES[i] for i in rng.integers(0, len(CITIES), rows)]
    x[:, 3] = [f"2024-{m:02d}-{d:02d}T{h:02d}:00:00" for m, d, h in rng.integers(1, 13, (rows, 3))]
    x[:, 4] = ["true" if b else "false" for b in rng.random(rows) < 0.5]
    x[rng.random(rows) < 0.05, 2] = math.nan  # some cities missing
    months = np.array([int(signup[5:7]) for signup in x[:, 3]])
    y = np.where(months >= 7, "risky", "fine").astype(object)
    return x, y


def spec(**document: Any) -> FeatureEngineeringSpec:
    return FeatureEngineeringSpec.model_validate(document)


RATIO = {"name": "debt_ratio", "expression": "ratio(debt, income)"}


def test_no_feature_engineering_is_the_default_pipeline_byte_for_byte() -> None:
    x, y = dataset()
    default = build_pipeline(FEATURES, LogisticRegression(max_iter=300)).fit(x, y)
    empty = build_pipeline(FEATURES, LogisticRegression(max_iter=300), spec()).fit(x, y)
    assert joblib_bytes(default) == joblib_bytes(empty)
    assert engineering_card(empty, spec()) == {"derived": [], "transforms": []}


def test_derived_features_are_the_first_step_and_computed_in_predict() -> None:
    x, y = dataset()
    engineering = spec(
        derived=[
            RATIO,
            {"name": "signup_month", "expression": "month(signup)"},
            {"name": "risky_member", "expression": "member and debt_ratio > 1"},
            {"name": "place", "expression": "upper(city) + '-' + ('M' if member else 'N')"},
        ]
    )
    pipeline = build_pipeline(FEATURES, LogisticRegression(max_iter=500), engineering)
    pipeline.fit(x, y)
    assert pipeline.steps[0][0] == DERIVE_STEP
    derived = pipeline[:1].transform(x[:4])
    assert derived.shape == (4, len(FEATURES) + 4)
    for row, values in zip(x[:4], derived[:, len(FEATURES) :], strict=True):
        income, debt, city, signup, member = row
        ratio = debt / income
        assert values[0] == pytest.approx(ratio)
        assert values[1] == int(signup[5:7])
        assert values[2] == (1.0 if member == "true" and ratio > 1 else 0.0)
        if isinstance(city, str):
            assert values[3] == f"{city.upper()}-{'M' if member == 'true' else 'N'}"
        else:
            assert isinstance(values[3], float) and math.isnan(values[3])
    # The label is the month's half: with the month derived, a linear model gets it right.
    without = build_pipeline(FEATURES, LogisticRegression(max_iter=500)).fit(x, y)
    x_test, y_test = dataset(seed=4)
    assert (pipeline.predict(x_test) == y_test).mean() > (without.predict(x_test) == y_test).mean()
    assert (pipeline.predict(x_test) == y_test).mean() > 0.95
    card = engineering_card(pipeline, engineering)
    assert [(d.name, d.type) for d in card["derived"]] == [
        ("debt_ratio", "float"),
        ("signup_month", "float"),
        ("risky_member", "float"),
        ("place", "string"),
    ]


def test_division_by_zero_becomes_a_missing_value_the_imputer_fills() -> None:
    x, y = dataset()
    x[:10, 0] = 0.0  # income 0: debt / income is inf
    engineering = spec(derived=[{"name": "per_income", "expression": "debt / income"}])
    pipeline = build_pipeline(FEATURES, LogisticRegression(max_iter=500), engineering).fit(x, y)
    derived = pipeline[:1].transform(x[:10])
    assert np.isnan(derived[:, -1].astype(float)).all()
    assert len(pipeline.predict(x[:10])) == 10


def preprocess_block(pipeline: Any, group: str) -> tuple[Any, list[int]]:
    for name, transformer, columns in pipeline.named_steps["preprocess"].transformers_:
        if name == group:
            return transformer, list(columns)
    raise AssertionError(f"no group {group!r} in {pipeline.named_steps['preprocess']}")


def groups_of(pipeline: Any) -> dict[str, list[int]]:
    return {
        name: list(columns)
        for name, _, columns in pipeline.named_steps["preprocess"].transformers_
        if name != "remainder"
    }


@pytest.mark.parametrize(
    ("transform", "group", "check"),
    [
        (
            {"name": "income", "scaling": "minmax"},
            "numeric_minmax",
            lambda step: isinstance(step.named_steps["scale"], MinMaxScaler),
        ),
        (
            {"name": "income", "scaling": "robust"},
            "numeric_robust",
            lambda step: isinstance(step.named_steps["scale"], RobustScaler),
        ),
        (
            {"name": "income", "scaling": "none"},
            "numeric_none",
            lambda step: list(step.named_steps) == ["impute"],
        ),
        (
            {"name": "city", "encoding": "ordinal"},
            "categorical_ordinal",
            lambda step: (
                isinstance(step, OrdinalEncoder)
                and sorted(step.categories_[0][:5].tolist()) == sorted(CITIES)
            ),
        ),
        (
            {"name": "city", "encoding": "target"},
            "categorical_target",
            lambda step: isinstance(step, TargetEncoder) and step.target_type_ == "binary",
        ),
        (
            {"name": "city", "encoding": "hash", "hashBuckets": 8},
            "hash_city",
            lambda step: isinstance(step, HashedColumn) and step.buckets == 8,
        ),
    ],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # unscaled income
def test_each_transform_is_the_step_that_runs(
    transform: dict[str, Any], group: str, check: Any
) -> None:
    x, y = dataset()
    pipeline = build_pipeline(
        FEATURES, LogisticRegression(max_iter=500), spec(transforms=[transform])
    ).fit(x, y)
    step, columns = preprocess_block(pipeline, group)
    assert columns == [next(i for i, f in enumerate(FEATURES) if f.name == transform["name"])]
    assert check(step)
    # ...and the column left the default group it would otherwise be in.
    default_group = "numeric" if "scaling" in transform else "categorical"
    assert columns[0] not in groups_of(pipeline).get(default_group, [])


def only(name: str, **transform: Any) -> list[dict[str, Any]]:
    """Transforms that keep feature `name` alone (with `transform`) and drop the others."""
    return [
        {"name": f.name, **transform} if f.name == name else {"name": f.name, "drop": True}
        for f in FEATURES
    ]


@pytest.mark.parametrize("scaling", ["standard", "minmax", "robust", "none"])
def test_scaling_output_follows_the_declaration(scaling: str) -> None:
    x, y = dataset()
    income = x[:, 0].astype(float)
    pipeline = build_pipeline(
        FEATURES, LogisticRegression(max_iter=500), spec(transforms=only("income", scaling=scaling))
    ).fit(x, y)
    column = pipeline.named_steps["preprocess"].transform(x)[:, 0]
    expected = {
        "standard": (income - income.mean()) / income.std(),
        "minmax": (income - income.min()) / (income.max() - income.min()),
        "robust": (income - np.median(income))
        / (np.percentile(income, 75) - np.percentile(income, 25)),
        "none": income,
    }[scaling]
    np.testing.assert_allclose(column, expected, rtol=1e-9)


def test_hash_encoding_sets_one_of_its_buckets_per_present_value() -> None:
    x, y = dataset()
    pipeline = build_pipeline(
        FEATURES,
        LogisticRegression(max_iter=500),
        spec(transforms=only("city", encoding="hash", hashBuckets=16)),
    ).fit(x, y)
    out = pipeline.named_steps["preprocess"].transform(x)
    assert out.shape == (len(x), 16)
    present = np.array([isinstance(c, str) for c in x[:, 2]])
    assert (out[present].sum(axis=1) == 1).all() and (out[~present].sum(axis=1) == 0).all()


def test_ordinal_encoding_gives_unseen_and_missing_minus_one() -> None:
    x, y = dataset()
    pipeline = build_pipeline(
        FEATURES,
        LogisticRegression(max_iter=500),
        spec(transforms=only("city", encoding="ordinal")),
    ).fit(x, y)
    rows = x[:3].copy()
    rows[:, 2] = ["baku", "atlantis", math.nan]
    out = pipeline.named_steps["preprocess"].transform(rows)[:, 0]
    assert out.tolist() == [sorted(CITIES).index("baku"), -1, -1]


def test_dropped_features_reach_no_step() -> None:
    x, y = dataset()
    pipeline = build_pipeline(
        FEATURES,
        LogisticRegression(max_iter=500),
        spec(transforms=[{"name": "signup", "drop": True}, {"name": "debt", "drop": True}]),
    ).fit(x, y)
    used = {c for columns in groups_of(pipeline).values() for c in columns}
    assert used == {0, 2, 4}


def test_target_encoding_serves_regression_too() -> None:
    x, _ = dataset()
    y = x[:, 1].astype(float) / x[:, 0].astype(float)
    pipeline = build_pipeline(
        FEATURES, Ridge(), spec(transforms=[{"name": "city", "encoding": "target"}])
    ).fit(x, y)
    step, _ = preprocess_block(pipeline, "categorical_target")
    assert step.target_type_ == "continuous"


def test_a_whole_number_regression_target_is_encoded_as_its_mean_not_as_classes() -> None:
    """Prices in whole euros are still a continuous target: one column, the mean per city."""
    x, _ = dataset()
    y = np.round(x[:, 1].astype(float))
    pipeline = build_pipeline(
        FEATURES, Ridge(), spec(transforms=[{"name": "city", "encoding": "target"}])
    ).fit(x, y)
    step, _ = preprocess_block(pipeline, "categorical_target")
    assert step.target_type_ == "continuous"
    assert step.transform(x[:, [2]]).shape == (len(x), 1)


@pytest.mark.parametrize(
    ("engineering", "field"),
    [
        ({"derived": [{"name": "debt", "expression": "income * 2"}]}, "derived[0].name"),
        ({"derived": [{"name": "label", "expression": "income * 2"}]}, "derived[0].name"),
        (
            {"derived": [RATIO, {"name": "debt_ratio", "expression": "1"}]},
            "derived[1].name",
        ),
        (
            {"derived": [RATIO, {"name": "x", "expression": "income + nope"}]},
            "derived[1].expression",
        ),
        (
            {"derived": [{"name": "x", "expression": "label == 'risky'"}]},
            "derived[0].expression",
        ),
        ({"derived": [{"name": "x", "expression": "income + city"}]}, "derived[0].expression"),
        (
            {
                "derived": [
                    {"name": "x", "expression": "later + 1"},
                    {"name": "later", "expression": "1"},
                ]
            },
            "derived[0].expression",
        ),
        ({"transforms": [{"name": "nope", "drop": True}]}, "transforms[nope]"),
        (
            {"transforms": [{"name": "income", "encoding": "ordinal"}]},
            "transforms[income].encoding",
        ),
        ({"transforms": [{"name": "city", "scaling": "minmax"}]}, "transforms[city].scaling"),
        (
            {"transforms": [{"name": f.name, "drop": True} for f in FEATURES]},
            "transforms",
        ),
    ],
)
def test_feature_engineering_that_does_not_fit_the_dataset_is_refused(
    engineering: dict[str, Any], field: str
) -> None:
    with pytest.raises(WorkloadError) as caught:
        build_pipeline(FEATURES, LogisticRegression(), spec(**engineering), target="label")
    assert caught.value.reason == Reason.InvalidFeatures
    assert str(caught.value.message).startswith(f"spec.featureEngineering.{field}:")


def test_expressions_may_read_transformed_derived_features() -> None:
    x, y = dataset()
    engineering = spec(
        derived=[RATIO, {"name": "band", "expression": "bucket(debt_ratio, [0.5, 1, 2])"}],
        transforms=[
            {"name": "debt_ratio", "scaling": "robust"},
            {"name": "signup", "encoding": "hash"},
        ],
    )
    pipeline = build_pipeline(FEATURES, LogisticRegression(max_iter=500), engineering).fit(x, y)
    assert preprocess_block(pipeline, "numeric_robust")[1] == [len(FEATURES)]
    assert preprocess_block(pipeline, "hash_signup")[0].buckets == 32
    card = engineering_card(pipeline, engineering)
    assert [(t.name, t.scaling, t.encoding) for t in card["transforms"]] == [
        ("debt_ratio", "robust", None),
        ("signup", None, "hash"),
    ]


def joblib_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(value, buffer)
    return buffer.getvalue()


ENGINEERED = {
    "derived": [
        RATIO,
        {"name": "signup_hour", "expression": "hour(signup)"},
        {"name": "city_member", "expression": "lower(city) + (' m' if member else '')"},
    ],
    "transforms": [
        {"name": "debt_ratio", "scaling": "minmax"},
        {"name": "city", "encoding": "ordinal"},
        {"name": "city_member", "encoding": "target"},
        {"name": "signup", "encoding": "hash", "hashBuckets": 8},
        {"name": "income", "scaling": "robust"},
    ],
}


def served() -> tuple[Any, Any, np.ndarray]:
    """A trained model with derived features and non-default transforms, as the server loads it."""
    x, y = dataset()
    engineering = spec(**ENGINEERED)
    pipeline = build_pipeline(FEATURES, LogisticRegression(max_iter=500), engineering)
    trained = train("engineered", FEATURES, x, y, LogisticRegression(max_iter=500), pipeline)
    card = trained.card.model_copy(update=engineering_card(trained.pipeline, engineering))
    reloaded = joblib.load(io.BytesIO(trained.data))
    return trained.pipeline, Model(card, reloaded, card.name), dataset(rows=40, seed=9)[0]


def test_pickled_model_predicts_what_the_trainer_predicted() -> None:
    pipeline, model, x = served()
    reloaded = model  # unpickled from the bytes training wrote
    np.testing.assert_array_equal(reloaded.predict(x), pipeline.predict(x))
    np.testing.assert_array_equal(reloaded.predict_proba(x), pipeline.predict_proba(x))


def test_server_answers_like_the_trainer_on_every_request_shape() -> None:
    pipeline, model, x = served()
    # The compiled numpy path cannot apply derived features: scikit-learn serves this model.
    assert compile_pipeline(pipeline) is None
    assert model.engine == "scikit-learn"
    expected = pipeline.predict(x).tolist()

    def json_value(value: Any, feature: Feature) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if feature.type == "boolean":
            return value == "true"
        return value

    rows = [[json_value(v, f) for v, f in zip(row, FEATURES, strict=True)] for row in x]
    objects = [{f.name: v for f, v in zip(FEATURES, row, strict=True)} for row in rows]
    bodies_v1 = [{"instances": rows}, {"instances": objects}]
    for body in bodies_v1:
        inference = protocol.decode_v1(model, orjson.dumps(body), proba_verb=False)
        assert model.predict(inference.matrix).tolist() == expected
    datatypes = protocol.feature_datatypes(model)
    columns = [
        {
            "name": f.name,
            "shape": [len(rows)],
            "datatype": datatypes[i],
            "data": [r[i] for r in rows],
        }
        for i, f in enumerate(FEATURES)
    ]
    matrix = {
        "name": "input-0",
        "shape": [len(rows), len(FEATURES)],
        "datatype": "BYTES",
        "data": rows,
    }
    for inputs in ([matrix], columns):
        inference = protocol.decode_v2(model, orjson.dumps({"inputs": inputs}))
        assert model.predict(inference.matrix).tolist() == expected


def test_server_refuses_a_card_that_does_not_declare_the_derived_features() -> None:
    pipeline, model, _ = served()
    other = model.card.model_copy(update={"derived": []})
    with pytest.raises(WorkloadError) as caught:
        Model(other, pipeline, "engineered")
    assert caught.value.reason == Reason.InvalidModel
    assert "debt_ratio" in str(caught.value.message)


def test_derived_step_pickles_as_plain_strings() -> None:
    step = DerivedFeatures(inputs=(("a", "float"),), derived=(("b", "log1p(a)"),)).fit(
        np.zeros((1, 1))
    )
    restored = joblib.load(io.BytesIO(joblib_bytes(step)))
    assert restored.derived == (("b", "log1p(a)"),)
    np.testing.assert_array_equal(
        restored.transform(np.array([[0.0], [math.e - 1]])), [[0.0, 0.0], [math.e - 1, 1.0]]
    )
    assert bytes_digest(joblib_bytes(step)) == bytes_digest(joblib_bytes(restored))
