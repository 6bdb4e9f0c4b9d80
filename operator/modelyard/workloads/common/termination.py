"""The JSON summary a finishing workload leaves in its termination message for the operator.

The kubelet keeps at most 4096 bytes of it and cuts the rest, which would leave the operator
JSON it cannot parse: a success recorded as a failure, a failure without its reason. So the
summary is cut down here instead, always to whole JSON, keeping what the operator needs most.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
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
# Never dropped or shortened: the operator reads these (controllers/dataset.py, trainingjob.py)
# and cannot record a result without them.
REQUIRED = frozenset(
    {
        "status",
        "reason",
        "version",
        "uri",
        "model",
        "datasetVersion",
        "run",
        "rows",
        "metrics",
        "task",
    }
)
STATISTICS_TRUNCATED = "statisticsTruncated"
PARAMS_TRUNCATED = "paramsTruncated"
DROPPED_FIELDS = "droppedFields"
_KEPT = REQUIRED | {STATISTICS_TRUNCATED, PARAMS_TRUNCATED, DROPPED_FIELDS}
# Before params and other fields go, text is cut to this many characters, which keeps the point
# of a message; it gets back whatever room is left at the end.
TEXT_FLOOR_CHARS = 200
ELLIPSIS = "\u2026"
# Only when the required fields alone exceed the limit, which the workloads' bounded values
# (digests, names, URIs) never do: a failure the operator records beats a result it cannot read.
OVERFLOW = {
    "status": "Failed",
    "reason": Reason.InternalError,
    "message": f"the workload's summary exceeds {LIMIT_BYTES} bytes without its optional fields",
}

Message = dict[str, Any]


def encode(summary: Message, detail: list[dict[str, Any]] | None = None) -> str:
    """`summary` plus `detail` (under "statistics"), as JSON of at most LIMIT_BYTES bytes.

    What does not fit goes in this order, each step only when the ones before did not suffice:
    statistics entries from the end (flagged statisticsTruncated); text values other than the
    required ones, down to TEXT_FLOOR_CHARS characters and an ellipsis; params (flagged
    paramsTruncated); other optional fields, largest first (named in droppedFields); the text
    entirely. Shortened text then gets back all the room left, `message` first.
    """
    message = dict(summary)
    if detail:
        message["statistics"] = list(detail)
    texts = {key: value for key, value in message.items() if _is_text(key, value)}
    for cut in (_cut_statistics, _floor_texts, _drop_params, _drop_optional, _empty_texts):
        if _fits(message):
            break
        message = cut(message)
    if not _fits(message):
        return _dumps(OVERFLOW)
    return _dumps(_regrow(message, texts))


def _dumps(message: Message) -> str:
    # ASCII (non-ASCII characters escaped): bytes are characters, and any locale can write it.
    return json.dumps(message, separators=(",", ":"), sort_keys=True)


def _fits(message: Message) -> bool:
    return len(_dumps(message).encode()) <= LIMIT_BYTES


def _is_text(key: str, value: Any) -> bool:
    return key not in _KEPT and isinstance(value, str)


def _largest(low: int, high: int, fits: Callable[[int], bool]) -> int:
    """The largest n in [low, high] that fits (fitting shrinks as n grows); low if none above."""
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _cut_statistics(message: Message) -> Message:
    entries = message.get("statistics")
    if not entries:
        return message
    flagged = {**message, STATISTICS_TRUNCATED: True}

    def keeping(count: int) -> Message:
        rest = {k: v for k, v in flagged.items() if k != "statistics"}
        return {**rest, "statistics": entries[:count]} if count else rest

    return keeping(_largest(0, len(entries) - 1, lambda count: _fits(keeping(count))))


def _shortened(text: str, chars: int) -> str:
    # Slicing a str cuts between characters, never inside a UTF-8 sequence or an escape.
    return text if len(text) <= chars else text[:chars] + ELLIPSIS


def _floor_texts(message: Message) -> Message:
    return {k: _shortened(v, TEXT_FLOOR_CHARS) if _is_text(k, v) else v for k, v in message.items()}


def _empty_texts(message: Message) -> Message:
    return {k: _shortened(v, 0) if _is_text(k, v) else v for k, v in message.items()}


def _drop_params(message: Message) -> Message:
    if "params" not in message:
        return message
    rest = {k: v for k, v in message.items() if k != "params"}
    return {**rest, PARAMS_TRUNCATED: True}


def _drop_optional(message: Message) -> Message:
    # Text stays (it is shortened next); of the rest, the largest go first, so that fewest go.
    optional = [k for k, v in message.items() if k not in _KEPT and not _is_text(k, v)]
    optional.sort(key=lambda key: (-len(_dumps({key: message[key]})), key))
    dropped = list(message.get(DROPPED_FIELDS, []))
    for key in optional:
        dropped.append(key)
        message = {k: v for k, v in message.items() if k != key}
        message[DROPPED_FIELDS] = sorted(dropped)
        if _fits(message):
            break
    return message


def _regrow(message: Message, texts: Mapping[str, str]) -> Message:
    """Shortened text lengthened again, as far as the limit allows (the message first)."""
    for key in sorted(texts, key=lambda key: (key != "message", key)):
        full, cut = texts[key], message.get(key)
        if cut is not None and cut != full:
            message = _lengthen(message, key, full, len(cut) - len(ELLIPSIS))
    return message


def _lengthen(message: Message, key: str, full: str, kept: int) -> Message:
    whole = {**message, key: full}
    if _fits(whole):
        return whole

    def keeping(chars: int) -> Message:
        return {**message, key: _shortened(full, chars)}

    return keeping(_largest(kept, len(full) - 1, lambda chars: _fits(keeping(chars))))


def write(summary: Message, detail: list[dict[str, Any]] | None = None) -> None:
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
