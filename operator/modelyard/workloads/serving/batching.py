"""Adaptive batching: the small predictions that queue together share one model call.

A model call has a fixed cost (input checks, one pass of numpy per step) that dwarfs a row's
own; under concurrent load, requests read in the same turn of the event loop are predicted
together, and each gets its rows' slice of the result. Nothing waits for a batch to fill by
default: a batch is whatever arrived while the loop was busy, so a lone request is answered as
fast as without batching, and batches grow with the load. `wait_seconds` holds the first
request of a batch that much longer to gather more; `max_rows` flushes a batch early.

A batch whose model call fails is predicted again one request at a time, so that a request the
model refuses fails alone and the others are answered as if they had come alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from modelyard.workloads.serving.app import Batchable, Outcome, Response

log = logging.getLogger("modelyard.serve")

Done = Callable[[Response], None]
Finish = Callable[[Batchable, Outcome | BaseException], Response]
Count = Callable[[int], None]  # called with each batch's number of requests


@dataclass
class _Pending:
    items: list[tuple[Batchable, Done]] = field(default_factory=list)
    rows: int = 0


class Batcher:
    def __init__(self, finish: Finish, count: Count, max_rows: int, wait_seconds: float) -> None:
        self._finish = finish
        self._count = count
        self.max_rows = max_rows
        self.wait_seconds = wait_seconds
        self._pending = _Pending()
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None

    def add(self, item: Batchable, done: Done) -> None:
        """Queue `item`; `done` gets its response, on the event loop, once its batch ran."""
        pending = self._pending
        pending.items.append((item, done))
        pending.rows += len(item.matrix)
        if pending.rows >= self.max_rows:
            self.flush()
        elif self._scheduled is None:
            loop = asyncio.get_running_loop()
            self._scheduled = (
                loop.call_later(self.wait_seconds, self.flush)
                if self.wait_seconds > 0
                else loop.call_soon(self.flush)
            )

    def flush(self) -> None:
        """Predict everything queued; responses go out before this returns."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        items, self._pending = self._pending.items, _Pending()
        if not items:
            return
        self._count(len(items))
        # Requests for another model (a server serves one) or asking other outputs form
        # batches of their own.
        groups: dict[tuple[int, bool, bool], list[tuple[Batchable, Done]]] = {}
        for entry in items:
            item = entry[0]
            groups.setdefault((id(item.model), item.predict, item.proba), []).append(entry)
        for group in groups.values():
            self._run(group)

    def _run(self, group: list[tuple[Batchable, Done]]) -> None:
        outcomes: list[Outcome | BaseException]
        if len(group) == 1:
            outcomes = [_compute(group[0][0])]
        else:
            joined = _joined([item for item, _ in group])
            if isinstance(joined, BaseException):
                outcomes = [_compute(item) for item, _ in group]
            else:
                outcomes = _split(joined, [len(item.matrix) for item, _ in group])
        for (item, done), outcome in zip(group, outcomes, strict=True):
            try:
                done(self._finish(item, outcome))
            except Exception:  # one connection's failure must not strand the others
                log.exception("answering a batched prediction on %s failed", item.endpoint)


def _compute(item: Batchable) -> Outcome | BaseException:
    try:
        return item.compute()
    except Exception as failure:
        return failure


def _joined(items: list[Batchable]) -> Outcome | BaseException:
    first = items[0]
    try:
        matrix = np.concatenate([item.matrix for item in items])
    except ValueError as failure:  # widths or dtypes that do not stack
        return failure
    return _compute(first._replace(matrix=matrix))


def _split(outcome: Outcome, sizes: list[int]) -> list[Outcome | BaseException]:
    # Plain slices: np.split costs more than the rest of a small batch's bookkeeping.
    predictions, proba = outcome
    outcomes: list[Outcome | BaseException] = []
    start = 0
    for size in sizes:
        end = start + size
        outcomes.append(
            Outcome(
                None if predictions is None else predictions[start:end],
                None if proba is None else proba[start:end],
            )
        )
        start = end
    return outcomes
