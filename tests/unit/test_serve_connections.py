"""Connections do not live forever (idle keep-alive ones, stalled requests and clients that do
not read are closed), and what clients can make a process hold is capped."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from modelyard.workloads.serving.app import App
from modelyard.workloads.serving.config import DEFAULT_REQUEST_SECONDS as REQUEST_SECONDS
from modelyard.workloads.serving.config import DEFAULT_WRITE_SECONDS as WRITE_SECONDS
from modelyard.workloads.serving.http import (
    KEEPALIVE_SECONDS,
    LINGER_IDLE_SECONDS,
    LINGER_SECONDS,
    Server,
)
from modelyard.workloads.serving.metrics import Metrics

LIVE = b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n"


class Transport:
    """The part of asyncio.Transport a connection uses, recording what happened."""

    def __init__(self) -> None:
        self.written = b""
        self.state = "open"
        self.reading = True
        self.eof_written = False
        self.buffered = 0  # what get_write_buffer_size answers

    def write(self, data: bytes) -> None:
        assert not self.eof_written
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.state = "closed"

    def abort(self) -> None:
        self.state = "aborted"

    def is_closing(self) -> bool:
        return self.state != "open"

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def answers(self) -> list[bytes]:
        """Status lines written so far."""
        return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", self.written)


def connect(server: Server | None = None) -> tuple[Any, Transport]:
    server = server or Server(App(None, Metrics(), 10), max_body_bytes=1024)
    connection = server.connection()
    transport = Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def test_an_idle_keep_alive_connection_is_closed() -> None:
    connection, transport = connect()
    connection.data_received(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 200 OK")
    connection.expire(time.monotonic() + KEEPALIVE_SECONDS / 2)
    assert transport.state == "open"
    connection.expire(time.monotonic() + KEEPALIVE_SECONDS + 1)
    assert transport.state == "closed"


def test_a_request_that_never_completes_is_cut_off() -> None:
    connection, transport = connect()
    connection.data_received(b"POST /v1/models/m:predict HTTP/1.1\r\ncontent-length: 10\r\n\r\n")
    connection.expire(time.monotonic() + REQUEST_SECONDS / 2)
    assert transport.state == "open"
    connection.expire(time.monotonic() + REQUEST_SECONDS + 1)
    assert transport.state == "aborted"


def test_a_connection_that_never_starts_a_request_is_cut_off() -> None:
    connection, transport = connect()
    connection.expire(time.monotonic() + REQUEST_SECONDS / 2)
    assert transport.state == "open"
    connection.expire(time.monotonic() + REQUEST_SECONDS + 1)
    assert transport.state == "aborted"


def limited(**limits: Any) -> Server:
    return Server(App(None, Metrics(), 10), max_body_bytes=1024, **limits)


def error(transport: Transport) -> str:
    message: str = json.loads(transport.written.rpartition(b"\r\n\r\n")[2])["error"]
    return message


def test_a_refused_connection_lingers_dropping_input_then_closes() -> None:
    connection, transport = connect()
    connection.data_received(b"POST /v1/models/m:predict HTTP/1.1\r\ncontent-length: 5000\r\n\r\n")
    assert transport.answers() == [b"HTTP/1.1 413 Content Too Large"]
    assert b"connection: close" in transport.written
    # Half-closed, still reading: a client sending its body before reading gets the answer.
    assert transport.eof_written and transport.state == "open" and transport.reading
    written = transport.written
    connection.data_received(b"x" * 4000)
    assert transport.written == written
    connection.expire(time.monotonic() + LINGER_IDLE_SECONDS / 2)
    assert transport.state == "open"
    connection.expire(time.monotonic() + LINGER_IDLE_SECONDS + 1)
    assert transport.state == "aborted"


def test_lingering_ends_after_a_while_even_if_the_client_keeps_sending() -> None:
    connection, transport = connect()
    connection.data_received(b"GET /\x00 HTTP/1.1\r\n\r\n")
    assert transport.answers() == [b"HTTP/1.1 400 Bad Request"]
    connection.data_received(b"x")  # active now
    connection.expire(time.monotonic() + LINGER_SECONDS + 1)
    assert transport.state == "aborted"


def test_connections_over_the_cap_are_answered_503_and_closed() -> None:
    server = limited(max_connections=2)
    (first, _), (_, second) = connect(server), connect(server)
    _, transport = connect(server)
    assert transport.answers() == [b"HTTP/1.1 503 Service Unavailable"]
    assert (
        b"connection: close\r\n" in transport.written and b"retry-after: 1\r\n" in transport.written
    )
    assert "--max-connections" in error(transport)
    assert transport.eof_written and transport.state == "open"  # lingering, as refusals do
    assert len(server.connections) == 2
    # As many lingering at most: past that, connections are dropped at once.
    connect(server)
    assert connect(server)[1].state == "aborted"
    # A freed place is taken by the next connection.
    first.connection_lost(None)
    _, fresh = connect(server)
    assert fresh.state == "open" and not fresh.written
    assert second.state == "open"


def test_a_client_that_does_not_read_is_not_answered_and_is_cut_off() -> None:
    server = limited(write_seconds=WRITE_SECONDS)
    connection, transport = connect(server)
    connection.data_received(LIVE)
    transport.buffered = 200_000
    connection.pause_writing()
    assert not transport.reading
    assert server.inflight == 200_000  # the unread answers count as held
    connection.data_received(LIVE * 3)  # read in the same chunk, before reading paused
    assert len(transport.answers()) == 1 and server.queued == 3
    connection.expire(time.monotonic() + WRITE_SECONDS / 2)
    assert transport.state == "open"
    connection.expire(time.monotonic() + WRITE_SECONDS + 1)
    assert transport.state == "aborted"
    connection.connection_lost(None)
    assert (server.inflight, server.queued) == (0, 0)


def test_queued_answers_go_out_once_the_client_reads_again() -> None:
    server = limited()
    connection, transport = connect(server)
    transport.buffered = 200_000
    connection.pause_writing()
    connection.data_received(LIVE * 3)
    assert transport.answers() == []
    transport.buffered = 0
    connection.resume_writing()
    assert len(transport.answers()) == 3 and transport.reading
    assert (server.inflight, server.queued) == (0, 0)
    connection.data_received(LIVE)  # answered inline again
    assert len(transport.answers()) == 4


def test_a_connection_queues_64_requests_and_refuses_more() -> None:
    server = limited()
    connection, transport = connect(server)
    connection.pause_writing()
    connection.data_received(LIVE * 100)
    assert server.queued == 65  # 64 and the refusal, answered in order once the client reads
    connection.resume_writing()
    answers = transport.answers()
    assert answers == [b"HTTP/1.1 200 OK"] * 64 + [b"HTTP/1.1 503 Service Unavailable"]
    assert "64 on a connection" in error(transport)
    assert transport.eof_written and server.queued == 0


def test_queued_requests_are_capped_over_all_connections() -> None:
    server = limited(max_queued_requests=5)
    (first, _), (second, transport) = connect(server), connect(server)
    first.pause_writing()
    first.data_received(LIVE * 3)
    second.pause_writing()
    second.data_received(LIVE * 3)
    assert server.queued == 6  # two of the second's and its refusal
    second.resume_writing()
    assert transport.answers()[-1] == b"HTTP/1.1 503 Service Unavailable"
    assert "5 in all (--max-queued-requests)" in error(transport)


def post(length: int) -> bytes:
    return b"POST /v1/models/m:predict HTTP/1.1\r\ncontent-length: %d\r\n\r\n" % length


def test_bytes_in_progress_are_capped_over_all_connections() -> None:
    server = limited(max_inflight_bytes=2048)
    (first, _), (second, _) = connect(server), connect(server)
    first.data_received(post(1000) + b"x" * 900)
    second.data_received(post(1000) + b"x" * 900)
    assert server.inflight == 1800
    # Refused before its body is read when its declared length does not fit...
    declared, transport = connect(server)
    declared.data_received(post(500))
    assert transport.answers() == [b"HTTP/1.1 503 Service Unavailable"]
    assert "--max-inflight-bytes" in error(transport)
    # ...and when the bytes that arrive push past the cap, chunked here.
    chunked, transport = connect(server)
    chunked.data_received(
        b"POST /v1/models/m:predict HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        b"1f4\r\n" + b"x" * 500 + b"\r\n"
    )
    assert transport.answers() == [b"HTTP/1.1 503 Service Unavailable"]
    assert server.inflight == 1800  # the refused body is dropped
    first.data_received(b"x" * 100)  # complete: answered and freed
    assert server.inflight == 900
    second.connection_lost(None)
    assert server.inflight == 0
