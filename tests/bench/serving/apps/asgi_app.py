"""Our request handler (`App.handle`) and loaded model under a well-kept ASGI server, no framework.

The same App, the same model (loaded from S3 by our loader, so the compiled predictor too)
and the same per-request metrics as our server; only the HTTP layer differs. Runs in the
`asgi` bench virtual environment with the operator directory on PYTHONPATH, each worker
process loading the model at import:

    MODELYARD_MODEL_URI=s3://…/model.joblib uvicorn asgi_app:app --workers N
    MODELYARD_MODEL_URI=s3://…/model.joblib granian --interface asgi asgi_app:app --workers N
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelyard.workloads.serving import loader
from modelyard.workloads.serving.app import App, Offload, Outcome, Response
from modelyard.workloads.serving.config import parse
from modelyard.workloads.serving.metrics import Metrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Read from the environment, as our server's flags would be.
CONFIG = parse([])
APP = App(
    CONFIG.name,
    Metrics(),
    CONFIG.drift_window,
    remember_rows=CONFIG.remember_rows,
    feedback_window=CONFIG.feedback_window,
)
_loaded = loader.load(CONFIG)
APP.set_model(_loaded.model, _loaded.seconds)
# As our HTTP server does: large predictions run on two threads beside the event loop.
POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="predict")


def _headers(response: Response) -> list[tuple[bytes, bytes]]:
    # A length, as our server sends: without it uvicorn would answer chunked.
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", str(len(response.body)).encode()),
    ]
    for line in response.headers.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
    return headers


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    started = time.perf_counter()
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    request_id = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
    result = APP.handle(
        scope["method"].encode(), scope["path"].encode(), b"".join(chunks), request_id
    )
    if isinstance(result, Offload):
        outcome: Outcome | BaseException
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(POOL, result.compute)
        except Exception as failure:
            outcome = failure
        result = APP.finish(result, outcome)
    APP.metrics.request(result.endpoint, result.status, time.perf_counter() - started)
    await send(
        {"type": "http.response.start", "status": result.status, "headers": _headers(result)}
    )
    await send({"type": "http.response.body", "body": result.body})
