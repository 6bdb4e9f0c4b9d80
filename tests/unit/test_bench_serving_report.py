"""The serving benchmark's report: a cell where a server failed or answered too little counts for
no goal, older runs without error counts are not taken as error-free, and the HTTP verdict is
computed from the figures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.bench.serving import machine, report

SERVERS = (
    "modelyard V2",
    "modelyard V1",
    "MLServer V2",
    "KServe V2",
    "KServe V1",
    "FastAPI V1",
    "App on uvicorn V1",
    "App on granian V1",
    "ceiling",
)


def run(server: str, speed: float, level: int, /, **figures: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "model": "lr",
        "model_label": "iris LogisticRegression",
        "workers": 1,
        "rows": 1,
        "server": server,
        "mode": "closed",
        "level": level,
        "requests": int(speed * 3),
        "throughput": speed,
        "p50_ms": 1000 / speed,
        "p99_ms": 3000 / speed,
        "errors": 0,
        "socket_errors": 0,
        "timeouts": 0,
        "bad_status": 0,
    }
    result.update(figures)
    return result


def cell(level: int = 8, **overrides: dict[str, Any]) -> list[dict[str, Any]]:
    speeds = {"modelyard V2": 9000.0, "modelyard V1": 10000.0, "ceiling": 40000.0}
    speeds |= {"App on uvicorn V1": 5000.0, "App on granian V1": 8000.0}
    return [
        run(server, speeds.get(server, 500.0), level, **overrides.get(server, {}))
        for server in SERVERS
    ]


def test_a_valid_cell_counts_for_every_goal() -> None:
    _, tally = report.goals(cell())
    assert tally["throughput"] == (3, 3, 0)
    # 10,000 against granian's 8,000: 25 %, above the 20 % goal.
    assert tally["http"] == (1, 1, 0)


def test_a_peer_that_answered_almost_nothing_makes_the_cell_invalid() -> None:
    # The bogus cell of the old report: 1 request in the run, a "32,253x" ratio.
    results = cell(**{"KServe V1": {"requests": 1, "throughput": 0.33}})
    table, tally = report.goals(results)
    assert tally["throughput"] == (0, 0, 3)
    assert tally["http"] == (0, 0, 1)
    assert "**invalid**: KServe V1: 1 answered (minimum 100)" in table[-1]


def test_errors_or_time_outs_make_the_cell_invalid() -> None:
    failed = {"errors": 2, "socket_errors": 0, "timeouts": 2, "bad_status": 0}
    table, tally = report.goals(cell(**{"modelyard V2": failed}))
    assert tally["p99"] == (0, 0, 3)
    assert "2 (0 socket, 2 timeouts, 0 non-2xx)" in table[-1]


def test_the_minimum_grows_with_the_connections() -> None:
    # 600 requests: enough at 8 connections, not at 256 (4 each).
    slow = {"MLServer V2": {"requests": 600}}
    assert report.problems({r["server"]: r for r in cell(8, **slow)}) == []
    invalid = report.problems({r["server"]: r for r in cell(256, **slow)})
    assert invalid == [
        "MLServer V2: 600 answered (minimum 1024), errors 0 (0 socket, 0 timeouts, 0 non-2xx)"
    ]


def test_runs_without_error_counts_are_not_taken_as_error_free() -> None:
    results = cell()
    for result in results:
        del result["errors"], result["socket_errors"], result["timeouts"], result["bad_status"]
    table, tally = report.goals(results)
    assert tally["ceiling"] == (0, 0, 1)
    assert "errors not recorded" in table[-1]


def test_the_http_verdict_follows_the_figures() -> None:
    # Ours 10,000 against granian 9,000: 11 %, below the 20 % goal.
    results = cell(**{"App on granian V1": {"throughput": 9000.0, "requests": 27000}})
    table, tally = report.goals(results)
    assert tally["http"] == (0, 1, 0)
    assert "+11 %" in table[-1]


def test_the_ceiling_goal_is_judged_on_one_row_iris_at_concurrency_8_and_above() -> None:
    judged = [*cell(level=8), *cell(level=64)]
    # Far from the ceiling, but outside the goal's cells: concurrency 1, and 64 rows.
    unjudged = [*cell(level=1), *[{**result, "rows": 64} for result in cell(level=8)]]
    _, tally = report.goals(judged + unjudged)
    assert tally["ceiling"] == (0, 2, 0)  # 9,000 of 40,000 req/s: 22 %, in 2 cells


def test_batching_on_and_off_side_by_side() -> None:
    figures = cell()
    figures += [run("modelyard unbatched V2", 3000.0, 8), run("modelyard unbatched V1", 4000.0, 8)]
    table, tally = report.goals(figures)
    columns = table[0].strip("| ").split(" | ")
    row = table[2].strip("| ").split(" | ")
    assert row[columns.index("batching on ÷ off (V2)")] == "3.0x"  # 9,000 against 3,000
    # The HTTP verdict compares the same App: unbatched 4,000 against granian's 8,000.
    assert tally["http"] == (0, 1, 0)


def test_the_machine_probe_sees_that_short_work_takes_a_whole_slow_spell() -> None:
    # 10 µs units; one spell of 1 ms every 20 ms at half speed (5 % of the time).
    units = np.full(200_000, 10e-6)
    for start in range(0, len(units), 2000):
        units[start : start + 50] = 20e-6
    found = machine.figures(units)
    assert found["unit_us"] == pytest.approx(10)
    assert found["slow_share"] == pytest.approx(0.025)
    assert found["spell_ms_p50"] == pytest.approx(1.0)
    spread = found["spread_by_window_ms"]
    # 0.3 ms fits in a spell: the p99 window ran wholly slow. 10 ms holds one spell at most,
    # which adds 1 ms of its 20: at most 5 %.
    assert spread["0.3"] == pytest.approx(2.0)
    assert 1.0 < spread["10"] <= 1.05


def test_the_report_shows_each_machine_probe() -> None:
    probe = {"seconds": 5.0, "cpus": "0", "when": "before the run, 2026-12-07 01:00 UTC"}
    probe |= machine.figures(np.full(1000, 10e-6))
    lines = report.steadiness({"machine": [probe]})
    assert lines[0] == "## The machine's own spread"
    row = next(line for line in lines if line.startswith("| before the run"))
    assert "| 10.0 |" in row and "| 0 % |" in row and row.endswith("| 1.00 |")
    assert report.steadiness({}) == []
