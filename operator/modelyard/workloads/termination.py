"""The JSON summary a finishing workload leaves in its termination message for the operator.

The kubelet keeps at most 4096 bytes of it, so callers pass the essentials first and optional
detail (statistics) separately; detail is trimmed until the whole message fits.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.exitcodes import EXIT_FAILED as EXIT_FAILED
from modelyard.exitcodes import EXIT_INVALID_DATA as EXIT_INVALID_DATA
from modelyard.exitcodes import EXIT_OBJECTIVE_NOT_MET as EXIT_OBJECTIVE_NOT_MET
from modelyard.exitcodes import EXIT_USAGE as EXIT_USAGE

# Re-exported: the workloads' whole vocabulary of endings is in this module.
from modelyard.reasons import Reason

LIMIT_BYTES = 4096
DEFAULT_PATH = "/dev/termination-log"


def encode(summary: dict[str, Any], detail: list[dict[str, Any]] | None = None) -> str:
    """`summary` plus as much of `detail` (under key "statistics") as fits in the limit."""
    detail = list(detail or [])
    while True:
        message = dict(summary)
        if detail:
            message["statistics"] = detail
        text = json.dumps(message, separators=(",", ":"), sort_keys=True)
        if len(text.encode()) <= LIMIT_BYTES or not detail:
            return text[:LIMIT_BYTES]
        detail.pop()
        summary = {**summary, "statisticsTruncated": True}


def write(summary: dict[str, Any], detail: list[dict[str, Any]] | None = None) -> None:
    """Write the message where Kubernetes reads it; outside a pod, print it instead."""
    text = encode(summary, detail)
    path = Path(os.environ.get("MODELYARD_TERMINATION_LOG", DEFAULT_PATH))
    # Outside a pod there is no writable /dev/termination-log: stdout below is the record.
    with contextlib.suppress(OSError):
        path.write_text(text)
    print(text, file=sys.stdout, flush=True)


class WorkloadError(Exception):
    """A failure the user can act on: a stable reason, a message naming the culprit."""

    exit_code = EXIT_FAILED

    def __init__(self, reason: str, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


def fail(error: WorkloadError) -> int:
    write({"status": "Failed", "reason": error.reason, "message": error.message})
    print(f"error: {error.reason}: {error.message}", file=sys.stderr)
    return error.exit_code


@dataclass(frozen=True)
class Completed:
    """A workload that ran to its end: the summary for the operator, and the exit code."""

    summary: dict[str, Any]
    detail: list[dict[str, Any]] | None = None
    exit_code: int = 0


def run(body: Callable[[], Completed]) -> int:
    """Run a workload: its result or its failure becomes the termination message and exit code."""
    from botocore.exceptions import BotoCoreError, ClientError

    from modelyard.storage.client import StorageUnavailable

    try:
        completed = body()
    except WorkloadError as error:
        return fail(error)
    except (StorageUnavailable, BotoCoreError, ClientError) as error:
        # Exit code 1: the Job retries within its backoffLimit; nothing was published.
        return fail(WorkloadError(Reason.StorageUnavailable, f"S3 storage: {error}"))
    except Exception as error:  # a bug, not a user error: keep the traceback for the logs
        traceback.print_exc()
        return fail(WorkloadError(Reason.InternalError, f"{type(error).__name__}: {error}"))
    write(completed.summary, completed.detail)
    return completed.exit_code
