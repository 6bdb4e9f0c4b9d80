"""docs/benchmarks/serving.md (tables, goals), serving.png (plot) and serving.json (raw)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tests.bench.serving import machine

OUT = Path(__file__).resolve().parents[3] / "docs" / "benchmarks"
RAW = OUT / "serving.json"
OURS = {"V2": "modelyard V2", "V1": "modelyard V1"}
# Ours with adaptive batching off: the same App as under the other HTTP servers (LAYERS).
UNBATCHED = {"V2": "modelyard unbatched V2", "V1": "modelyard unbatched V1"}
# Each goal compares our endpoint with the peer endpoint that speaks the same protocol.
PEERS = (("MLServer V2", "V2"), ("KServe V2", "V2"), ("KServe V1", "V1"))
# Our App and model under other HTTP servers (V1, like the FastAPI floor): what our own HTTP
# server is worth on its own.
LAYERS = ("App on uvicorn V1", "App on granian V1")
THROUGHPUT_GOAL = 3.0
CEILING_GOAL = 0.7
# The cells the ceiling goal is judged in: one-row iris LogisticRegression on one worker at
# concurrency 8 and above, where requests queue together (the model's own cost is smallest).
CEILING_MODEL = "iris LogisticRegression"
CEILING_MIN_CONCURRENCY = 8
HTTP_GOAL = 0.2  # our HTTP server: at least this much more throughput than the best of LAYERS
# A cell is invalid when any server in it answered errors or too few requests. 100: a p99 of
# fewer samples is their maximum. 4 per connection: wrk drops the requests in flight when the
# run ends, up to one per connection, so below 4 answers a connection that cut alone is over a
# fifth of the count.
MIN_REQUESTS = 100
MIN_PER_CONNECTION = 4

Result = dict[str, Any]


def _cells(results: list[Result], mode: str) -> dict[tuple[Any, ...], dict[str, Result]]:
    """(model, workers, rows, level) -> server -> result."""
    cells: dict[tuple[Any, ...], dict[str, Result]] = {}
    for result in results:
        if result["mode"] != mode:
            continue
        key = (result["model_label"], result["workers"], result["rows"], result["level"])
        cells.setdefault(key, {})[result["server"]] = result
    return cells


def minimum(result: Result) -> int:
    """The fewest answered requests that make this run's figures count."""
    if result["mode"] == "closed":
        return max(MIN_REQUESTS, MIN_PER_CONNECTION * int(result["level"]))
    return MIN_REQUESTS


def errors_text(result: Result) -> str:
    """The run's errors, split where they were recorded; "not recorded" for older runs."""
    if "errors" not in result:
        return "errors not recorded"
    if "bad_status" not in result:
        return str(result["errors"])  # older runs: the total only
    timeouts = result["timeouts"]
    split = [
        f"{result['socket_errors']} socket",
        "timeouts in socket" if timeouts is None else f"{timeouts} timeouts",
        f"{result['bad_status']} non-2xx",
    ]
    return f"{result['errors']} ({', '.join(split)})"


def problem(result: Result) -> str | None:
    """Why this run's figures do not count, or None when they do."""
    if "errors" not in result:
        return f"{result['server']}: errors not recorded"
    answered = result["requests"] - result["errors"]
    if result["errors"] or answered < minimum(result):
        return (
            f"{result['server']}: {answered} answered (minimum {minimum(result)}), "
            f"errors {errors_text(result)}"
        )
    return None


def problems(servers: dict[str, Result]) -> list[str]:
    """Why a cell is invalid: one line per server whose run does not count; empty if valid."""
    return [text for result in servers.values() if (text := problem(result)) is not None]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")


def _x(value: float) -> str:
    if value != value:  # NaN: the peer was not measured here
        return "n/a"
    return "∞" if value == float("inf") else f"{value:.1f}x"


def _row(values: Iterable[object]) -> str:
    return "| " + " | ".join(str(v) for v in values) + " |"


