"""Request ids, and ground truth for earlier predictions matched by them: the live metric.

Each server process remembers the predicted values of its most recent requests by id (at most
`remember_rows` rows, the oldest forgotten first). Feedback naming an id the process holds is
scored into its quality window (the last `window` labelled rows) and the prediction is
forgotten, so an id counts once. Feedback for an id it does not hold (another process answered
the request; or it was counted or forgotten already) is held, bounded, until the operator
collects it and relays it to the other processes of the deployment, which count it if they
hold the id and drop it otherwise.
"""

from __future__ import annotations

import math
import secrets
from collections import deque
from typing import Any

import numpy as np

from modelyard.monitoring.quality import QualitySums
from modelyard.monitoring.report import MAX_ID_LENGTH, MAX_TRUTH_ROWS, MAX_UNMATCHED, Feedback
from modelyard.workloads.serving.config import DEFAULT_FEEDBACK_WINDOW, DEFAULT_REMEMBER_ROWS
from modelyard.workloads.serving.errors import RequestError
from modelyard.workloads.serving.model import Model

# Truth values of unmatched feedback held between two collects, over all held feedback.
MAX_HELD_VALUES = 100_000
# The largest absolute error a regression label may have: far beyond any real target, and small
# enough that the squared errors of a window, summed by the process and then over every process
# by the operator, stay finite (an infinite sum is not JSON, and would void the whole report).
MAX_ERROR = 1e100


def checked_id(value: str, where: str) -> str:
    """A client's request id, or a 400 naming `where`: it travels in headers and reports."""
    if not value or len(value) > MAX_ID_LENGTH:
        raise RequestError(
            400, f"{where}: a request id has 1 to {MAX_ID_LENGTH} characters, not {len(value)}"
        )
    if not value.isprintable():
        raise RequestError(400, f"{where}: a request id may not hold control characters")
    return value


def header_id(raw: bytes) -> str:
    """The X-Request-Id header's value, checked."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise RequestError(400, "X-Request-Id header: not UTF-8") from None
    return checked_id(text, "X-Request-Id header")


def new_request_id() -> str:
    """An id for a request that brings none: 96 random bits.

    Unguessable, so that a client cannot name (and label first) another client's prediction,
    and unique across the processes of a deployment, between which feedback is relayed.
    """
    return secrets.token_hex(12)


def _label_key(value: Any) -> tuple[str, Any] | None:
    """How a class label compares: numbers by value (1 == 1.0), never a boolean with a number."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return None


