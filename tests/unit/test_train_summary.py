"""A training run's termination summary stays whole JSON within the kubelet's 4 KiB: a long
leaderboard or many findings are shortened, and the report's reference is never dropped."""

from __future__ import annotations

import json
from typing import Any

from modelyard.workloads.common import termination
from modelyard.workloads.training.run import within_limit

DIGEST = "sha256:" + "a" * 64
PREFIX = "s3://modelyard/namespaces/ml/models/tj/uid-1/run-1/"


def _summary(entries: int, findings: int) -> dict[str, Any]:
    params = {f"parameter_{i}": "x" * 40 for i in range(6)}
    return {
        "status": "Succeeded",
        "run": "run-1",
        "datasetVersion": DIGEST,
        "model": {"uri": f"{PREFIX}model.joblib", "digest": DIGEST, "cardDigest": DIGEST},
        "metrics": {"accuracy": 0.9, "f1_macro": 0.88, "roc_auc": 0.97},
        "params": params,
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "task": "classification",
        "leaderboard": [
            {
                "rank": rank,
                "estimator": "sklearn.ensemble.RandomForestClassifier",
                "params": params,
                "score": 0.9 - rank / 100,
                "fitSeconds": 0.5,
            }
            for rank in range(1, entries + 1)
        ],
        "report": {
            "uri": f"{PREFIX}report/report.html",
            "digest": DIGEST,
            "plots": ["confusion_matrix.png", "roc_curve.png"],
            "findings": [
                {"reason": "PossibleLeakage", "message": f"feature {i}: " + "y" * 300}
                for i in range(findings)
            ],
        },
    }


def test_a_long_leaderboard_and_findings_are_shortened_not_dropped() -> None:
    summary = _summary(entries=5, findings=6)
    assert len(termination.encode(summary)) <= termination.LIMIT_BYTES
    # Left to itself, the encoder would drop whole fields: the report among them.
    assert "report" not in json.loads(termination.encode(summary))
    trimmed = within_limit(summary)
    assert json.loads(termination.encode(trimmed)) == trimmed  # whole, nothing dropped
    assert trimmed["report"]["uri"] == summary["report"]["uri"]
    assert trimmed["report"]["plots"] == summary["report"]["plots"]
    assert 1 <= len(trimmed["leaderboard"]) < 5
    assert trimmed["leaderboard"][0]["rank"] == 1
    assert trimmed["params"] == summary["params"]


def test_a_summary_that_fits_is_left_as_it_is() -> None:
    summary = _summary(entries=2, findings=1)
    assert within_limit(summary) == summary
