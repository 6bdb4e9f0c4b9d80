"""Memory of one model server process under abusive clients, as peak resident memory.

    .venv/bin/python -m tests.bench.serving.abuse [--source DIR] [options] [-- server flags]

For `--seconds`, at once: `--pipelined` clients pipeline `--depth` requests at a time
(predictions with probabilities and the OpenAPI description) and read every answer;
`--stalled` clients pipeline requests for the OpenAPI description (8 KiB answers to 31-byte
requests) until `--stalled-bytes` are sent and never read a byte; `--uploaders` clients
start a body of `--upload-bytes` (the server's limit by default; half declare its length,
half send it chunked), send all but its last byte and stall. A probe asks `/v2/health/live`
meanwhile. Printed as one JSON line: the server's resident memory (MiB, /proc/<pid>/status)
idle before, at its peak during the run (VmHWM, reset when the run starts) and 2 s after,
and what each kind of client got.

`--source DIR` runs another checkout's package (first on PYTHONPATH), for before/after:

    git archive <commit> operator | tar -x -C /tmp/before
    .venv/bin/python -m tests.bench.serving.abuse --source /tmp/before/operator
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import requests

from tests.plugins.s3 import running_s3_server
from tests.serving import Served, bucket_on, start
from tests.unit.test_serve_protocol import iris

ROW = [5.1, 3.5, 1.4, 0.2]
OPENAPI = b"GET /openapi.json HTTP/1.1\r\nhost: x\r\n\r\n"
_PROBA_BODY = json.dumps({"instances": [ROW] * 256}).encode()
PROBA = (
    b"POST /v1/models/iris:predict_proba HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_PROBA_BODY), _PROBA_BODY)
)


@dataclass(frozen=True)
class Abuse:
    """The clients of one run (see the module docstring); tests use smaller ones."""

    seconds: float = 15.0
    pipelined: int = 32
    depth: int = 16
    stalled: int = 16
    stalled_bytes: int = 512 * 1024
    uploaders: int = 16
    upload_bytes: int = 8 * 1024 * 1024  # the server's default --max-body-bytes


@dataclass(frozen=True)
class Figures:
    idle_mib: float  # resident memory before the run
    peak_mib: float
    growth_mib: float  # peak - idle
    settled_mib: float  # 2 s after the clients closed
    alive: bool
    answers: dict[str, dict[str, int]]  # per kind of client: status (or error) -> count


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.serving.abuse")
    parser.add_argument("--source", type=Path, help="import modelyard from this directory")
    for field in fields(Abuse):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default)
    parser.add_argument("server_flags", nargs="*", help="after --: passed to the server")
    args = parser.parse_args()
    abuse = Abuse(**{field.name: getattr(args, field.name) for field in fields(Abuse)})
    extra_env = {"PYTHONPATH": str(args.source.resolve())} if args.source else {}
    with (
        tempfile.TemporaryDirectory(prefix="modelyard-abuse-") as temporary,
        running_s3_server("127.0.0.1", Path(temporary) / "moto.log") as s3,
        bucket_on(s3) as bucket,
    ):
        served = start(
            bucket.env,
            bucket.publish(iris()),
            Path(temporary),
            *args.server_flags,
            extra_env=extra_env,
        )
        try:
            figures = asyncio.run(attack(served, abuse))
        finally:
            served.stop()
    command = "python -m tests.bench.serving.abuse " + " ".join(sys.argv[1:])
    print(json.dumps({"command": command, **asdict(figures)}))
    return 0


def rss(pid: int, field: str = "VmRSS") -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


async def attack(served: Served, abuse: Abuse) -> Figures:
    pid = served.process.pid
    for _ in range(200):  # warm: allocator arenas, caches, the first predictions
        requests.post(f"{served.url}/v1/models/iris:predict_proba", data=_PROBA_BODY, timeout=10)
    idle = rss(pid)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from here: the attack's peak
    deadline = time.monotonic() + abuse.seconds
    counts: dict[str, Counter[str]] = {
        kind: Counter() for kind in ("pipelined", "stalled", "uploaders", "probe")
    }
    held: list[socket.socket] = []
    tasks = [
        *(
            pipelined(served.port, abuse.depth, deadline, counts["pipelined"])
            for _ in range(abuse.pipelined)
        ),
        *(
            stalled(served.port, abuse.stalled_bytes, deadline, counts["stalled"], held)
            for _ in range(abuse.stalled)
        ),
        *(
            upload(served.port, abuse.upload_bytes, i % 2 == 1, deadline, counts["uploaders"], held)
            for i in range(abuse.uploaders)
        ),
        probe(served.url, deadline, counts["probe"]),
    ]
    await asyncio.gather(*tasks)
    peak = rss(pid, "VmHWM")
    for sock in held:
        sock.close()
    await asyncio.sleep(2)
    return Figures(
        idle_mib=round(idle / 2**20, 1),
        peak_mib=round(peak / 2**20, 1),
        growth_mib=round((peak - idle) / 2**20, 1),
        settled_mib=round(rss(pid) / 2**20, 1),
        alive=served.process.poll() is None,
        answers={kind: dict(counted) for kind, counted in counts.items()},
    )


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status and whether the server closes after it; the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    return int(head[9:12]), b"connection: close" in head


async def pipelined(port: int, depth: int, deadline: float, counts: Counter[str]) -> None:
    wire = b"".join(PROBA if i % 2 else OPENAPI for i in range(depth))
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["connect failed"] += 1
            await asyncio.sleep(0.1)
            continue
        try:
            closing = False
            while not closing and time.monotonic() < deadline:
                writer.write(wire)
                for _ in range(depth):
                    status, closing = await asyncio.wait_for(read_response(reader), 30)
                    counts[str(status)] += 1
                    if closing:
                        break
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
            counts[type(error).__name__] += 1
        finally:
            writer.close()


async def stalled(
    port: int, budget: int, deadline: float, counts: Counter[str], held: list[socket.socket]
) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    held.append(sock)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    wire = OPENAPI * 1024
    sent = 0
    while sent < budget and time.monotonic() < deadline:
        try:
            sent += sock.send(wire)
        except BlockingIOError:
            await asyncio.sleep(0.05)  # the server stopped reading: try again later
        except OSError as error:
            counts[type(error).__name__] += 1
            return
    counts["sent all" if sent >= budget else "blocked"] += 1


async def upload(
    port: int,
    size: int,
    chunked: bool,
    deadline: float,
    counts: Counter[str],
    held: list[socket.socket],
) -> None:
    """A body of `size` declared up front, or chunked (one chunk, never ended): stalls."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    held.append(sock)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    head = b"POST /v1/models/iris:predict HTTP/1.1\r\nhost: x\r\n" + (
        b"transfer-encoding: chunked\r\n\r\n%x\r\n" % (size - 1)
        if chunked
        else b"content-length: %d\r\n\r\n" % size
    )
    wire = memoryview(head + b" " * (size - 1))
    while wire and time.monotonic() < deadline:
        try:
            wire = wire[sock.send(wire) :]
        except BlockingIOError:
            await asyncio.sleep(0.05)
        except OSError as error:
            counts[type(error).__name__] += 1
            return
    counts["stalled at the last byte" if not wire else "blocked"] += 1


async def probe(url: str, deadline: float, counts: Counter[str]) -> None:
    while time.monotonic() < deadline:
        try:
            answer = await asyncio.to_thread(requests.get, f"{url}/v2/health/live", timeout=5)
            counts[str(answer.status_code)] += 1
        except requests.RequestException as error:
            counts[type(error).__name__] += 1
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