class Labels:
    """One process's remembered predictions, its quality window and its unmatched feedback."""

    def __init__(
        self,
        model: Model,
        remember_rows: int = DEFAULT_REMEMBER_ROWS,
        window: int = DEFAULT_FEEDBACK_WINDOW,
    ) -> None:
        self.classifier = model.is_classifier
        self._classes = model.classes
        self._class_keys = {_label_key(label) for label in model.classes}
        self._class_array = np.asarray(model.classes)
        self._remember_rows = remember_rows
        self._largest = min(remember_rows, MAX_TRUTH_ROWS)  # feedback names at most this many
        # By id, plus the order they came in for eviction: a dict and a deque cost half what an
        # OrderedDict does per request. Entries counted or replaced stay in the deque, skipped
        # when they reach its end; every entry holds a row, so it is as bounded as the rows.
        self._predictions: dict[str, np.ndarray] = {}
        self._order: deque[tuple[str, np.ndarray]] = deque()
        self._rows = 0
        # Per labelled row: 1.0 / 0.0 (correct or not) for classifiers, |error| for regressors.
        self._scores: deque[float] = deque(maxlen=window)
        self._held: deque[Feedback] = deque()
        self._held_values = 0
        self.matched = 0  # labels (truth values) counted here
        self.unmatched = 0  # labels received here for predictions this process does not hold

    # --- predictions ---------------------------------------------------------------------------

    def remember(self, request_id: str, predicted: np.ndarray) -> None:
        """Keep a request's predicted values (class labels or numbers) for its feedback."""
        rows = len(predicted)
        if rows > self._largest:
            return
        predictions = self._predictions
        earlier = predictions.get(request_id)  # a client reusing an id: the latest counts
        if earlier is not None:
            self._rows -= len(earlier)
        predictions[request_id] = predicted
        order = self._order
        order.append((request_id, predicted))
        self._rows += rows
        limit = self._remember_rows
        while self._rows > limit or len(order) > limit:
            evicted_id, evicted = order.popleft()
            if predictions.get(evicted_id) is evicted:
                del predictions[evicted_id]
                self._rows -= len(evicted)

    def labels_of(self, proba: np.ndarray) -> np.ndarray:
        """Predicted labels of a request that asked only for probabilities."""
        labels: np.ndarray = self._class_array[proba.argmax(axis=1)]
        return labels

    @property
    def remembered_rows(self) -> int:
        return self._rows

    # --- feedback ------------------------------------------------------------------------------

    def check_truth(self, truth: Any, where: str = "truth") -> list[Any]:
        """The truth values, or a 400 naming the first one that is not of the target's type."""
        if not isinstance(truth, list) or not truth:
            raise RequestError(
                400, f'"{where}" must be a non-empty list: one value per row of the request'
            )
        if len(truth) > MAX_TRUTH_ROWS:
            raise RequestError(400, f'"{where}" has more than {MAX_TRUTH_ROWS} values')
        if self.classifier:
            keys = self._class_keys
            for i, value in enumerate(truth):
                if _label_key(value) not in keys:
                    raise RequestError(
                        400,
                        f'"{where}[{i}]": {value!r} is not one of the model\'s classes '
                        f"{self._classes}",
                    )
        else:
            for i, value in enumerate(truth):
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not math.isfinite(value)
                ):
                    raise RequestError(
                        400, f'"{where}[{i}]": {value!r} is not a finite number (the target)'
                    )
        return truth

    def feedback(self, request_id: str, truth: list[Any]) -> bool:
        """Feedback from a client (truth already checked): counted if held, else held for relay."""
        if self.match(request_id, truth, strict=True):
            return True
        self.unmatched += len(truth)
        self._held.append(Feedback(request_id, truth))
        self._held_values += len(truth)
        while len(self._held) > MAX_UNMATCHED or self._held_values > MAX_HELD_VALUES:
            self._held_values -= len(self._held.popleft().truth)
        return False

    def match(self, request_id: str, truth: list[Any], strict: bool = False) -> bool:
        """Count `truth` against the prediction held for `request_id`, then forget it.

        A different number of values than the request's rows, or a regression error above
        MAX_ERROR, is a 400 when `strict` (the client's own feedback), and simply no match for
        relayed feedback (dropped; the prediction stays held).
        """
        predicted = self._predictions.get(request_id)
        if predicted is None:
            return False
        if len(truth) != len(predicted):
            if strict:
                raise RequestError(
                    400,
                    f'"truth" has {len(truth)} values but request {request_id!r} had '
                    f"{len(predicted)} rows",
                )
            return False
        values = predicted.tolist()
        if self.classifier:
            scores = [
                1.0 if _label_key(p) == _label_key(t) else 0.0
                for p, t in zip(values, truth, strict=True)
            ]
        else:
            scores = [abs(p - t) for p, t in zip(values, truth, strict=True)]
            if not all(error <= MAX_ERROR for error in scores):  # NaN fails this too
                if not strict:
                    return False
                i = next(i for i, error in enumerate(scores) if not error <= MAX_ERROR)
                raise RequestError(
                    400,
                    f'"truth[{i}]": {truth[i]!r} is {scores[i]!r} away from the prediction '
                    f"{values[i]!r}; errors above {MAX_ERROR:g} are refused",
                )
        del self._predictions[request_id]
        self._rows -= len(predicted)
        self._scores.extend(scores)
        self.matched += len(truth)
        return True

    def take_unmatched(self) -> list[Feedback]:
        """The held feedback, handed over once."""
        held = list(self._held)
        self._held.clear()
        self._held_values = 0
        return held

    def sums(self) -> QualitySums:
        """Over the quality window (the last `window` labelled rows)."""
        scores = self._scores
        if self.classifier:
            return QualitySums(labels=len(scores), correct=int(sum(scores)))
        return QualitySums(
            labels=len(scores),
            sum_abs_error=math.fsum(scores),
            sum_squared_error=math.fsum(e * e for e in scores),
        )
