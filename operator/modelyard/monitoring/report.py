"""The answer of one server process to POST /monitoring/collect, parsed and checked.

The operator reads answers from pods it does not trust further than their own namespace's
traffic: every field is checked for type and size, and a malformed answer counts as unreachable
rather than as figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modelyard.monitoring.quality import QualitySums

# Bounds on what one answer may hold. A baseline has at most 21 bins per feature (10 numeric
# bins, or 20 categories and "other"); 64 leaves room without letting an answer grow large.
MAX_FEATURES = 4096
MAX_BINS = 64
MAX_UNMATCHED = 10_000
MAX_ID_LENGTH = 256
MAX_TRUTH_ROWS = 10_000


class MalformedReport(ValueError):
    """A monitoring answer that does not follow this format."""


@dataclass(frozen=True)
class FeatureCounts:
    name: str
    counts: list[int]  # rows per bin over the process's window, bins as in the card's baseline
    expected: list[float]  # the training baseline's share per bin


@dataclass(frozen=True)
class Feedback:
    id: str
    truth: list[Any]  # one ground-truth value per row of the request the id names


@dataclass(frozen=True)
class ProcessReport:
    model: str  # digest of the model the process serves
    worker: str
    task: str  # classification or regression
    rows: int  # input rows in the drift window
    features: list[FeatureCounts] = field(default_factory=list)
    quality: QualitySums = field(default_factory=QualitySums)
    # Feedback whose request id this process does not hold; answered once, then forgotten.
    unmatched: list[Feedback] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "worker": self.worker,
            "task": self.task,
            "drift": {
                "rows": self.rows,
                "features": [
                    {"name": f.name, "counts": f.counts, "expected": f.expected}
                    for f in self.features
                ],
            },
            "quality": {
                "labels": self.quality.labels,
                "correct": self.quality.correct,
                "sumAbsError": self.quality.sum_abs_error,
                "sumSquaredError": self.quality.sum_squared_error,
            },
            "unmatched": [{"id": f.id, "truth": f.truth} for f in self.unmatched],
        }


def parse(payload: Any) -> ProcessReport:
    """A ProcessReport from decoded JSON; MalformedReport naming the first problem."""
    root = _mapping(payload, "answer")
    drift = _mapping(root.get("drift"), "drift")
    quality = _mapping(root.get("quality"), "quality")
    features_raw = _sequence(drift.get("features"), "drift.features", MAX_FEATURES)
    features = []
    for i, raw in enumerate(features_raw):
        item = _mapping(raw, f"drift.features[{i}]")
        counts = _sequence(item.get("counts"), f"drift.features[{i}].counts", MAX_BINS)
        expected = _sequence(item.get("expected"), f"drift.features[{i}].expected", MAX_BINS)
        if len(counts) != len(expected) or not counts:
            raise MalformedReport(f"drift.features[{i}]: counts and expected differ in length")
        features.append(
            FeatureCounts(
                name=_text(item.get("name"), f"drift.features[{i}].name", 256),
                counts=[_count(c, f"drift.features[{i}].counts") for c in counts],
                expected=[_share(e, f"drift.features[{i}].expected") for e in expected],
            )
        )
    unmatched = []
    for i, raw in enumerate(_sequence(root.get("unmatched", []), "unmatched", MAX_UNMATCHED)):
        item = _mapping(raw, f"unmatched[{i}]")
        truth = _sequence(item.get("truth"), f"unmatched[{i}].truth", MAX_TRUTH_ROWS)
        unmatched.append(
            Feedback(id=_text(item.get("id"), f"unmatched[{i}].id", MAX_ID_LENGTH), truth=truth)
        )
    task = _text(root.get("task"), "task", 32)
    if task not in ("classification", "regression"):
        raise MalformedReport(f"task: {task!r} is neither classification nor regression")
    return ProcessReport(
        model=_text(root.get("model"), "model", 128),
        worker=_text(root.get("worker"), "worker", 64),
        task=task,
        rows=_count(drift.get("rows"), "drift.rows"),
        features=features,
        quality=QualitySums(
            labels=_count(quality.get("labels"), "quality.labels"),
            correct=_count(quality.get("correct"), "quality.correct"),
            sum_abs_error=_number(quality.get("sumAbsError"), "quality.sumAbsError"),
            sum_squared_error=_number(quality.get("sumSquaredError"), "quality.sumSquaredError"),
        ),
        unmatched=unmatched,
    )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedReport(f"{where}: expected an object")
    return value


def _sequence(value: Any, where: str, most: int) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedReport(f"{where}: expected a list")
    if len(value) > most:
        raise MalformedReport(f"{where}: more than {most} entries")
    return value


def _text(value: Any, where: str, most: int) -> str:
    if not isinstance(value, str) or not value or len(value) > most:
        raise MalformedReport(f"{where}: expected a string of 1 to {most} characters")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedReport(f"{where}: expected a count")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedReport(f"{where}: expected a finite number")
    if value < 0:
        raise MalformedReport(f"{where}: expected a non-negative number")
    return float(value)


def _share(value: Any, where: str) -> float:
    number = _number(value, where)
    if number > 1:
        raise MalformedReport(f"{where}: a share is at most 1")
    return number
