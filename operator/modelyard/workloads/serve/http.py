"""A small HTTP/1.1 server on asyncio (uvloop) and httptools, made for many tiny requests.

Keep-alive by default, pipelining-safe (responses leave in request order, even when one of
them waits on a worker thread), bodies capped at a configured size (413, then the connection
closes because the rest of the body cannot be skipped reliably), and a drain on shutdown:
stop accepting, let in-flight requests finish, close each connection after its last response.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import NamedTuple, cast

import httptools
import orjson

from modelyard.workloads.serve.app import JSON, OTHER, App, Offload, Outcome, Response
from modelyard.workloads.serve.config import DEFAULT_REQUEST_SECONDS

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    414: "URI Too Long",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_STATUS_LINES = {
    code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in _REASONS.items()
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Pipelined requests queued behind a slow one before the connection stops reading.
_MAX_QUEUED = 64
# Bounds on what a client can make the server hold; model inputs travel in bodies, not here.
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
# Idle keep-alive connections close after this; above the 60 s idle timeout of common load
# balancers, so that they, not we, close first and never reuse a connection we just closed.
KEEPALIVE_SECONDS = 75.0
SWEEP_SECONDS = 5.0


class Request(NamedTuple):
    method: bytes
    path: bytes
    body: bytes
    keep_alive: bool
    started: float
    # Set when the request was refused while parsing (413, 400): send it, then close.
    refusal: Response | None = None


class Server:
    """State shared by every connection of one process."""

    def __init__(
        self, app: App, max_body_bytes: int, request_seconds: float = DEFAULT_REQUEST_SECONDS
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.request_seconds = request_seconds
        self.connections: set[Connection] = set()
        self.draining = False
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="predict")
        self._date_second = 0
        self._date_header = b""

    def date_header(self) -> bytes:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_header = f"date: {formatdate(now, usegmt=True)}\r\n".encode()
        return self._date_header

    def connection(self) -> Connection:
        return Connection(self)

    async def sweep(self) -> None:
        """Close connections idle past KEEPALIVE_SECONDS or stuck mid-request; runs forever."""
        while True:
            await asyncio.sleep(min(SWEEP_SECONDS, self.request_seconds / 2))
            now = time.monotonic()
            for connection in list(self.connections):
                connection.expire(now)

    async def drain(self, seconds: float) -> None:
        """Close idle connections now and busy ones after their response; wait for all."""
        self.draining = True
        for connection in list(self.connections):
            connection.close_if_idle()
        deadline = time.monotonic() + seconds
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.abort()
        self.pool.shutdown(wait=False, cancel_futures=True)


class Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self._server = server
        self._app = server.app
        self._limit = server.max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._size = 0
        self._expect_continue = False
        self._header_bytes = 0
        self._in_message = False
        self._last_active = time.monotonic()
        self._message_started = 0.0
        self._answered = False  # until the first response, idling counts as a stalled request
        self._closed = False  # no more input is read (refused, closing, or lost)
        # While one request waits on a worker thread, later pipelined ones queue here so the
        # responses go out in order. None: nothing pending, requests are answered inline.
        self._queue: deque[Request] | None = None
        self._reading_paused = False

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._last_active = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as failure:
            if not self._closed:
                self._refuse(400, f"malformed HTTP request: {failure}")

    def pause_writing(self) -> None:
        # The client is not reading its responses: stop reading its requests too.
        self._pause_reading()

    def resume_writing(self) -> None:
        self._resume_reading()

    # --- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._message_started = self._last_active
        self._url = b""
        self._body = []
        self._size = 0
        self._header_bytes = 0
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL_BYTES:
            self._refuse(414, f"the URL exceeds {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(431, f"the headers exceed {MAX_HEADER_BYTES} bytes")
            return
        name = name.lower()
        if name == b"content-length":
            if value.isdigit() and int(value) > self._limit:
                self._refuse_too_large()
        elif name == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True

    def on_headers_complete(self) -> None:
        if self._expect_continue and not self._closed and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._closed:
            return
        self._size += len(body)
        if self._size > self._limit:
            self._refuse_too_large()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._closed:
            return
        url = self._url
        request = Request(
            self._parser.get_method(),
            url.partition(b"?")[0] if b"?" in url else url,
            self._body[0] if len(self._body) == 1 else b"".join(self._body),
            self._parser.should_keep_alive(),
            time.perf_counter(),
        )
        if self._queue is not None:
            self._enqueue(request)
            return
        result = self._app.handle(request.method, request.path, request.body)
        if isinstance(result, Offload):
            self._queue = deque()
            asyncio.get_running_loop().create_task(self._offloaded(request, result))
        else:
            self._send(request, result)

    # --- responses ---------------------------------------------------------------------------

    async def _offloaded(self, request: Request, offload: Offload) -> None:
        loop = asyncio.get_running_loop()
        pending: Offload | None = offload
        try:
            while pending is not None:
                outcome: Outcome | BaseException
                try:
                    outcome = await loop.run_in_executor(self._server.pool, pending.compute)
                except Exception as failure:
                    outcome = failure
                self._send(request, self._app.finish(pending, outcome))
                pending = None
                # Answer what queued up meanwhile, inline, until the next one to offload.
                while self._queue and pending is None:
                    request = self._queue.popleft()
                    if request.refusal is not None:
                        self._send(request, request.refusal)
                        continue
                    result = self._app.handle(request.method, request.path, request.body)
                    if isinstance(result, Offload):
                        pending = result
                    else:
                        self._send(request, result)
        finally:
            self._queue = None
            self._resume_reading()

    def _enqueue(self, request: Request) -> None:
        assert self._queue is not None
        self._queue.append(request)
        if len(self._queue) >= _MAX_QUEUED:
            self._pause_reading()

    def _send(self, request: Request, response: Response) -> None:
        self._app.metrics.request(
            response.endpoint, response.status, time.perf_counter() - request.started
        )
        self._answered = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        keep_alive = request.keep_alive and request.refusal is None and not self._server.draining
        transport.write(
            b"".join(
                (
                    _STATUS_LINES[response.status],
                    self._server.date_header(),
                    b"server: modelyard\r\ncontent-type: ",
                    response.content_type,
                    b"\r\ncontent-length: %d\r\n" % len(response.body),
                    response.headers,
                    b"" if keep_alive else b"connection: close\r\n",
                    b"\r\n",
                    response.body,
                )
            )
        )
        if not keep_alive:
            self._closed = True
            transport.close()

    def _refuse_too_large(self) -> None:
        self._refuse(
            413,
            f"request body exceeds {self._limit} bytes (the server's --max-body-bytes)",
        )

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request that cannot be parsed or read on, then close the connection."""
        if self._closed:
            return
        refusal = Response(status, orjson.dumps({"error": message}), OTHER, JSON)
        request = Request(b"", b"", b"", False, time.perf_counter(), refusal)
        self._closed = True  # read nothing more; the rest of the stream is unusable
        if self._queue is not None:
            self._queue.append(request)  # after the responses it must not overtake
        else:
            self._send(request, refusal)

    # --- flow control and shutdown -----------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None and not self._closed:
            self._reading_paused = False
            self._transport.resume_reading()

    def expire(self, now: float) -> None:
        if self._queue is not None or self._transport is None:
            return  # a response is being computed: the connection is not idle
        if self._in_message or not self._answered:
            started = self._message_started if self._in_message else self._last_active
            if now - started > self._server.request_seconds:
                self._transport.abort()
        elif now - self._last_active > KEEPALIVE_SECONDS:
            self._closed = True
            self._transport.close()

    def close_if_idle(self) -> None:
        if not self._in_message and self._queue is None and self._transport is not None:
            self._closed = True
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
