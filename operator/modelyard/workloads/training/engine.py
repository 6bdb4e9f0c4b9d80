"""The training pod's side of a run on workers: the Dask client of the run's own cluster.

The operator gives the pod the scheduler's address (SCHEDULER_ENV), how many workers to wait
for (WORKERS_ENV) and the Dask configuration for mutual TLS (engine.contract.tls_env), so
`distributed.Client(address)` needs no flags. The scheduler and workers start beside the
training pod, possibly after it: `connected` waits for them within a bounded time. When they
never come, or the scheduler goes away mid-run, the run fails with reason EngineLost and exit
code EXIT_ENGINE_LOST, naming what was missing.

While a search runs, `search_backend` counts the fits the workers finish and prints
`{"modelyard.progress": {"trialsDone": n, "trialsTotal": m}}` lines, at most about once a second;
the operator shows the latest in status.runs[].progress.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from contextlib import contextmanager
from typing import Any

from distributed import Client
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker, NoWorkerError, Scheduler
from joblib import register_parallel_backend

# joblib's own Dask backend (what parallel_config(backend="dask") makes), see _SearchBackend.
from joblib._dask import DaskDistributedBackend
from sklearn.model_selection import ParameterGrid

from modelyard.api.trainingjob import SearchSpec, SearchStrategy
from modelyard.engine.contract import PROGRESS_KEY, SCHEDULER_ENV, WORKERS_ENV
from modelyard.exitcodes import EXIT_ENGINE_LOST
from modelyard.reasons import Reason
from modelyard.workloads.common.termination import EXIT_USAGE, WorkloadError
from modelyard.workloads.training.selection import Plan

# How long the pod waits for the scheduler to answer, and then for its workers to join: the
# cluster's pods start beside the training pod and may pull the image first.
TIMEOUT_ENV = "MODELYARD_DASK_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 600.0
PROGRESS_INTERVAL_SECONDS = 1.0
BACKEND = "modelyard-dask"
# What the client raises when the engine fails under it: its futures cancelled when the
# scheduler connection is lost, a task that took down `allowed-failures` workers, a dropped comm,
# a task, or joblib's wait for a worker, that found none for the time-out.
ENGINE_FAILURES = (CancelledError, KilledWorker, CommClosedError, NoWorkerError, TimeoutError)


def lost(message: str) -> WorkloadError:
    return WorkloadError(Reason.EngineLost, message, EXIT_ENGINE_LOST)


def timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_SECONDS)
    except ValueError:
        return DEFAULT_TIMEOUT_SECONDS


def worker_addresses(client: Client) -> set[str]:
    """The addresses of the workers the scheduler has now (a restarted worker gets a new one)."""
    return set(client.scheduler_info(n_workers=-1)["workers"])


def workers_wanted(replicas: int) -> int:
    """The operator's count (WORKERS_ENV), else the spec's."""
    value = os.environ.get(WORKERS_ENV)
    return int(value) if value and value.isdigit() else replicas


@contextmanager
def connected(replicas: int) -> Iterator[Client]:
    """A client of the run's scheduler once `replicas` workers have joined; EngineLost when
    the scheduler does not answer, the workers do not come, or the engine fails mid-run."""
    address = os.environ.get(SCHEDULER_ENV)
    if not address:
        raise WorkloadError(
            Reason.InvalidArguments,
            f"spec.workers is set, but ${SCHEDULER_ENV} (the Dask scheduler's address) is not",
            EXIT_USAGE,
        )
    wanted, limit = workers_wanted(replicas), timeout()
    try:
        # Client retries the connection until `timeout`: the scheduler may start after us. It
        # is the process's default client, which lightgbm.dask's internals look up.
        client = Client(address, timeout=limit)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as error:
        raise lost(
            f"the Dask scheduler at {address} did not answer within {limit:g} s: {error}"
        ) from None
    try:
        try:
            client.wait_for_workers(wanted, timeout=limit)
        except TimeoutError:
            ready = len(worker_addresses(client))
            raise lost(
                f"{ready} of {wanted} Dask workers joined the scheduler at {address} "
                f"within {limit:g} s"
            ) from None
        print(f"train: {wanted} Dask workers ready at {address}", flush=True)
        try:
            yield client
        except ENGINE_FAILURES as error:
            raise lost(
                f"the run's Dask cluster ({address}) failed mid-run: {_describe(error)}"
            ) from None
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _describe(error: BaseException) -> str:
    if isinstance(error, KilledWorker):
        return f"a task kept losing its workers: {error}"
    if isinstance(error, (NoWorkerError, TimeoutError)):
        return f"no worker was left to run the run's tasks for {timeout():g} s"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class Progress:
    """Fits done of those planned, printed for the operator as they finish."""

    def __init__(self, total: int, interval: float = PROGRESS_INTERVAL_SECONDS) -> None:
        self.total = total
        self.done = 0
        self.interval = interval
        self.printed_at = -interval
        self.lock = threading.Lock()

    def add(self, fits: int) -> None:
        with self.lock:
            # Never past the total: a refit or a search re-run after a failure fits again.
            self.done = min(self.total, self.done + fits)
            now = time.monotonic()
            if self.done < self.total and now - self.printed_at < self.interval:
                return
            self.printed_at = now
            line = {PROGRESS_KEY: {"trialsDone": self.done, "trialsTotal": self.total}}
        print(json.dumps(line), flush=True)


def planned_fits(chosen: Plan) -> int:
    """Fits the selection's searches make on the workers: trials times folds per candidate
    (the winner's refit runs in the training pod and is not counted)."""
    if not chosen.shared_folds and chosen.search is None:
        return 0
    search = chosen.search or SearchSpec()  # candidates without a search: its defaults
    total = 0
    for candidate in chosen.candidates:
        size = len(ParameterGrid(candidate.space or {}))
        random = search.strategy == SearchStrategy.RANDOM
        total += (min(size, search.max_trials) if random else size) * search.cv
    return total


class _SearchBackend(DaskDistributedBackend):  # type: ignore[misc]
    """joblib's Dask backend, with the arrays of parallel_config's `scatter` (the data and the
    folds, select) sent as tasks rather than scattered, and each finished `_fit_and_score` call
    (a search's fit) counted.

    joblib scatters them with `broadcast=True`, and scattered data has no lineage: a worker
    that dies while the scheduler copies it to every worker leaves the copy retrying the dead
    worker forever, and one that dies holding the last copy cancels every fit that needs it.
    A task's result is sent once and fetched by the workers from one another as their fits
    need it; when every worker that held it is gone, the scheduler computes it again from the
    task, like the fits it reschedules. (joblib has no public way to hand it futures: hence
    its private class and `data_futures`, the map its own `scatter` fills.)
    """

    def __init__(self, progress: Progress, scatter: Sequence[Any] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.progress = progress
        self._scatter = list(scatter)  # keeps the arrays alive, and so their ids
        self.data_futures = {
            id(value): self.client.submit(_value, value, pure=False) for value in self._scatter
        }

    def submit(self, func: Any, callback: Callable[[Any], Any] | None = None) -> Any:
        fits = sum(1 for call, _, _ in func.items if _name(call) == "_fit_and_score")

        def done(out: Any) -> Any:
            if fits:
                self.progress.add(fits)
            return callback(out) if callback is not None else None

        return super().submit(func, callback=done)


def _value(value: Any) -> Any:
    return value


def _name(call: Any) -> str:
    # scikit-learn wraps each call (utils.parallel._FuncWrapper) around the function itself.
    return str(getattr(getattr(call, "function", call), "__name__", ""))


def search_backend(client: Client, chosen: Plan) -> str:
    """The joblib backend name that runs the selection's fits on the client's workers,
    reporting progress; pass it to selection.select."""
    progress = Progress(planned_fits(chosen))
    # Fits wait for a worker while one is replaced; with none for the run's time-out, the
    # scheduler fails them (NoWorkerError) and the run ends as EngineLost, not waiting forever.
    limit = timeout()

    def fail_without_workers(dask_scheduler: Scheduler) -> None:
        dask_scheduler.no_workers_timeout = limit

    client.run_on_scheduler(fail_without_workers)  # type: ignore[no-untyped-call]

    def factory(**kwargs: Any) -> _SearchBackend:
        return _SearchBackend(progress, client=client, wait_for_workers_timeout=limit, **kwargs)

    register_parallel_backend(BACKEND, factory)
    return BACKEND
