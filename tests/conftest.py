"""Shared test setup: the cluster and S3 fixtures live in plugins, one per service."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture
def repo() -> Path:
    return REPO
