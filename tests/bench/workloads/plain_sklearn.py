"""The peer for training: what a data scientist writes by hand to fit and evaluate on a CSV.

python -m tests.bench.workloads.plain_sklearn CSV TARGET ESTIMATOR_CLASS PARAMS_JSON
"""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from sklearn.compose import ColumnTransformer
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def main(csv: str, target: str, estimator_class: str, params: str) -> None:
    table = pa_csv.read_csv(csv)
    names = [name for name in table.column_names if name != target]
    numeric = [i for i, n in enumerate(names) if pa.types.is_floating(table.column(n).type)]
    text = [i for i in range(len(names)) if i not in numeric]
    x = np.column_stack([table.column(n).to_numpy().astype(object) for n in names])
    y = table.column(target).to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=42, stratify=y
    )
    module, _, name = estimator_class.rpartition(".")
    estimator = getattr(importlib.import_module(module), name)(**json.loads(params))
    preprocess = ColumnTransformer(
        [("numeric", StandardScaler(), numeric), ("text", OneHotEncoder(), text)]
    )
    model = Pipeline([("preprocess", preprocess), ("model", estimator)]).fit(x_train, y_train)
    predicted = model.predict(x_test)
    probabilities = model.predict_proba(x_test)
    metrics = {
        "accuracy": accuracy_score(y_test, predicted),
        "f1_macro": f1_score(y_test, predicted, average="macro"),
        "roc_auc": roc_auc_score(y_test, probabilities, multi_class="ovr"),
    }
    print(json.dumps(metrics))


if __name__ == "__main__":
    main(*sys.argv[1:5])