def goals(results: list[Result]) -> tuple[list[str], dict[str, tuple[int, int, int]]]:
    """The closed-loop comparison table and, per goal, (cells met, valid cells, invalid cells).

    An invalid cell's ratios are shown but count for no goal: the peer that failed in it was
    not measured, and whoever shared the machine with its failure was not measured alone.
    """
    header = [
        "model",
        "workers",
        "rows",
        "c",
        "ours V2 req/s",
        "x MLServer",
        "x KServe V2",
        "ours V1 req/s",
        "x KServe V1",
        "x FastAPI",
        "% ceiling (V2)",
        "batching on ÷ off (V2)",
        "p99 ours V2 ms",
        "p99 off ÷ on (V2)",
        "p99 MLServer ÷ ours",
        "p99 KServe V2 ÷ ours",
        "p99 KServe V1 ÷ ours V1",
        "ours V1 ÷ best App elsewhere",
        "cell",
    ]
    lines = [_row(header), _row("---" for _ in header)]
    # Per goal: cells met, valid cells, invalid cells.
    tally = {name: [0, 0, 0] for name in ("throughput", "p99", "ceiling", "http")}
    for (model, workers, rows, level), servers in sorted(_cells(results, "closed").items()):
        ours = {protocol: servers[label] for protocol, label in OURS.items()}
        invalid = problems(servers)
        cells: list[object] = [model, workers, rows, level]
        throughput = {}
        p99 = {}
        for peer, protocol in PEERS:
            if peer not in servers:
                throughput[peer] = p99[peer] = float("nan")  # not measured in this cell
                continue
            mine, theirs = ours[protocol], servers[peer]
            throughput[peer] = _ratio(mine["throughput"], theirs["throughput"])
            p99[peer] = _ratio(theirs["p99_ms"], mine["p99_ms"])
            _count(tally["throughput"], throughput[peer] >= THROUGHPUT_GOAL, invalid)
            _count(tally["p99"], p99[peer] >= THROUGHPUT_GOAL, invalid)
        ceiling = _ratio(ours["V2"]["throughput"], servers["ceiling"]["throughput"])
        if (model, workers, rows) == (CEILING_MODEL, 1, 1) and level >= CEILING_MIN_CONCURRENCY:
            _count(tally["ceiling"], ceiling >= CEILING_GOAL, invalid)
        unbatched = servers.get(UNBATCHED["V2"])
        http = _http_gain(servers)
        if http == http:  # NaN: no other server ran our App in this cell
            _count(tally["http"], http >= HTTP_GOAL, invalid)
        cells += [
            f"{ours['V2']['throughput']:,.0f}",
            _x(throughput["MLServer V2"]),
            _x(throughput["KServe V2"]),
            f"{ours['V1']['throughput']:,.0f}",
            _x(throughput["KServe V1"]),
            _x(_ratio(ours["V1"]["throughput"], servers["FastAPI V1"]["throughput"])),
            f"{100 * ceiling:.0f} %",
            "n/a"
            if unbatched is None
            else _x(_ratio(ours["V2"]["throughput"], unbatched["throughput"])),
            f"{ours['V2']['p99_ms']:.2f}",
            "n/a" if unbatched is None else _x(_ratio(unbatched["p99_ms"], ours["V2"]["p99_ms"])),
            _x(p99["MLServer V2"]),
            _x(p99["KServe V2"]),
            _x(p99["KServe V1"]),
            "n/a" if http != http else f"{100 * http:+.0f} %",
            "valid" if not invalid else "**invalid**: " + "; ".join(invalid),
        ]
        lines.append(_row(cells))
    return lines, {name: (met, valid, bad) for name, (met, valid, bad) in tally.items()}


def _count(tally: list[int], met: bool, invalid: list[str]) -> None:
    if invalid:
        tally[2] += 1
        return
    tally[0] += met
    tally[1] += 1


def _http_gain(servers: dict[str, Result]) -> float:
    """Our V1 throughput over the best of our App under another server, minus 1; NaN if none."""
    others = [servers[label]["throughput"] for label in LAYERS if label in servers]
    if not others:
        return float("nan")
    return _ratio(servers[_same_app(servers)]["throughput"], max(others)) - 1


