"""When a scheduled refresh is due (controllers/refresh.py): cron slots, intervals counted from
the previous start, missed slots run once, suspension, and expressions croniter refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelyard.api.refresh import RefreshSpec
from modelyard.controllers import refresh
from modelyard.controllers.refresh import InvalidSchedule, Plan, plan

T0 = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def cron(expression: str, suspend: bool = False) -> RefreshSpec:
    return RefreshSpec(schedule=expression, suspend=suspend)


def every(interval: str, suspend: bool = False) -> RefreshSpec:
    return RefreshSpec(interval=interval, suspend=suspend)


def test_cron_schedules_the_next_slot_after_now_in_utc() -> None:
    now = T0 + timedelta(minutes=7, seconds=30)
    assert plan(cron("*/15 * * * *"), None, None, None, now) == Plan(next=T0 + 15 * MINUTE)
    assert plan(cron("@daily"), None, None, None, now) == Plan(
        next=T0.replace(hour=0) + 24 * 60 * MINUTE
    )


def test_cron_slot_that_came_due_is_started_once() -> None:
    slot = T0 + 15 * MINUTE
    due = plan(cron("*/15 * * * *"), None, slot, None, slot + timedelta(seconds=4))
    assert due == Plan(next=slot, due=slot)
    started = plan(cron("*/15 * * * *"), None, slot, slot, slot + timedelta(seconds=14))
    assert started == Plan(next=slot + 15 * MINUTE)


def test_missed_cron_slots_run_once_then_the_next_from_now() -> None:
    # The operator was away from 10:15 to 11:02: four slots passed, the first recorded one runs.
    recorded = T0 + 15 * MINUTE
    back = T0 + 62 * MINUTE
    assert plan(cron("*/15 * * * *"), None, recorded, None, back) == Plan(recorded, recorded)
    assert plan(cron("*/15 * * * *"), None, recorded, recorded, back) == Plan(next=T0 + 75 * MINUTE)


def test_a_changed_cron_schedule_starts_from_now() -> None:
    # Recorded under '*/15'; '0 * * * *' has no slot at 10:15, so it is not due.
    result = plan(cron("0 * * * *"), None, T0 + 15 * MINUTE, None, T0 + 20 * MINUTE)
    assert result == Plan(next=T0 + 60 * MINUTE)


def test_interval_counts_from_the_start_of_the_previous_refresh() -> None:
    started = T0 + timedelta(seconds=13)
    assert plan(every("15m"), started, None, None, started + MINUTE) == Plan(
        next=started + 15 * MINUTE
    )
    # A manual refresh at 10:05 moves the next one to 10:20.
    manual = T0 + 5 * MINUTE
    result = plan(every("15m"), manual, started + 15 * MINUTE, None, manual + MINUTE)
    assert result == Plan(next=manual + 15 * MINUTE)


def test_interval_waits_for_the_first_ingestion_to_start() -> None:
    assert plan(every("15m"), None, None, None, T0) == Plan(next=None)


def test_interval_slot_that_came_due_is_started_once() -> None:
    slot = T0 + 15 * MINUTE
    now = slot + timedelta(seconds=3)
    assert plan(every("15m"), T0, slot, None, now) == Plan(next=slot, due=slot)
    # Started, its start not recorded yet: not due again.
    assert plan(every("15m"), T0, slot, slot, now) == Plan(next=slot)


def test_missed_interval_slots_run_once_then_count_from_that_start() -> None:
    slot = T0 + MINUTE
    back = T0 + 10 * MINUTE  # nine intervals missed
    assert plan(every("1m"), T0, slot, None, back) == Plan(next=slot, due=slot)
    restarted = back + timedelta(seconds=2)
    assert plan(every("1m"), restarted, slot, slot, back + timedelta(seconds=5)) == Plan(
        next=restarted + MINUTE
    )


def test_shortened_interval_takes_effect_from_now() -> None:
    recorded = T0 + 6 * 60 * MINUTE  # under 6h
    assert plan(every("5m"), T0, recorded, None, T0 + MINUTE) == Plan(next=T0 + 6 * MINUTE)


def test_suspended_schedules_nothing() -> None:
    assert plan(every("1m", suspend=True), T0, T0 + MINUTE, None, T0 + 5 * MINUTE) == Plan(None)
    assert plan(cron("* * * * *", suspend=True), None, T0, None, T0 + 5 * MINUTE) == Plan(None)


def test_resuming_does_not_run_the_missed_slots() -> None:
    # Suspended at 10:00 (status.nextRefreshTime removed), resumed at 12:00:30.
    resumed = T0 + timedelta(hours=2, seconds=30)
    assert plan(every("15m"), T0, None, None, resumed) == Plan(next=resumed + 15 * MINUTE)
    assert plan(cron("*/15 * * * *"), None, None, None, resumed) == Plan(
        next=T0 + timedelta(hours=2, minutes=15)
    )
    # Later ticks keep that time, though lastRefreshTime is from before the suspension.
    later = resumed + 5 * MINUTE
    assert plan(every("15m"), T0, resumed + 15 * MINUTE, None, later) == Plan(
        next=resumed + 15 * MINUTE
    )


@pytest.mark.parametrize(
    ("expression", "says"),
    [("99 * * * *", "not a valid cron expression"), ("0 0 31 2 *", "never comes due")],
)
def test_cron_expression_croniter_refuses_is_an_invalid_schedule(
    expression: str, says: str
) -> None:
    with pytest.raises(InvalidSchedule, match=says):
        plan(cron(expression), None, None, None, T0)


def test_slot_tokens_round_trip_and_ignore_other_values() -> None:
    slot = T0 + 15 * MINUTE
    assert refresh.slot_token(slot) == f"sched-{int(slot.timestamp())}"
    assert refresh.token_slot(refresh.slot_token(slot)) == slot
    assert refresh.token_slot("1") is None
    assert refresh.token_slot(None) is None
    assert refresh.parse_time(refresh.format_time(slot)) == slot
