"""Whatever a client sends, the answer is a 2xx or a 4xx with a message: never a 500.

Valid requests are mutated at random (values, types, shapes, keys) and fed to the request
handler directly; the HTTP layer's own refusals are covered by the integration catalogue.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import orjson
import pytest

from modelyard.workloads.serving.app import App, Offload, Response
from modelyard.workloads.serving.metrics import Metrics
from tests.unit.test_serve_protocol import Trained, iris, mixed

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1e308,
    10**30,
    "",
    "x",
    "NaN",
    [],
    [[]],
    {},
    {"name": 1},
    [None],
    [1.5] * 9,
    "predict_proba",
]


def mutate(document: Any, rng: random.Random) -> Any:
    """Replace, drop or add one thing somewhere in a JSON document."""
    document = copy.deepcopy(document)
    containers: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict | list):
            containers.append(node)
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(document)
    node = rng.choice(containers)
    if isinstance(node, dict):
        if node and rng.random() < 0.3:
            del node[rng.choice(list(node))]
        else:
            key = rng.choice([*node, "extra"]) if node else "extra"
            node[key] = rng.choice(ODD_VALUES)
    elif node and rng.random() < 0.7:
        node[rng.randrange(len(node))] = rng.choice(ODD_VALUES)
    else:
        node.append(rng.choice(ODD_VALUES))
    return document


def requests_for(trained: Trained) -> list[tuple[bytes, Any]]:
    name = trained.card.name
    features = [feature.name for feature in trained.card.features]
    row: list[Any] = [1.0 if f.type == "float" else "x" for f in trained.card.features]
    named = dict(zip(features, row, strict=True))
    return [
        (f"/v1/models/{name}:predict".encode(), {"instances": [row, row]}),
        (f"/v1/models/{name}:predict_proba".encode(), {"instances": [named]}),
        (
            f"/v2/models/{name}/infer".encode(),
            {
                "id": "a",
                "inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "BYTES", "data": row}],
                "outputs": [{"name": "predict"}],
                "parameters": {"probabilities": True},
            },
        ),
        (
            f"/v2/models/{name}/infer".encode(),
            {
                "inputs": [
                    {
                        "name": feature,
                        "shape": [1],
                        "datatype": "FP64" if isinstance(value, float) else "BYTES",
                        "data": [value],
                    }
                    for feature, value in named.items()
                ]
            },
        ),
    ]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # 1e308 inputs
@pytest.mark.parametrize("make", [iris, mixed], ids=["numeric", "mixed"])
def test_mutated_requests_never_get_a_500(make: Any) -> None:
    trained = make()
    app = App(None, Metrics(), 100)
    app.set_model(trained.model(), 0.0)
    rng = random.Random(42)
    statuses: set[int] = set()
    for _ in range(1500):
        path, document = rng.choice(requests_for(trained))
        for _ in range(rng.randint(1, 3)):
            document = mutate(document, rng)
        result = app.handle(b"POST", path, json.dumps(document).encode())
        if isinstance(result, Offload):
            result = app.finish(result, result.compute())
        assert isinstance(result, Response)
        assert result.status < 500, (document, result.body)
        if result.status >= 400:
            assert orjson.loads(result.body)["error"]
        statuses.add(result.status)
    assert {200, 400, 422} <= statuses  # the mutations reach every kind of answer