def _same_app(servers: dict[str, Result]) -> str:
    """Our V1 endpoint running the App as the other HTTP servers run it: batching off (runs
    from before batching had only the one)."""
    return UNBATCHED["V1"] if UNBATCHED["V1"] in servers else OURS["V1"]


def absolute(results: list[Result], mode: str) -> list[str]:
    header = ["model", "workers", "rows", "c" if mode == "closed" else "rate/s", "server"]
    header += ["requests", "req/s", "p50 ms", "p99 ms", "errors", "valid run"]
    lines = [_row(header), _row("---" for _ in header)]
    for (model, workers, rows, level), servers in sorted(_cells(results, mode).items()):
        for server, result in servers.items():
            lines.append(
                _row(
                    [
                        *(model, workers, rows, level, server),
                        f"{result['requests']:,}",
                        f"{result['throughput']:,.0f}",
                        f"{result['p50_ms']:.2f}",
                        f"{result['p99_ms']:.2f}",
                        errors_text(result),
                        "yes" if problem(result) is None else "**no**",
                    ]
                )
            )
    return lines


def plot(results: list[Result], path: Path) -> None:
    closed = [r for r in results if r["mode"] == "closed" and r["rows"] == 1]
    models = sorted({r["model_label"] for r in closed})
    workers = sorted({r["workers"] for r in closed})
    servers = list(dict.fromkeys(r["server"] for r in closed))
    levels = sorted({r["level"] for r in closed})
    figure, axes = plt.subplots(
        2 * len(workers),
        len(models),
        figsize=(5 * len(models), 3.4 * 2 * len(workers)),
        squeeze=False,
    )
    width = 0.8 / len(servers)
    for w, worker_count in enumerate(workers):
        for m, model in enumerate(models):
            for metric, row, label in (
                ("throughput", 2 * w, "req/s"),
                ("p99_ms", 2 * w + 1, "p99 ms (log)"),
            ):
                ax = axes[row][m]
                for s, server in enumerate(servers):
                    values = [
                        next(
                            (
                                r[metric]
                                for r in closed
                                if (r["model_label"], r["workers"], r["server"], r["level"])
                                == (model, worker_count, server, level)
                            ),
                            0.0,
                        )
                        for level in levels
                    ]
                    positions = [i + s * width for i in range(len(levels))]
                    ax.bar(positions, values, width, label=server)
                ax.set_xticks([i + 0.4 - width / 2 for i in range(len(levels))])
                ax.set_xticklabels([f"c={level}" for level in levels])
                ax.set_title(f"{model}, {worker_count} worker(s), 1 row", fontsize=9)
                ax.set_ylabel(label)
                if metric == "p99_ms":
                    ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def limits(document: dict[str, Any]) -> list[str]:
    """Our handler's time per request and its top functions, beside the HTTP stack's."""
    lines = [
        "## What limits us: profile of the request handler",
        "",
        "The ceiling measures our HTTP stack alone. What our server adds is the request",
        "handler (`App.handle`: decode, predict, encode, metrics, drift), profiled in-process",
        "with cProfile on V2 requests (`tests/bench/serving/profile.py`); shares are of the",
        "handler's own time. Per-request HTTP time from the ceiling: "
        + ", ".join(
            f"{1e6 / r['throughput']:.0f} µs ({r['workers']} worker, c={r['level']})"
            for r in document["results"]
            if r["server"] == "ceiling"
            and r["mode"] == "closed"
            and r["level"] == 64
            and r["rows"] == 1
            and r["model"] == document["results"][0]["model"]
        )
        + ".",
        "",
        "| model | rows | engine | handler µs/request | top functions (share of handler time) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for profile in document.get("profiles", []):
        top = "; ".join(
            f"`{entry['function']}` {100 * entry['share']:.0f} %" for entry in profile["top"][:5]
        )
        lines.append(
            _row(
                [
                    *(profile["model"], profile["rows"], profile["engine"]),
                    f"{profile['handler_us']:.0f}",
                    top,
                ]
            )
        )
    return [*lines, ""]


def tails(results: list[Result]) -> list[str]:
    """Every cell and peer where the p99 goal is missed, medians beside the p99s."""
    lines = [
        "## Where the p99 goal is missed: our tail, not our median",
        "",
        "Each cell and peer where our p99 is above a third of theirs, with both medians, and",
        "the spread (p99 ÷ p50) of our server and of the ceiling (the same HTTP stack answering",
        "a constant) in that cell.",
        "",
    ]
    header = ["model", "workers", "rows", "c", "peer", "p50 ours / peer ms", "p99 ours / peer ms"]
    header += ["p99 ÷ p50 ours", "p99 ÷ p50 ceiling"]
    rows = []
    for (model, workers, rows_, level), servers in sorted(_cells(results, "closed").items()):
        if problems(servers):
            continue
        ceiling = servers["ceiling"]
        for peer, protocol in PEERS:
            if peer not in servers:
                continue
            mine, theirs = servers[OURS[protocol]], servers[peer]
            if _ratio(theirs["p99_ms"], mine["p99_ms"]) >= THROUGHPUT_GOAL:
                continue
            rows.append(
                _row(
                    [
                        model,
                        workers,
                        rows_,
                        level,
                        peer,
                        f"{mine['p50_ms']:.2f} / {theirs['p50_ms']:.2f}",
                        f"{mine['p99_ms']:.2f} / {theirs['p99_ms']:.2f}",
                        f"{_ratio(mine['p99_ms'], mine['p50_ms']):.0f}",
                        f"{_ratio(ceiling['p99_ms'], ceiling['p50_ms']):.0f}",
                    ]
                )
            )
    if not rows:
        return []
    return [
        *lines,
        _row(header),
        _row("---" for _ in header),
        *rows,
        "",
        "Compare the medians with the tails: where ours is the lower median, what misses is",
        "our tail. Two sources of it were found and removed. Full garbage collections (50 to",
        "100 ms pauses, which filled the p99 of one client): the server freezes its start-up",
        "heap once the model is loaded (`runtime.freeze_startup_heap`). And new connections",
        "let in one per turn of the event loop, as uvloop's server does through libuv since",
        "1.45: under load a turn answers every ready request, so at c=64 with 64-row requests",
        "the connections wrk opens at the start of a run waited up to 1.4 s for their first",
        "answer while the first ones in were answered every 45 ms, and wrk's correction",
        "for coordinated omission counts each such wait as many late requests (the 2026-12-06",
        "run: p99 486 ms at a p50 of 44 ms, 50-feature HistGradientBoosting). The server now",
        "accepts every waiting connection at each turn (`serving/listener.py`). With two",
        "workers the load generator shares both cores with the servers (see Setup), and where",
        "the ceiling, our HTTP stack answering a constant, has a wide spread too, part of the",
        "tail is scheduling on two shared cores, not the model. Where our spread is well above",
        "the ceiling's, the cause is not established.",
        "",
    ]


def steadiness(document: dict[str, Any]) -> list[str]:
    """The spread fixed work shows on the servers' CPU with nothing served (machine.py)."""
    probes = document.get("machine") or []
    if not probes:
        return []
    windows = list(probes[0]["spread_by_window_ms"])
    header = ["measured", "unit µs", "slow units", "slow spells ms (median, max)"]
    header += [f"{window} ms" for window in windows]
    rows = [
        _row(
            [
                probe["when"],
                f"{probe['unit_us']:.1f}",
                f"{100 * probe['slow_share']:.0f} %",
                f"{probe['spell_ms_p50']:.2f}, {probe['spell_ms_max']:.0f}",
                *(f"{probe['spread_by_window_ms'][window]:.2f}" for window in windows),
            ]
        )
        for probe in probes
    ]
    return [
        "## The machine's own spread",
        "",
        "Fixed work with no server (`tests/bench/serving/machine.py`): a pure-Python unit timed",
        f"back to back for {probes[0]['seconds']:.0f} s on CPU {probes[0]['cpus']}, where "
        f"one-worker servers run. A slow unit took more than {machine.SLOW:g}",
        "times the median; a slow spell is a run of them. The last columns are the spread",
        "(p99 ÷ p50) of windows of the same work, by the window's length at the median speed:",
        "what the machine alone does to the p99 of requests that long, at one client.",
        "",
        _row(header),
        _row("---" for _ in header),
        *rows,
        "",
        "A request caught in a slow spell takes all of it when the spell outlasts it, and only",
        "the overlap when it does not: where the spread falls with the window's length, the",
        "shorter request shows the wider spread on the same machine, and a p99 ratio asks the",
        "faster server's median to beat the peer's by that much more. Where it does not fall,",
        "spells last longer than the longest window (the longest spell), and the unit's median",
        "moves from probe to probe: a cell's p99 then depends on whether a spell fell within",
        "its run, which each server meets at its own time.",
        "",
    ]


def layers(document: dict[str, Any]) -> list[str]:
    """Time per request of our App under each HTTP layer, and each layer's share of it."""
    handler = {
        (profile["model"], profile["rows"]): profile["handler_v1_us"]
        for profile in document.get("profiles", [])
        if "handler_v1_us" in profile
    }
    rows = []
    cells = _cells(document["results"], "closed")
    for (model, workers, rows_, level), servers in sorted(cells.items()):
        mine = _same_app(servers)
        wanted = [mine, *LAYERS, "FastAPI V1"]
        if workers != 1 or problems(servers) or any(label not in servers for label in wanted):
            continue
        us = {label: _ratio(1e6, servers[label]["throughput"]) for label in wanted}
        # The App's own time, measured in-process (best of 5 rounds, see profile.py): less
        # disturbed by a busy machine than a difference of two HTTP runs. Runs without it:
        # ours minus the ceiling (our HTTP server reading the request, answering a constant).
        app = handler.get((model, rows_))
        if app is None:
            if "ceiling" not in servers:
                continue
            app = us[mine] - _ratio(1e6, servers["ceiling"]["throughput"])
        http = {label: us[label] - app for label in (mine, *LAYERS)}
        rows.append(
            _row(
                [
                    *(model, rows_, level),
                    f"{app:.0f}",
                    *(_share(us[label], http[label]) for label in (mine, *LAYERS)),
                    f"{us['FastAPI V1']:.0f}",
                    f"{us['FastAPI V1'] - us[LAYERS[0]]:+.0f}",
                ]
            )
        )
    if not rows:
        return []
    header = [
        "model",
        "rows",
        "c",
        "App µs",
        "ours (hand-written HTTP) µs (HTTP µs, share)",
        "App on uvicorn µs (HTTP µs, share)",
        "App on granian µs (HTTP µs, share)",
        "FastAPI + plain predict µs",
        "FastAPI minus App on uvicorn µs",
    ]
    return [
        "## Layers: our App and model under three HTTP servers",
        "",
        "The same App (`App.handle`) and model (our loader, so the same compiled predictor) served",
        "by our HTTP server (batching off, as the App runs under the others), by uvicorn as a",
        "raw ASGI app and by granian (ASGI), all V1, beside",
        "the FastAPI floor (uvicorn, FastAPI, the pipeline's own `predict`). Time per request is",
        "1 / throughput with the server pinned to one CPU (one worker, valid cells only). The",
        "App's time is `App.handle` on the same V1 body timed in-process (the profile below);",
        "each server's HTTP time is its total minus that, and its share is of its own total.",
        "At c=1 the total includes the load generator's round trip, at c=64 it is the server's",
        "CPU time per request. The last column is what FastAPI and the plain predict cost",
        "beyond the App on the same uvicorn (negative: the floor is faster).",
        "",
        _row(header),
        _row("---" for _ in header),
        *rows,
        "",
    ]


def _share(total: float, http: float) -> str:
    return f"{total:.0f} ({http:.0f}, {100 * http / total:.0f} %)"


def write(document: dict[str, Any]) -> None:
    results: list[Result] = document["results"]
    matrix, command, started = document["matrix"], document["command"], document["started"]
    load = document["load"]
    OUT.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(document, indent=1))
    plot(results, OUT / "serving.png")
    table, tally = goals(results)
    summary = {
        "throughput": f"throughput ≥ {THROUGHPUT_GOAL:.0f}x MLServer's and KServe's",
        "p99": f"p99 ≤ 1/{THROUGHPUT_GOAL:.0f} of MLServer's and KServe's",
        "ceiling": f"≥ {100 * CEILING_GOAL:.0f} % of the constant endpoint's throughput "
        f"(1-row {CEILING_MODEL}, one worker, c ≥ {CEILING_MIN_CONCURRENCY})",
        "http": f"our hand-written HTTP server beats the best well-kept server (uvicorn, granian) "
        f"running the same App and model by ≥ {100 * HTTP_GOAL:.0f} % (V1 throughput)",
    }
    lines = [
        "# Model serving: our server against MLServer, KServe and FastAPI",
        "",
        f"Run {started} with `{command}` (`make bench` / `make bench-quick`).",
        f"Matrix: {json.dumps(matrix)}. Raw figures: `serving.json`.",
        f"Machine load average (1 min) during the run: {load}.",
        "",
        "Setup: every server loads the same joblib file (a training pipeline: median imputer,",
        "standard scaler, estimator) and gets the same request bodies; the predictions of all of",
        "them are checked equal on 64 test-split rows before anything is measured. Peers run",
        "from their own virtual environments (pinned in `tests/bench/venvs.py`), started",
        "as their documentation says: `mlserver start` with `parallel_workers` = workers,",
        "KServe's `ModelServer` with a small `Model` subclass and `--workers`, FastAPI under",
        "`uvicorn --workers`; ours is `modelyard-worker serve --workers` as deployed (adaptive",
        "batching on, its default) and again with `--batch-rows 1` (`modelyard unbatched`:",
        "batching off, the App as the other HTTP servers below run it). Logging per request",
        "is off where a flag turns it off (KServe latency logging, uvicorn access log). One",
        "worker: servers pinned to CPU 0 and the load generator to CPU 1 (`taskset`); two",
        "workers: nothing pinned, the load generator shares both cores. Every server process",
        "gets `OMP_NUM_THREADS` = its CPUs ÷ workers (scikit-learn's HistGradientBoosting",
        "predicts on OpenMP threads: two workers of two threads each on two shared cores",
        "starved the peers). Cells run interleaved (every server, then the next cell). The",
        "ceiling is our HTTP stack answering a constant. `App on uvicorn` and `App on granian`",
        "are our request handler and model (compiled predictor) as a raw ASGI app under those",
        "servers (`tests/bench/serving/apps/asgi_app.py`), to tell our HTTP server's share.",
        "",
        "## Goals",
        "",
        "| goal | cells met (of valid) | invalid cells | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for name, text in summary.items():
        met, valid, invalid = tally[name]
        verdict = "no valid cell" if not valid else "met" if met == valid else "**missed**"
        lines.append(_row([text, f"{met} / {valid}", invalid, verdict]))
    lines += [
        "",
        "A cell is invalid, and counts for no goal, when any server in it answered an error",
        f"(socket error, time-out or non-2xx) or fewer than max({MIN_REQUESTS}, "
        f"{MIN_PER_CONNECTION} per connection) requests",
        f"in the run (closed loop; open loop: {MIN_REQUESTS}). Each invalid cell names its",
        "servers' counts in the last column of the table below. wrk's time-out (10 s) is longer",
        "than a run: a server that stalls shows as too few answers, not as time-outs.",
        "wrk corrects its latencies for coordinated omission (the requests a stalled",
        "connection did not send count as late): one 50 ms pause in a 3 s run at c=1 fills",
        "the p99.",
    ]
    lines += [
        "",
        "## Closed loop (wrk, one connection per client, next request on the last answer)",
        "",
        "Ratios: ours ÷ peer for throughput, peer ÷ ours for p99 (both: higher is better for us).",
        "",
        *table,
        "",
        "![throughput and p99 per server](serving.png)",
        "",
        *layers(document),
        *limits(document),
        *tails(results),
        *steadiness(document),
        "## Open loop (vegeta, fixed rate, one worker, one-row payloads)",
        "",
        *absolute(results, "open"),
        "",
        "## Every closed-loop figure",
        "",
        *absolute(results, "closed"),
        "",
    ]
    (OUT / "serving.md").write_text("\n".join(lines))
