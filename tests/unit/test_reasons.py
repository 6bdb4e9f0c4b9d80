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


# Where each call that records a reason takes it, by position.
REASON_POSITION = {
    "WorkloadError": 0,
    "Waiting": 0,
    "Resolution": 1,
    "post_event": 1,
    "set_condition": 3,
}


def _reason_literals() -> list[tuple[Path, str]]:
    """String literals handed as a reason (by position or `reason=`) anywhere in the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            position = REASON_POSITION.get(name)
            args = (
                [node.args[position]] if position is not None and len(node.args) > position else []
            )
            args += [k.value for k in node.keywords if k.arg == "reason"]
            found += [
                (path, arg.value)
                for arg in args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
    return found


def test_reasons_come_from_the_catalogue() -> None:
    assert _reason_literals() == []
