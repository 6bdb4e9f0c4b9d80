"""The serving port lets in every connection waiting for it at each turn of the event loop, not
one per turn: under load a turn answers every ready request, so one-per-turn admitted a burst of
new clients over seconds (docs/benchmarks/serving.md, "Where the p99 goal is missed")."""

from __future__ import annotations

import asyncio
import socket

import uvloop

from modelyard.workloads.serving.listener import Listener

CLIENTS = 32


def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def turns_to_let_in(clients: int) -> list[int]:
    """The turn of the loop at which each of `clients` connections, all made while the loop was
    busy, reached its protocol."""
    loop = asyncio.get_running_loop()
    sock = listening()
    turn = 0
    made: list[int] = []

    class Recorder(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(turn)

    listener = Listener(loop, sock, Recorder)

    def tick() -> None:  # runs once per turn of the loop
        nonlocal turn
        turn += 1
        if turn < 10 * clients:
            loop.call_soon(tick)

    # The loop is busy (blocked in this coroutine) while every client connects: the kernel
    # completes their handshakes and keeps them in the listening socket's backlog.
    peers = [socket.create_connection(sock.getsockname()) for _ in range(clients)]
    loop.call_soon(tick)
    while len(made) < clients and turn < 10 * clients:
        await asyncio.sleep(0)
    listener.close()
    for peer in peers:
        peer.close()
    return made


def test_connections_waiting_behind_a_busy_loop_are_all_let_in_at_its_next_turns() -> None:
    made = uvloop.run(turns_to_let_in(CLIENTS))
    assert len(made) == CLIENTS
    # Accepted together at the first turn; their transports and protocols are set up within
    # the next few. One accept per turn would take CLIENTS turns.
    assert max(made) <= 3, made


def test_a_closed_listener_lets_nobody_in() -> None:
    async def scenario() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        sock = listening()
        address = sock.getsockname()
        made = 0

        class Counter(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                nonlocal made
                made += 1

        listener = Listener(loop, sock, Counter)
        listener.close()
        try:
            socket.create_connection(address, timeout=1).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        for _ in range(5):
            await asyncio.sleep(0)
        return made, refused

    made, refused = uvloop.run(scenario())
    assert (made, refused) == (0, True)


def test_connections_are_let_in_with_nagle_off() -> None:
    """Small answers go out at once, not held back waiting for the client's delayed ACK."""

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        sock = listening()
        nodelay: asyncio.Future[int] = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted = transport.get_extra_info("socket")
                nodelay.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        listener = Listener(loop, sock, Probe)
        peer = socket.create_connection(sock.getsockname())
        try:
            return await asyncio.wait_for(nodelay, 10)
        finally:
            peer.close()
            listener.close()

    assert uvloop.run(scenario()) != 0
