"""Scheduled refresh: how often a Dataset re-reads its source.

A refresh is an ingestion like any other: an unchanged source gives the same version (and
retrains nothing), a changed one a new version. Refreshes never overlap, and the schedules missed
while the operator was away run once, not once each.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import Field, StringConstraints

from modelyard.api.base import ApiModel, Rule, count_set

# Go's time.ParseDuration units that CEL's duration() also takes; days are not among them.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"
MIN_INTERVAL = timedelta(minutes=1)
# Five fields (minute hour day-of-month month day-of-week) or a macro; croniter checks the rest.
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|[^\s]+\s+[^\s]+\s+[^\s]+\s+[^\s]+\s+[^\s]+)$"
)


def parse_duration(text: str) -> timedelta:
    """A Go-style duration (90s, 15m, 1h30m) as a timedelta."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    return timedelta(seconds=sum(float(n) * units[u] for n, u in _DURATION.findall(text)))


class RefreshSpec(ApiModel):
    rules = (
        Rule(
            cel="[has(self.schedule), has(self.interval)].filter(x, x).size() == 1",
            message="exactly one of schedule or interval must be set",
            check=lambda r: count_set(r.schedule, r.interval) == 1,
        ),
        Rule(
            cel="!has(self.interval) || duration(self.interval) >= duration('60s')",
            message="interval must be at least 1m",
            check=lambda r: r.interval is None or parse_duration(r.interval) >= MIN_INTERVAL,
            field_path=".interval",
        ),
    )

    schedule: Annotated[str, StringConstraints(max_length=128, pattern=CRON_PATTERN)] | None = (
        Field(
            default=None,
            description="Cron schedule in UTC, e.g. '0 * * * *' (hourly) or @daily.",
        )
    )
    interval: Annotated[str, StringConstraints(max_length=32, pattern=DURATION_PATTERN)] | None = (
        Field(
            default=None,
            description="Time between refreshes, at least 1m, e.g. 15m or 6h; counted from the "
            "start of the previous one.",
        )
    )
    suspend: bool = Field(
        default=False,
        description="Stop scheduled refreshes (a manual refresh still runs); resuming does not "
        "run the ones missed.",
    )
