"""When a Dataset's scheduled refresh is due: pure arithmetic on its spec.refresh and status.

Cron slots come from croniter in UTC; an interval counts from the start of the previous refresh
(status.lastRefreshTime, whatever started it). Missed slots run once: a slot in the past is due
now, and the next one is computed from now, not from the slot. Every input is persisted (status
and the Dataset's own annotation), so an operator that restarts finds the same due slot, and so
the same ingest Job name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from modelyard.api.refresh import RefreshSpec, parse_duration

SLOT_PREFIX = "sched-"


class InvalidSchedule(ValueError):
    """A cron expression the CRD's pattern let through but croniter refuses, or one that is
    never due (e.g. 30 February)."""


@dataclass(frozen=True)
class Plan:
    #: What status.nextRefreshTime should say; None while suspended.
    next: datetime | None
    #: The slot to start a refresh for now, if one is due and not started yet.
    due: datetime | None = None


def slot_token(slot: datetime) -> str:
    """The refresh token of a slot: part of the ingest Job's name, so one slot is one Job."""
    return f"{SLOT_PREFIX}{int(slot.timestamp())}"


def token_slot(token: str | None) -> datetime | None:
    """The slot a token was made from; None for anything else."""
    if not token or not token.startswith(SLOT_PREFIX):
        return None
    digits = token.removeprefix(SLOT_PREFIX)
    return datetime.fromtimestamp(int(digits), UTC) if digits.isdigit() else None


def parse_time(text: str | None) -> datetime | None:
    """A status timestamp (RFC 3339, as the API server returns it) as an aware datetime."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def format_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cron_after(expression: str, moment: datetime) -> datetime:
    """The first slot of `expression` strictly after `moment`, in UTC."""
    try:
        found: datetime = croniter(expression, moment.astimezone(UTC)).get_next(datetime)
    except CroniterBadDateError as error:
        raise InvalidSchedule(f"{expression!r} never comes due") from error
    except (CroniterBadCronError, CroniterError, ValueError) as error:
        raise InvalidSchedule(f"{expression!r} is not a valid cron expression: {error}") from error
    return found.astimezone(UTC)


def _whole_seconds(moment: datetime) -> datetime:
    # Status times have second precision; slots computed from them must compare equal after a
    # round trip through status.
    return moment.replace(microsecond=0)


def plan(
    refresh: RefreshSpec,
    last_start: datetime | None,
    recorded_next: datetime | None,
    last_slot: datetime | None,
    now: datetime,
) -> Plan:
    """What to record and start now.

    `last_start`: status.lastRefreshTime; `recorded_next`: status.nextRefreshTime (None when
    nothing was scheduled yet, or suspended: the schedule then starts from now and the slots
    missed meanwhile never run); `last_slot`: the slot of the latest scheduled refresh started.
    """
    now = _whole_seconds(now)
    if refresh.suspend:
        return Plan(next=None)
    if refresh.schedule is not None:
        return _cron_plan(refresh.schedule, recorded_next, last_slot, now)
    assert refresh.interval is not None  # the API allows exactly one of the two
    interval = parse_duration(refresh.interval)
    return _interval_plan(interval, last_start, recorded_next, last_slot, now)


def _cron_plan(
    expression: str, recorded: datetime | None, last_slot: datetime | None, now: datetime
) -> Plan:
    upcoming = cron_after(expression, now)  # validates the expression on every call
    # A recorded time that is no slot of the expression comes from an earlier schedule.
    if recorded is None or not croniter.match(expression, recorded):
        return Plan(next=upcoming)
    if recorded > now:
        return Plan(next=recorded)
    if last_slot == recorded:
        return Plan(next=upcoming)  # started already: the next slot after now, missed ones skipped
    return Plan(next=recorded, due=recorded)


def _interval_plan(
    interval: timedelta,
    last_start: datetime | None,
    recorded: datetime | None,
    last_slot: datetime | None,
    now: datetime,
) -> Plan:
    if last_start is None:
        return Plan(next=None)  # nothing to count from until the first ingestion starts
    if recorded is None:
        # Newly scheduled or resumed: the first due time after now, never one in the past.
        counted = last_start + interval
        return Plan(next=counted if counted > now else now + interval)
    # A refresh of any kind restarts the interval (last_start moves); a recorded time never lies
    # more than one interval ahead of now (the interval may have been shortened), and one set on
    # resuming stays in force over a last_start from before the suspension.
    planned = max(min(recorded, now + interval), last_start + interval)
    if planned > now or last_slot == planned:
        return Plan(next=planned)  # not due yet, or started: it moves once the start is recorded
    return Plan(next=planned, due=planned)
