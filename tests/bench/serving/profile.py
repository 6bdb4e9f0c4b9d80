"""Where our server's time goes per request, below HTTP: cProfile of the request handler.

The ceiling endpoint measures the HTTP stack alone; this measures everything our server adds
on top (decode, predict, encode, metrics, drift), in-process, so the report can say what
limits the distance to the ceiling.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from typing import Any

from modelyard.workloads.serving.app import App
from modelyard.workloads.serving.metrics import Metrics
from tests.bench.serving.models import BenchModel
from tests.bench.serving.servers import v1_body, v2_body

CALLS = 5000


def handler_profile(model: BenchModel, rows: int) -> dict[str, Any]:
    """Microseconds per V2 request in App.handle, and the functions that take most of it."""
    app = App(None, Metrics(), 1000)
    app.set_model(model.trained.model(), 0.0)
    path = f"/v2/models/{model.name}/infer".encode()
    body = v2_body(model.rows(rows))
    best = _best(app, path, body)
    # V1 too: the layer table subtracts it from each server's V1 time per request.
    v1 = _best(app, f"/v1/models/{model.name}:predict".encode(), v1_body(model.rows(rows)))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(CALLS):
        app.handle(b"POST", path, body)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    top = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:8]  # type: ignore[attr-defined]
    return {
        "model": model.label,
        "rows": rows,
        "engine": app.model.engine if app.model else "",
        "handler_us": best * 1e6,
        "handler_v1_us": v1 * 1e6,
        "top": [
            {"function": f"{file.rsplit('/', 1)[-1]}:{line} {name}", "share": entry[2] / total}
            for (file, line, name), entry in top
        ],
    }


def _best(app: App, path: bytes, body: bytes) -> float:
    """Seconds per call, the best of 5 rounds: the least disturbed by whatever else runs."""
    for _ in range(CALLS // 5):
        app.handle(b"POST", path, body)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(CALLS):
            app.handle(b"POST", path, body)
        best = min(best, (time.perf_counter() - started) / CALLS)
    return best
