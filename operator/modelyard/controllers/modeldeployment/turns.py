"""One reconcile of a ModelDeployment at a time in this process.

Its own handler and the events of its Deployments (and of its TrainingJob's runs) run on
different kopf workers. Two reconciles at once could each read where the Service points and
then apply it in the other order, pointing the Service back at a track the later one removed.
Events that come while a reconcile runs do not wait on a worker each: the thread whose turn it
is reconciles once more after its own, for all of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from weakref import WeakValueDictionary

log = logging.getLogger(__name__)


class _Turn:
    """Who reconciles an object now, and what to run after it (weakly referenced: it lives as
    long as a thread holds or waits for it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: Callable[[], None] | None = None


_turns: WeakValueDictionary[tuple[str, str], _Turn] = WeakValueDictionary()
_guard = threading.Lock()


def _turn(namespace: str, name: str) -> _Turn:
    with _guard:
        turn = _turns.get((namespace, name))
        if turn is None:
            turn = _turns[(namespace, name)] = _Turn()
        return turn


@contextmanager
def one_at_a_time(namespace: str, name: str) -> Iterator[None]:
    """Hold namespace/name's turn, waiting for it; what came meanwhile runs after."""
    turn = _turn(namespace, name)
    try:
        with turn.lock:
            yield
    finally:
        _drain(turn)


def now_or_after(namespace: str, name: str, action: Callable[[], None]) -> None:
    """Run `action` in namespace/name's turn: now when nobody holds it, else once after the
    holder's own reconcile (one run for any number of calls that came meanwhile)."""
    turn = _turn(namespace, name)
    turn.pending = action
    _drain(turn)


def _drain(turn: _Turn) -> None:
    # The caller set `pending` before trying the lock, the holder tries it again after its
    # release: one of the two sees the other, so no action is left behind.
    while turn.pending is not None and turn.lock.acquire(blocking=False):
        try:
            action, turn.pending = turn.pending, None
            if action is not None:
                try:
                    action()
                except Exception:  # a later event reconciles again; this thread's own work is done
                    log.exception("reconcile after a change failed")
        finally:
            turn.lock.release()
