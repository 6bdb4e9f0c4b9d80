"""Every reason the code can write is explained, so the troubleshooting guide covers it."""

from __future__ import annotations

import ast
from pathlib import Path

from modelyard.reasons import EXPLANATIONS, Reason

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "modelyard"


def test_every_reason_is_explained() -> None:
    assert set(EXPLANATIONS) == set(Reason)
    for reason, explanation in EXPLANATIONS.items():
        assert explanation.meaning and explanation.action, reason


def _reason_literals() -> list[tuple[Path, str]]:
    """String literals handed to a WorkloadError or a `reason=` keyword anywhere in the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            args = list(node.args[:1]) if name == "WorkloadError" else []
            args += [k.value for k in node.keywords if k.arg == "reason"]
            found += [
                (path, arg.value)
                for arg in args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
    return found


def test_workload_reasons_come_from_the_catalogue() -> None:
    assert _reason_literals() == []
