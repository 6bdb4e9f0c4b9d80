"""A small HTTP/1.1 server on asyncio (uvloop) and httptools, made for many tiny requests.

Keep-alive by default, pipelining-safe (responses leave in request order, even when one of
them waits on a worker thread), bodies capped at a configured size (413, then the connection
closes, as the rest of the body cannot be skipped reliably), and a drain on shutdown:
stop accepting, let in-flight requests finish, close each connection after its last response.

What abusive clients can make one process hold is bounded: open connections, bytes of requests
in progress (bodies being read, queued pipelined requests, answers a slow reader has not taken
yet) and queued requests have global caps past which the server answers 503; a client that
stops reading is not answered further and is cut off after `write_seconds`. A refused request's
connection closes the way nginx's lingering close does, so that clients still sending their
body read the refusal instead of a reset.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import NamedTuple, Protocol, cast

import httptools
import orjson

from modelyard.workloads.serving.app import JSON, OTHER, Batchable, Offload, Outcome, Response
from modelyard.workloads.serving.batching import Batcher
from modelyard.workloads.serving.config import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_BATCH_WAIT_SECONDS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_QUEUED_REQUESTS,
    DEFAULT_REQUEST_SECONDS,
    DEFAULT_WRITE_SECONDS,
)
from modelyard.workloads.serving.metrics import Metrics

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
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
# Pipelined requests queued behind a slow one (or a client not reading): the connection stops
# reading at this many, and answers 503 to more that were already read, then closes.
_MAX_QUEUED = 64
# Bounds on what a client can make the server hold; model inputs travel in bodies, not here.
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
# Idle keep-alive connections close after this; above the 60 s idle timeout of common load
# balancers, so that they, not we, close first and never reuse a connection we just closed.
KEEPALIVE_SECONDS = 75.0
# While draining, an idle keep-alive connection stays open until it has been idle this long: a
# request a client sends on it meanwhile is answered (with `connection: close`) instead of meeting
# a connection closed under it, which a proxy cannot retry for a POST whose body it has begun to
# send (nginx answers 502). The canary router's nginx drops its idle connections sooner
# (resources/router.py UPSTREAM_IDLE_SECONDS), so it never writes on one the server is closing.
DRAIN_IDLE_SECONDS = 5.0
SWEEP_SECONDS = 5.0
# After a refusal, what the client still sends is read and dropped until it has been silent for
# LINGER_IDLE_SECONDS, LINGER_SECONDS at most (nginx's lingering_timeout and lingering_time).
LINGER_IDLE_SECONDS = 5.0
LINGER_SECONDS = 30.0
_RETRY_LATER = b"retry-after: 1\r\n"


class Application(Protocol):
    """What a server answers with: the model's App on the serving port, the monitoring port's
    MonitorApp on the other."""

    metrics: Metrics

    def handle(
        self,
        method: bytes,
        path: bytes,
        body: bytes,
        request_id: bytes | None = None,
        authorization: bytes | None = None,
    ) -> Response | Offload | Batchable: ...

    def finish(
        self, offload: Offload | Batchable, outcome: Outcome | BaseException
    ) -> Response: ...


class Request(NamedTuple):
    method: bytes
    path: bytes
    body: bytes
    keep_alive: bool
    started: float
    # Set when the request was refused while parsing (413, 400): send it, then close.
    refusal: Response | None = None
    request_id: bytes | None = None  # the X-Request-Id header
    authorization: bytes | None = None  # the Authorization header


class Server:
    """State shared by every connection of one process, and its limits."""

    def __init__(
        self,
        app: Application,
        max_body_bytes: int,
        request_seconds: float = DEFAULT_REQUEST_SECONDS,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
        max_queued_requests: int = DEFAULT_MAX_QUEUED_REQUESTS,
        write_seconds: float = DEFAULT_WRITE_SECONDS,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        batch_wait_seconds: float = DEFAULT_BATCH_WAIT_SECONDS,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.request_seconds = request_seconds
        self.max_connections = max_connections
        self.max_inflight_bytes = max_inflight_bytes
        self.max_queued_requests = max_queued_requests
        self.write_seconds = write_seconds
        self.connections: set[Connection] = set()
        # Connections over max_connections, answered 503 and lingering; as many at most.
        self.turned_away: set[Connection] = set()
        # Bytes held for requests in progress: bodies (being read, queued or being predicted
        # on) and answers waiting in the write buffer of a client that does not read them.
        self.inflight = 0
        self.queued = 0  # pipelined requests waiting, over all connections
        self.draining = False
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="predict")
        self.batcher = Batcher(app.finish, app.metrics.batch, batch_rows, batch_wait_seconds)
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
        """Close connections idle, stalled or lingering past their time; runs forever."""
        period = min(SWEEP_SECONDS, self.request_seconds / 2, self.write_seconds / 2)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for connection in [*self.connections, *self.turned_away]:
                connection.expire(now)

    async def drain(self, seconds: float) -> None:
        """Close each connection after its next response, or once idle DRAIN_IDLE_SECONDS;
        wait for all, `seconds` at most."""
        self.draining = True
        deadline = time.monotonic() + seconds
        while self.connections and (now := time.monotonic()) < deadline:
            for connection in list(self.connections):
                connection.close_if_idle(now - DRAIN_IDLE_SECONDS)
            await asyncio.sleep(0.05)
        for connection in [*self.connections, *self.turned_away]:
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
        self._size = 0  # of the body being read, counted in server.inflight until answered
        self._expect_continue = False
        self._request_id: bytes | None = None
        self._authorization: bytes | None = None
        self._header_bytes = 0
        self._in_message = False
        self._last_active = time.monotonic()
        self._message_started = 0.0
        self._answered = False  # until the first response, idling counts as a stalled request
        self._closed = False  # no more input is read (refused, closing, or lost)
        # While one request waits on a worker thread or a batch, or the client does not read its
        # answers, later pipelined ones queue here so the responses go out in order. None:
        # nothing pending, requests are answered inline.
        self._queue: deque[Request] | None = None
        self._offloading = False
        self._reading_paused = False
        self._writing_paused = False
        self._write_paused_at = 0.0
        self._unsent = 0  # write buffer counted in server.inflight while writing is paused
        self._linger_started = 0.0  # set once the connection only drops what it reads

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        server = self._server
        if len(server.connections) < server.max_connections:
            server.connections.add(self)
        elif len(server.turned_away) < server.max_connections:
            # Accept, answer 503 and close rather than leave the connection in the backlog or
            # reset it: an HTTP client reads an answer it can act on (retry later, or elsewhere)
            # where a refused or reset connection reads as the server being down.
            server.turned_away.add(self)
            self._refuse(
                503,
                f"the server has {server.max_connections} connections open, its limit "
                "(--max-connections); retry later",
            )
        else:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        server = self._server
        server.connections.discard(self)
        server.turned_away.discard(self)
        # Free what this connection held; an answer being computed frees its own when done.
        if self._in_message:
            server.inflight -= self._size
            self._size = 0
        server.inflight -= self._unsent
        self._unsent = 0
        if self._queue:
            server.queued -= len(self._queue)
            server.inflight -= sum(len(request.body) for request in self._queue)
            self._queue.clear()

    def data_received(self, data: bytes) -> None:
        self._last_active = time.monotonic()
        if self._closed:
            return  # refused and lingering: dropped, never buffered
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as failure:
            if not self._closed:
                self._refuse(400, f"malformed HTTP request: {failure}")

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its requests, queue the ones
        # already read instead of answering them (an answer can be far larger than its
        # request), and count what waits in the write buffer.
        self._writing_paused = True
        self._write_paused_at = time.monotonic()
        if self._queue is None:
            self._queue = deque()
        self._pause_reading()
        self._count_unsent()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._server.inflight -= self._unsent
        self._unsent = 0
        if not self._offloading:
            self._answer_queued()

    # --- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._message_started = self._last_active
        self._url = b""
        self._body = []
        self._size = 0
        self._header_bytes = 0
        self._expect_continue = False
        self._request_id = None
        self._authorization = None

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
            if value.isdigit():
                length = int(value)
                if length > self._limit:
                    self._refuse_too_large()
                elif self._server.inflight + length > self._server.max_inflight_bytes:
                    self._refuse_busy()
        elif name == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True
        elif name == b"x-request-id":
            self._request_id = value
        elif name == b"authorization":
            self._authorization = value

    def on_headers_complete(self) -> None:
        if self._expect_continue and not self._closed and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._closed:
            return
        server = self._server
        self._size += len(body)
        server.inflight += len(body)
        if self._size > self._limit:
            self._refuse_too_large()
        elif server.inflight > server.max_inflight_bytes:
            self._refuse_busy()
        else:
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
            request_id=self._request_id,
            authorization=self._authorization,
        )
        if self._queue is not None:
            self._enqueue(request)
            return
        result = self._app.handle(
            request.method, request.path, request.body, request.request_id, request.authorization
        )
        if isinstance(result, Offload):
            self._queue = deque()
            self._offload(request, result)
        elif isinstance(result, Batchable):
            self._queue = deque()
            self._batch(request, result)
        else:
            self._server.inflight -= self._size
            self._send(request, result)

    # --- responses ---------------------------------------------------------------------------

    def _offload(self, request: Request, offload: Offload) -> None:
        self._offloading = True
        asyncio.get_running_loop().create_task(self._offloaded(request, offload))

    async def _offloaded(self, request: Request, offload: Offload) -> None:
        loop = asyncio.get_running_loop()
        outcome: Outcome | BaseException
        try:
            outcome = await loop.run_in_executor(self._server.pool, offload.compute)
        except Exception as failure:
            outcome = failure
        finally:
            self._server.inflight -= len(request.body)
            self._offloading = False
        self._send(request, self._app.finish(offload, outcome))
        self._answer_queued()

    def _batch(self, request: Request, item: Batchable) -> None:
        self._offloading = True
        self._server.batcher.add(item, lambda response: self._batched(request, response))

    def _batched(self, request: Request, response: Response) -> None:
        self._server.inflight -= len(request.body)
        self._offloading = False
        self._send(request, response)
        self._answer_queued()

    def _answer_queued(self) -> None:
        """Answer queued requests in order while the client reads, up to one to offload or
        batch."""
        queue = self._queue
        server = self._server
        while queue and not self._writing_paused:
            request = queue.popleft()
            server.queued -= 1
            if request.refusal is not None:
                self._send(request, request.refusal)
                continue
            result = self._app.handle(
                request.method,
                request.path,
                request.body,
                request.request_id,
                request.authorization,
            )
            if isinstance(result, Offload):
                self._offload(request, result)
                return
            if isinstance(result, Batchable):
                self._batch(request, result)
                return
            server.inflight -= len(request.body)
            self._send(request, result)
        if not queue and not self._writing_paused:
            self._queue = None
            self._resume_reading()

    def _enqueue(self, request: Request) -> None:
        assert self._queue is not None
        server = self._server
        if len(self._queue) >= _MAX_QUEUED or server.queued >= server.max_queued_requests:
            # Reading stops at _MAX_QUEUED, but httptools cannot stop mid-chunk: what was read
            # past a cap is refused rather than held.
            server.inflight -= len(request.body)
            self._refuse(
                503,
                f"too many pipelined requests waiting: {_MAX_QUEUED} on a connection, "
                f"{server.max_queued_requests} in all (--max-queued-requests); retry later",
            )
            return
        self._queue.append(request)
        server.queued += 1
        if len(self._queue) >= _MAX_QUEUED:
            self._pause_reading()

    def _send(self, request: Request, response: Response) -> None:
        self._app.metrics.request(
            response.endpoint, response.status, time.perf_counter() - request.started
        )
        self._answered = True
        # Idle time counts from the answer, as the client's own keep-alive timer does.
        self._last_active = time.monotonic()
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
        if self._writing_paused:
            self._count_unsent()
        if request.refusal is not None:
            self._linger(transport)
        elif not keep_alive:
            self._closed = True
            transport.close()

    def _refuse_too_large(self) -> None:
        self._refuse(
            413,
            f"request body exceeds {self._limit} bytes (the server's --max-body-bytes)",
        )

    def _refuse_busy(self) -> None:
        self._refuse(
            503,
            f"the server holds {self._server.max_inflight_bytes} bytes of requests in "
            "progress, its limit (--max-inflight-bytes); retry later",
        )

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request that cannot be parsed or read on, then close the connection."""
        if self._closed:
            return
        refusal = Response(
            status,
            orjson.dumps({"error": message}),
            OTHER,
            JSON,
            _RETRY_LATER if status == 503 else b"",
        )
        request = Request(b"", b"", b"", False, time.perf_counter(), refusal)
        self._closed = True  # read nothing more; the rest of the stream is unusable
        if self._in_message:  # the body read so far is dropped
            self._server.inflight -= self._size
            self._size = 0
            self._body = []
        if self._queue is not None:
            self._queue.append(request)  # after the responses it must not overtake
            self._server.queued += 1
        else:
            self._send(request, refusal)

    def _linger(self, transport: asyncio.Transport) -> None:
        """Half-close after a refusal, and drop what the client still sends for a while.

        Closing at once, with the client's body still arriving, makes the kernel reset the
        connection, and a client that sends its whole body before reading (urllib, requests)
        then gets a broken pipe instead of the answer. expire() closes it in the end.
        """
        self._linger_started = time.monotonic()
        if transport.can_write_eof():
            transport.write_eof()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    # --- flow control and shutdown -----------------------------------------------------------

    def _count_unsent(self) -> None:
        assert self._transport is not None
        unsent = self._transport.get_write_buffer_size()
        self._server.inflight += unsent - self._unsent
        self._unsent = unsent

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None and not self._closed:
            self._reading_paused = False
            self._transport.resume_reading()

    def expire(self, now: float) -> None:
        transport = self._transport
        if transport is None:
            return
        if self._linger_started:
            if (
                now - self._last_active > LINGER_IDLE_SECONDS
                or now - self._linger_started > LINGER_SECONDS
            ):
                transport.abort()
        elif self._writing_paused:
            # The client stopped reading its answers: free them with the connection.
            if now - self._write_paused_at > self._server.write_seconds:
                transport.abort()
        elif self._queue is not None:
            return  # a response is being computed: the connection is not idle
        elif self._in_message or not self._answered:
            started = self._message_started if self._in_message else self._last_active
            if now - started > self._server.request_seconds:
                transport.abort()
        elif now - self._last_active > KEEPALIVE_SECONDS:
            self._closed = True
            transport.close()

    def close_if_idle(self, idle_since: float) -> None:
        """Close the connection if no request is in progress on it since `idle_since`."""
        if (
            not self._in_message
            and self._queue is None
            and self._last_active <= idle_since
            and self._transport is not None
        ):
            self._closed = True
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
