"""Every status the operator wrote during this e2e session, for all three kinds, through the
Argo CD health checks: never Degraded on the way to Healthy, every Degraded with its reason.
Runs last (tests/e2e/recorder.py); the recording is written for `python -m
tests.plugins.status_recording` to refresh tests/data/recorded-statuses.json from."""

from __future__ import annotations

import time

import pytest

from tests.plugins.status_recording import StatusRecorder
from tests.unit.argocd_health import (
    LUA,
    condition_problems,
    find_lua,
    health_sequence,
    problems,
    transitions,
)

pytestmark = pytest.mark.e2e

# Long enough for the watch to deliver what the last test's objects went through.
SETTLE_SECONDS = 3


def test_recorded_statuses_read_right_in_argo_cd(recorded_statuses: StatusRecorder) -> None:
    lua = find_lua()
    assert lua is not None, f"{LUA} not on PATH: run `make test-deps` (Debian package lua5.1)"
    time.sleep(SETTLE_SECONDS)
    objects = recorded_statuses.objects()
    if not objects:
        error = recorded_statuses.last_error
        pytest.skip(
            "no Modelyard object was made in this session"
            + (f" (last watch error: {error})" if error else "")
        )
    found = []
    for recorded in objects:
        healths = health_sequence(recorded, lua)
        found += problems(recorded, healths) + condition_problems(recorded)
        print(
            f"{recorded.kind} {recorded.namespace}/{recorded.name}: "
            + " → ".join(transitions(healths))
        )
    assert not found, "\n".join(found)
