"""The ceiling: our HTTP stack (http.py) answering every request with a constant, no model.

Whatever our server does per request on top of reading it and writing an answer is the
distance between this and the model server; no Python server can beat it on this machine.

    python -m tests.bench.serving.apps.ceiling PORT WORKERS
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import uvloop

from modelyard.workloads.serving.app import App, Offload, Response
from modelyard.workloads.serving.http import Server
from modelyard.workloads.serving.listener import Listener
from modelyard.workloads.serving.metrics import Metrics

CONSTANT = Response(200, b'{"predictions":[0]}', "/ceiling")


class Constant(App):
    def handle(
        self,
        method: bytes,
        path: bytes,
        body: bytes,
        request_id: bytes | None = None,
        authorization: bytes | None = None,
    ) -> Response | Offload:
        return CONSTANT


async def serve(port: int) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.setblocking(False)
    server = Server(Constant(None, Metrics(), 1), 8 * 1024 * 1024)
    Listener(asyncio.get_running_loop(), sock, server.connection)
    await asyncio.Event().wait()  # serves until the process is stopped


def main() -> None:
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    for _ in range(workers - 1):
        if os.fork() == 0:
            break
    uvloop.run(serve(port))


if __name__ == "__main__":
    main()
