"""The benchmark's models: the same joblib files for every server, seeded, as training writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from modelyard.storage.client import Storage
from modelyard.storage.digest import bytes_digest
from modelyard.storage.layout import MANIFEST, MODEL_CARD, MODEL_FILE
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.modelcard import Feature
from tests.unit.test_serve_protocol import Trained, train

SEED = 0


@dataclass(frozen=True)
class BenchModel:
    name: str
    label: str  # for tables
    trained: Trained
    test: np.ndarray  # the test split: payload rows and the prediction check come from it
    path: Path  # model.joblib on disk, for the peers

    def rows(self, count: int) -> np.ndarray:
        return np.resize(self.test, (count, self.test.shape[1]))

    def expected(self, count: int) -> list[int]:
        predictions: np.ndarray = self.trained.pipeline.predict(self.rows(count))
        return [int(p) for p in predictions]

    def publish(self, storage: Storage, root: S3Uri) -> S3Uri:
        """As training lays a model out: payload, card, then the manifest naming both digests
        (the server refuses a model without it as half-written)."""
        prefix = root.join("models", self.name)
        storage.put_bytes(prefix.join(MODEL_FILE), self.trained.data)
        card = json.dumps(self.trained.card.model_dump(mode="json"), indent=2).encode()
        storage.put_bytes(prefix.join(MODEL_CARD), card, "application/json")
        manifest = {"digest": bytes_digest(self.trained.data), "cardDigest": bytes_digest(card)}
        storage.put_json(prefix.join(MANIFEST), manifest)
        return prefix.join(MODEL_FILE)


def _build(
    name: str, label: str, x: np.ndarray, y: np.ndarray, estimator: BaseEstimator, out: Path
) -> BenchModel:
    features = [Feature(name=f"f{i}", type="float") for i in range(x.shape[1])]
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.25, random_state=SEED)
    trained = train(name, features, x_train, y_train, estimator)
    directory = out / name
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MODEL_FILE
    path.write_bytes(trained.data)
    return BenchModel(name, label, trained, x_test, path)


def build_models(out: Path, names: list[str]) -> list[BenchModel]:
    iris_x, iris_y = load_iris(return_X_y=True)
    synthetic_x, synthetic_y = make_classification(
        n_samples=20_000, n_features=50, n_informative=20, random_state=SEED
    )
    recipes = {
        "lr": ("iris LogisticRegression", iris_x, iris_y, LogisticRegression(max_iter=1000)),
        "rf": (
            "iris RandomForest(100)",
            iris_x,
            iris_y,
            RandomForestClassifier(n_estimators=100, random_state=SEED),
        ),
        "hgb": (
            "50-feature HistGradientBoosting",
            synthetic_x,
            synthetic_y,
            HistGradientBoostingClassifier(random_state=SEED),
        ),
    }
    return [_build(name, *recipes[name], out) for name in names]
