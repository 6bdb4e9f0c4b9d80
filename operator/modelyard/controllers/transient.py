"""Retry a follow-up call through a short API server outage (a restart, a timeout).

Job event handlers are not retried by kopf, and the event that finished a Job does not come
again: if telling the followers of a finished ingestion or run fails, they would wait forever."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

# Seconds between attempts: about a minute in all, longer than an API server restart.
DELAYS = (1, 2, 4, 8, 15, 30)
logger = logging.getLogger(__name__)


def _transient(error: Exception) -> bool:
    if isinstance(error, ApiException):
        status = int(error.status or 0)
        return status == 429 or status >= 500
    return isinstance(error, HTTPError | ConnectionError | TimeoutError)


def retrying(what: str, call: Callable[[], None]) -> None:
    """`call()`, again after each delay while it fails with a transient error."""
    for delay in DELAYS:
        try:
            call()
            return
        except Exception as error:
            if not _transient(error):
                raise
            logger.warning("%s failed (%s); retrying in %d s", what, error, delay)
            time.sleep(delay)
    call()
