"""Process lifecycle: bind, serve at once, load the model in the background, drain on SIGTERM.

One worker: the server answers from the first moment (liveness 200, readiness 503) while the
model is fetched and verified; a model that fails to load ends the process with the reason in
the termination log.

`--workers N`: the parent fetches, verifies and loads the model first, then forks N workers
that share it (copy-on-write) and each bind the port with SO_REUSEPORT, so the kernel spreads
connections over them. Loading before forking means no worker is ever reachable before it
is ready: readiness is per process, and a probe answered by one worker must not route
traffic to another still loading. The parent then only supervises.

Each process also binds a monitoring port of its own (--monitor-port + worker index), on which
the operator collects its drift counts and feedback (monitor.py). A port that cannot be bound,
serving or monitoring, ends the process with BindFailed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import threading
from types import FrameType

import uvloop
from botocore.exceptions import BotoCoreError, ClientError

from modelyard.reasons import Reason
from modelyard.workloads.common import termination
from modelyard.workloads.common.termination import WorkloadError
from modelyard.workloads.common.timing import seconds_since_exec
from modelyard.workloads.serving import loader
from modelyard.workloads.serving.app import App
from modelyard.workloads.serving.config import ServeConfig
from modelyard.workloads.serving.http import Server
from modelyard.workloads.serving.listener import Listener
from modelyard.workloads.serving.metrics import Metrics
from modelyard.workloads.serving.monitor import MonitorApp

log = logging.getLogger("modelyard.serve")


def run(config: ServeConfig) -> int:
    if config.workers == 1:
        try:
            sockets = bind_worker(config, 0, reuse_port=False)
        except WorkloadError as error:
            return termination.fail(error)
        return serve_process(config, sockets)
    return supervise(config)


def bind_worker(
    config: ServeConfig, worker: int, reuse_port: bool
) -> tuple[socket.socket, socket.socket]:
    """The serving socket (shared through SO_REUSEPORT between workers) and the worker's own
    monitoring socket; WorkloadError(BindFailed) naming the port that could not be bound."""
    try:
        sock = bind(config, config.port, reuse_port)
    except OSError as error:
        raise _bind_error(config, config.port, "", error) from None
    monitor_port = config.monitor_port_of(worker)
    try:
        monitor = bind(config, monitor_port, reuse_port=False)
    except OSError as error:
        sock.close()
        what = f" (monitoring port of worker {worker})"
        raise _bind_error(config, monitor_port, what, error) from None
    return sock, monitor


def bind(config: ServeConfig, port: int, reuse_port: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        config.host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve_process(
    config: ServeConfig,
    sockets: tuple[socket.socket, socket.socket],
    preloaded: loader.Loaded | None = None,
) -> int:
    return uvloop.run(_serve(config, sockets, preloaded))


async def _serve(
    config: ServeConfig,
    sockets: tuple[socket.socket, socket.socket],
    preloaded: loader.Loaded | None,
) -> int:
    loop = asyncio.get_running_loop()
    metrics = Metrics()
    app = App(
        config.name,
        metrics,
        config.drift_window,
        remember_rows=config.remember_rows,
        feedback_window=config.feedback_window,
        batching=config.batch_rows > 1,
    )
    # The monitoring port has the serving port's limits: it reads bodies too.
    server, monitor = (
        Server(
            application,
            config.max_body_bytes,
            config.request_seconds,
            max_connections=config.max_connections,
            max_inflight_bytes=config.max_inflight_bytes,
            max_queued_requests=config.max_queued_requests,
            write_seconds=config.write_seconds,
            batch_rows=config.batch_rows,
            batch_wait_seconds=config.batch_wait_seconds,
        )
        for application in (app, MonitorApp(app, config.monitor_token))
    )
    sock, monitor_sock = sockets
    listener = Listener(loop, sock, server.connection)
    monitor_listener = Listener(loop, monitor_sock, monitor.connection)
    sweepers = [loop.create_task(server.sweep()), loop.create_task(monitor.sweep())]
    host, port = sock.getsockname()[:2]
    log.info(
        "listening on %s:%d, monitoring port %d%s (pid %d)",
        host,
        port,
        monitor_sock.getsockname()[1],
        " (token required)" if config.monitor_token is not None else " (open: no token set)",
        os.getpid(),
    )

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loaded: asyncio.Future[loader.Loaded] = loop.create_future()

    def load() -> None:
        try:
            result = loader.load(config)
        except BaseException as error:  # handed to the loop, which reports it
            loop.call_soon_threadsafe(_settle_error, loaded, error)
        else:
            loop.call_soon_threadsafe(_settle, loaded, result)

    if preloaded is not None:
        loaded.set_result(preloaded)
    else:
        # A daemon thread, not the default executor: a SIGTERM during a slow download must
        # not wait for it to finish before the process can exit.
        threading.Thread(target=load, name="load-model", daemon=True).start()
    stopping: asyncio.Future[bool] = loop.create_task(stop.wait())
    waiting: set[asyncio.Future[object]] = {loaded, stopping}  # type: ignore[arg-type]
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)

    if loaded.done():
        failure = loaded.exception()
        if failure is not None:
            listener.close()
            monitor_listener.close()
            stopping.cancel()
            for sweeper in sweepers:
                sweeper.cancel()
            return termination.fail(_load_error(failure))
        result = loaded.result()
        app.set_model(result.model, result.seconds)
        freeze_startup_heap()
        log.info(
            "model %s version %s ready in %.2fs, %.2fs after exec (engine: %s; accepts "
            "missing values: %s)",
            result.model.name,
            result.model.version,
            result.seconds,
            seconds_since_exec() or 0.0,
            result.model.engine,
            result.model.accepts_missing,
        )
        await stopping

    log.info("SIGTERM: draining %d connection(s)", len(server.connections))
    app.draining = True
    listener.close()
    monitor_listener.close()
    await asyncio.gather(server.drain(config.drain_seconds), monitor.drain(config.drain_seconds))
    for sweeper in sweepers:
        sweeper.cancel()
    return 0


def freeze_startup_heap() -> None:
    """Collect once, then put every object alive now (the interpreter's, the libraries', the
    model's: some 200,000) out of the cyclic collector's reach. Otherwise each full collection
    scans them all: a 50 to 100 ms pause on whichever request triggers it, which was the p99 of
    a single client (docs/benchmarks/serving.md). Requests' own objects are collected as
    before."""
    gc.collect()
    gc.freeze()


def _settle(future: asyncio.Future[loader.Loaded], result: loader.Loaded) -> None:
    if not future.done():
        future.set_result(result)


def _settle_error(future: asyncio.Future[loader.Loaded], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _load_error(failure: BaseException) -> WorkloadError:
    if isinstance(failure, WorkloadError):
        return failure
    if isinstance(failure, BotoCoreError | ClientError):
        # S3 down, unreachable or refusing us after the client's retries: the reason every
        # workload gives (termination.run), so the operator can tell it from a bad model.
        return WorkloadError(Reason.StorageUnavailable, f"S3 storage: {failure}")
    return WorkloadError(Reason.ModelLoadFailed, f"{type(failure).__name__}: {failure}")


def _bind_error(config: ServeConfig, port: int, what: str, error: OSError) -> WorkloadError:
    return WorkloadError(Reason.BindFailed, f"cannot listen on {config.host}:{port}{what}: {error}")


def supervise(config: ServeConfig) -> int:
    """Load, fork the workers, pass SIGTERM/SIGINT on, exit with the first failure (or 0)."""
    log.info("loading %s before starting %d workers", config.model_uri, config.workers)
    try:
        preloaded = loader.load(config)
    except Exception as error:
        return termination.fail(_load_error(error))
    # Before forking: a collection in each worker would write to every inherited object's
    # header and so copy the pages they share (about 56 MiB more private memory per process,
    # the parent's included, with an iris model). Frozen here, a worker's own
    # freeze_startup_heap() scans only what came after the fork.
    freeze_startup_heap()
    children: set[int] = set()

    def forward(signum: int, frame: FrameType | None) -> None:
        for pid in children:
            os.kill(pid, signum)

    # Installed before forking so no signal slips between fork and bookkeeping; each child
    # puts the default back before it sets up its own handlers.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in range(config.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                try:
                    sockets = bind_worker(config, worker, reuse_port=True)
                except WorkloadError as error:
                    code = termination.fail(error)
                else:
                    code = serve_process(config, sockets, preloaded)
            finally:
                os._exit(code)  # never return into the parent's code path
        children.add(pid)

    code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code != 0 and code == 0:
            code = exit_code if exit_code > 0 else 1
            for other in children:
                os.kill(other, signal.SIGTERM)
    return code
