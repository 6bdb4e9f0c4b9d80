"""One reconcile of a ModelDeployment at a time: events that come during one are folded into a
single reconcile after it, on the thread whose turn it was."""

from __future__ import annotations

import threading

import pytest

from modelyard.controllers.modeldeployment.turns import now_or_after, one_at_a_time


def test_an_event_with_nobody_reconciling_runs_at_once() -> None:
    ran: list[str] = []
    now_or_after("ml", "iris", lambda: ran.append("event"))
    assert ran == ["event"]


def test_events_during_a_reconcile_run_once_after_it_on_its_thread() -> None:
    ran: list[tuple[str, int]] = []
    holder = threading.get_ident()
    with one_at_a_time("ml", "iris"):
        callers = [
            threading.Thread(
                target=now_or_after,
                args=("ml", "iris", lambda: ran.append(("event", threading.get_ident()))),
            )
            for _ in range(3)
        ]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()  # none of them waits for the turn
        ran.append(("reconcile", holder))
    assert ran == [("reconcile", holder), ("event", holder)]


def test_another_objects_event_does_not_wait_for_the_turn() -> None:
    ran: list[str] = []
    with one_at_a_time("ml", "iris"):
        now_or_after("ml", "wine", lambda: ran.append("wine"))
        now_or_after("other", "iris", lambda: ran.append("other"))
        assert ran == ["wine", "other"]


def test_events_still_run_when_the_reconcile_fails() -> None:
    ran: list[str] = []
    with pytest.raises(RuntimeError), one_at_a_time("ml", "iris"):
        caller = threading.Thread(target=now_or_after, args=("ml", "iris", lambda: ran.append("e")))
        caller.start()
        caller.join()
        assert ran == []
        raise RuntimeError("the API server went away")
    assert ran == ["e"]


def test_a_failing_event_does_not_stop_the_next() -> None:
    ran: list[str] = []

    def fails() -> None:
        raise RuntimeError("conflict")

    now_or_after("ml", "iris", fails)
    now_or_after("ml", "iris", lambda: ran.append("next"))
    assert ran == ["next"]
