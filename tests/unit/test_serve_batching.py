"""The batcher on a real event loop with a real model: what queues together is predicted
together, a batch is bounded, and a request the model refuses fails alone."""

from __future__ import annotations

import asyncio

import numpy as np

from modelyard.workloads.serving.app import App, Batchable, Response
from modelyard.workloads.serving.batching import Batcher
from modelyard.workloads.serving.metrics import Metrics
from tests.unit.test_serve_protocol import iris

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]])


def v1_request(app: App, rows: np.ndarray) -> Batchable:
    body = b'{"instances": %b}' % str(rows.tolist()).encode()
    item = app.handle(b"POST", b"/v1/models/iris:predict", body)
    assert isinstance(item, Batchable)
    return item


def setup(max_rows: int = 256, wait: float = 0.0) -> tuple[App, Batcher, list[int]]:
    app = App(None, Metrics(), 100, batching=True)
    app.set_model(iris().model(), 0.0)
    sizes: list[int] = []
    return app, Batcher(app.finish, sizes.append, max_rows, wait), sizes


def test_what_queues_in_one_turn_of_the_loop_is_one_model_call() -> None:
    async def scenario() -> tuple[list[Response], list[int]]:
        app, batcher, sizes = setup()
        answers: list[Response] = []
        for row in ROWS:
            batcher.add(v1_request(app, row[None, :]), answers.append)
        assert answers == []  # nothing predicted before the loop turns
        await asyncio.sleep(0)
        return answers, sizes

    answers, sizes = asyncio.run(scenario())
    assert sizes == [3]
    assert [answer.body for answer in answers] == [
        b'{"model_name":"iris","predictions":[0]}',
        b'{"model_name":"iris","predictions":[1]}',
        b'{"model_name":"iris","predictions":[2]}',
    ]


def test_a_full_batch_is_predicted_at_once_and_the_rest_waits_for_the_next() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        app, batcher, sizes = setup(max_rows=4, wait=30.0)
        answered: list[int] = []
        for index in range(3):
            batcher.add(v1_request(app, ROWS[:2]), lambda _, i=index: answered.append(i))
        flushed_early = list(answered)  # 6 rows passed 4 on the second request: no waiting
        batcher.flush()
        return flushed_early, sizes

    flushed_early, sizes = asyncio.run(scenario())
    assert flushed_early == [0, 1]
    assert sizes == [2, 1]


def test_a_request_the_model_refuses_fails_alone() -> None:
    async def scenario() -> list[Response]:
        app, batcher, _ = setup()
        answers: list[Response] = []
        good = v1_request(app, ROWS)
        # Three columns where the model takes four: the joined call cannot even be made.
        bad = good._replace(matrix=ROWS[:, :3].copy())
        for item in (good, bad, v1_request(app, ROWS[::-1])):
            batcher.add(item, answers.append)
        await asyncio.sleep(0)
        return answers

    first, refused, last = asyncio.run(scenario())
    assert first.body == b'{"model_name":"iris","predictions":[0,1,2]}'
    assert refused.status == 422 and b"the model rejected the input" in refused.body
    assert last.body == b'{"model_name":"iris","predictions":[2,1,0]}'
