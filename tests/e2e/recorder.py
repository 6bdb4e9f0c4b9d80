"""The e2e session records every status the operator writes (tests/plugins/status_recording.py)
and checks them through the Argo CD health checks at the end (test_recorded_health.py).
tests/e2e/conftest.py imports the fixtures and the hook from here."""

from __future__ import annotations

import pytest

from tests.plugins.status_recording import StatusRecorder, status_recorder

__all__ = ["CHECK_LAST", "pytest_collection_modifyitems", "recorded_statuses", "status_recorder"]

# The module whose tests read the whole session's recording.
CHECK_LAST = "test_recorded_health.py"


@pytest.fixture(scope="session", autouse=True)
def recorded_statuses(status_recorder: StatusRecorder) -> StatusRecorder:
    """Watching from before the first e2e test to after the last."""
    return status_recorder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The recorded statuses are checked after every other test has made its objects."""
    items.sort(key=lambda item: item.path.name == CHECK_LAST)
