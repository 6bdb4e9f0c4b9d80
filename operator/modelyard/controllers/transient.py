"""Retry recording a finished Job, and telling its followers, through a short API server outage
(a restart, a timeout).

Job event handlers are not retried by kopf, and the event that finished a Job does not come
again (a re-list brings the Job back, but its result is recorded by then): if recording the
result or telling the followers fails, they would wait forever."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from urllib3.exceptions import HTTPError

from modelyard.controllers.kube import ApiError

# Seconds between attempts: about a minute in all, longer than an API server restart.
DELAYS = (1, 2, 4, 8, 15, 30)
logger = logging.getLogger(__name__)
T = TypeVar("T")


def _transient(error: Exception) -> bool:
    if isinstance(error, ApiError):
        return error.status == 429 or error.status >= 500
    return isinstance(error, HTTPError | ConnectionError | TimeoutError)


def retrying(what: str, call: Callable[[], T]) -> T:
    """`call()`, again after each delay while it fails with a transient error."""
    for delay in DELAYS:
        try:
            return call()
        except Exception as error:
            if not _transient(error):
                raise
            logger.warning("%s failed (%s); retrying in %d s", what, error, delay)
            time.sleep(delay)
    return call()


def recorded(what: str, record: Callable[[], bool]) -> bool:
    """`retrying(record)`, where `record()` writes a result and says whether it did, or finds it
    written and says False. Found written after an attempt of ours failed counts as ours: the API
    server may have applied that write and lost only its answer, and the followers must be told."""
    failed_before = False

    def attempt() -> bool:
        nonlocal failed_before
        try:
            return record() or failed_before
        except Exception:
            failed_before = True
            raise

    return retrying(what, attempt)
