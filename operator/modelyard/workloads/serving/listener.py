"""Accepting connections: every one waiting, each time the listening socket is ready.

uvloop's `create_server` accepts through libuv, which since 1.45 takes one connection per turn
of the event loop (libuv pull request 3696). Under load a turn of our loop answers every
connection with a request ready, so a burst of new connections behind busy ones was let in one
per turn: 64 new wrk connections next to 64 busy ones (50-feature HistGradientBoosting, 64-row
requests, one worker) waited up to 1.4 s for their first answer, while the others were
answered in 45 ms (docs/benchmarks/serving.md, "Where the p99 goal is missed"). Here the
listening socket is watched by the loop and drained at each readiness, as asyncio's own
selector loop does; each accepted socket becomes a uvloop transport as before.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("modelyard.serve")

# Connections let in per readiness of the listening socket: enough for any burst a pod meets
# (the server answers at most --max-connections, 1024 by default, and turns the rest away),
# and a bound on how long one turn of the loop spends accepting under a connection flood.
ACCEPTS_PER_TURN = 256
# Out of file descriptors or memory: accepting stops this long, leaving what waits in the
# kernel's backlog, instead of spinning on an accept that keeps failing.
PAUSE_SECONDS = 1.0
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Listener:
    """Serves `sock` (bound, listening, non-blocking) with protocols from `factory`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._closed = False
        self._paused: asyncio.TimerHandle | None = None
        # Strong references to the transports being set up: the loop keeps only weak ones.
        self._starting: set[asyncio.Task[object]] = set()
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while waiting in the backlog
            except OSError as failure:
                if failure.errno not in _OUT_OF_RESOURCES:
                    raise
                log.warning("accepting connections paused for %.0f s: %s", PAUSE_SECONDS, failure)
                self._loop.remove_reader(self._sock.fileno())
                self._paused = self._loop.call_later(PAUSE_SECONDS, self._resume)
                return
            conn.setblocking(False)  # uvloop's transport sets TCP_NODELAY itself
            task: asyncio.Task[object] = self._loop.create_task(
                self._loop.connect_accepted_socket(self._factory, conn)
            )
            self._starting.add(task)
            task.add_done_callback(functools.partial(self._started, conn=conn))

    def _started(self, task: asyncio.Task[object], *, conn: socket.socket) -> None:
        self._starting.discard(task)
        failure = None if task.cancelled() else task.exception()
        if task.cancelled() or failure is not None:
            conn.close()  # never handed to a transport
            if failure is not None:
                log.warning("a connection could not be set up: %s", failure)

    def _resume(self) -> None:
        self._paused = None
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting and close the socket; connections already made carry on."""
        if self._closed:
            return
        self._closed = True
        if self._paused is not None:
            self._paused.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
