"""Data-parallel LightGBM on the run's Dask workers (spec.workers.dataParallel).

The training pod never reads the snapshot's data file: the workers do, a few of its Parquet row
groups per task, with ranged S3 reads (they get the same storage environment as the pod). The
pod plans the tasks from the file's row-group sizes (read by a worker) and the split file (the
test rows' indices, small), then:

1. fits the preprocessing steps of the in-process pipeline (pipeline.py) on a bounded sample of
   the training rows (SAMPLE_ROWS, drawn evenly from every task), which is what the statistics
   it learns (medians, scales, categories) need, not every row;
2. has each task transform its rows on its worker into dask arrays, and trains
   lightgbm.dask's DaskLGBMClassifier/Regressor with the spec's params on them. LightGBM trains
   each worker on the parts it holds, so the tasks are placed to give every worker the same
   number of rows: the busiest worker's share is what has to fit in a worker's memory;
3. turns the result into the same scikit-learn Pipeline the pod saves otherwise (the fitted
   preprocessing, then the local LightGBM model), so the model server serves it unchanged;
4. evaluates it on the whole test split, predicting on the workers and gathering only the
   labels and predictions; the evaluation report and the card's baselines use bounded samples.

LightGBM's distributed training is one collective over the workers: a worker lost mid-fit, or
while the training rows are placed, fails the fit, which is retried (FIT_ATTEMPTS in all) once
the workers are back; Dask re-reads the lost worker's row groups from S3. A fit that keeps
failing ends the run with EngineLost.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import dask.array as da
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from distributed import Client, Future, wait
from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from modelyard.reasons import Reason
from modelyard.storage.client import Storage, StorageUnavailable
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.modelcard import Feature
from modelyard.workloads.common.termination import EXIT_INVALID_DATA, WorkloadError
from modelyard.workloads.common.timing import phase
from modelyard.workloads.training import engine
from modelyard.workloads.training.evaluation import check_test_classes, evaluate
from modelyard.workloads.training.features import NUMERIC, table_to_matrix
from modelyard.workloads.training.pipeline import ESTIMATOR_STEP
from modelyard.workloads.training.run import Fitted
from modelyard.workloads.training.selection import Plan, Selected

Array = np.ndarray[Any, Any]

# Whole row groups per task, up to about this many rows: a task's rows are in one worker's
# memory at once, raw and transformed.
PARTITION_ROWS = 250_000
# Training rows the preprocessing is fitted on, and test rows the report and baselines look at.
SAMPLE_ROWS = 50_000
# Rows the workers transform at a time (see _read_transformed).
TRANSFORM_ROWS = 16_384
FIT_ATTEMPTS = 3
# How often a fit in flight checks that the workers it started on are all still there.
WATCH_SECONDS = 2.0
# How long a fit that lost a worker may take to fail by itself before its tasks are cancelled.
LOST_GRACE_SECONDS = 20.0
# The workers' transformed parts, which LightGBM copies once more into one matrix per worker:
# single precision halves what a worker holds. LightGBM bins every feature into at most
# max_bin (255) values anyway, so the model does not need more digits than float32 has.
FEATURE_DTYPE = np.float32
# How long every worker process has to restart between fit attempts.
RESTART_SECONDS = 60.0
# LightGBM's socket time-out in minutes (its time_out; its default is 120). The workers that
# survive a lost one stay blocked in its collective until then: it is how long a lost worker
# delays the retry. A worker that keeps the others waiting longer than this at one
# synchronization (one tree level) fails the fit too, which is retried.
NETWORK_TIMEOUT_ENV = "MODELYARD_LIGHTGBM_TIME_OUT"
DEFAULT_NETWORK_TIMEOUT_MINUTES = 2


@dataclass(frozen=True)
class Part:
    """One task's rows: whole row groups of the data file, and which of their rows are test."""

    groups: tuple[int, ...]
    rows: int
    test: Array  # indices of the test rows, counted from the part's first row

    @property
    def train_rows(self) -> int:
        return self.rows - len(self.test)


def fit_data_parallel(
    client: Client,
    chosen: Plan,
    storage: Storage,
    dataset_uri: S3Uri,
    manifest: dict[str, Any],
    features: list[Feature],
    wanted: list[tuple[str, str]],
    names: list[str],
    workers: int,
) -> Fitted:
    """The chosen LightGBM estimator trained over the run's `workers` Dask workers, with
    the evaluation and samples a run in one pod records."""
    candidate = chosen.candidates[0]
    target = manifest["target"]
    if chosen.task == "regression" and _target_type(manifest) not in NUMERIC:
        raise WorkloadError(
            Reason.TargetNotNumeric,
            f"{candidate.where}.class: a regressor needs a numeric target, {target!r} is text",
            EXIT_INVALID_DATA,
        )
    config, data = storage.config, str(dataset_uri.join(manifest["files"]["data"]))
    with phase("train", "plan row groups"):
        group_rows = client.submit(_group_rows, config, data, pure=False).result()
        split = pq.read_table(
            pa.BufferReader(storage.get_bytes(dataset_uri.join(manifest["files"]["split"])))
        )
        parts = partition(group_rows, split.column("test_row").to_numpy(), workers)
    train_rows = sum(part.train_rows for part in parts)
    test_rows = sum(len(part.test) for part in parts)
    with phase("train", "sample"):
        x_sample, y_sample = _gather_samples(client, config, data, parts, features, target, False)
        x_test_sample, y_test_sample = _gather_samples(
            client, config, data, parts, features, target, True
        )
    if chosen.task == "classification":
        # On the report's sample, before the fit: the probability metrics want two classes.
        check_test_classes(y_test_sample, wanted)
    preprocess = Pipeline(clone(candidate.pipeline).steps[:-1])
    preprocess.fit(x_sample, y_sample)
    with phase("train", "fit"):
        model = _fit(
            client,
            chosen,
            preprocess,
            (x_sample, y_sample),
            _Rows(config, data, parts, features, target),
            workers,
        )
    pipeline = Pipeline([*preprocess.steps, (ESTIMATOR_STEP, model)])
    with phase("train", "evaluate"):
        y_test, predicted, probabilities = _predict(
            client, pipeline, config, data, parts, features, target
        )
        metrics = evaluate(
            _Predicted(pipeline, predicted, probabilities), _rows(y_test), y_test, names
        )
    selected = Selected(pipeline, candidate.class_, candidate.params, [])
    return Fitted(
        selected, metrics, x_sample, y_sample, x_test_sample, y_test_sample, train_rows, test_rows
    )


def partition(group_rows: list[int], test_rows: Array, workers: int) -> list[Part]:
    """Consecutive row groups, at least one a task, up to PARTITION_ROWS rows, and as few rows
    as makes two tasks a worker, so that every worker trains on some (row groups allowing)."""
    test_rows = np.sort(test_rows)
    limit = min(PARTITION_ROWS, -(-sum(group_rows) // (2 * max(workers, 1))))
    parts: list[Part] = []
    groups: list[int] = []
    start = rows = 0
    for group, count in enumerate(group_rows):
        if groups and rows + count > limit:
            parts.append(_part(groups, start, rows, test_rows))
            start, rows, groups = start + rows, 0, []
        groups.append(group)
        rows += count
    if groups:
        parts.append(_part(groups, start, rows, test_rows))
    return [part for part in parts if part.rows]


def _part(groups: list[int], start: int, rows: int, test_rows: Array) -> Part:
    low, high = np.searchsorted(test_rows, [start, start + rows])
    return Part(tuple(groups), rows, test_rows[low:high] - start)


def _target_type(manifest: dict[str, Any]) -> str:
    return str(next(c["type"] for c in manifest["columns"] if c["name"] == manifest["target"]))


def _gather_samples(
    client: Client,
    config: StorageConfig,
    data: str,
    parts: list[Part],
    features: list[Feature],
    target: str,
    test: bool,
) -> tuple[Array, Array]:
    """Up to SAMPLE_ROWS rows of the split, the same share of every part, drawn on the workers."""
    total = sum(len(p.test) if test else p.train_rows for p in parts)
    share = min(1.0, SAMPLE_ROWS / max(total, 1))
    futures = [
        client.submit(_sample, config, data, part, features, target, test, share, index)
        for index, part in enumerate(parts)
    ]
    samples = client.gather(futures)  # type: ignore[no-untyped-call]
    x = np.concatenate([x for x, _ in samples])
    y = np.concatenate([y for _, y in samples])
    return x, y


@dataclass(frozen=True)
class _Rows:
    """Where the training rows are: the data file, its parts, the columns the model reads."""

    config: StorageConfig
    data: str
    parts: list[Part]
    features: list[Feature]
    target: str


def _fit(
    client: Client,
    chosen: Plan,
    preprocess: Pipeline,
    sample: tuple[Array, Array],
    rows: _Rows,
    workers: int,
) -> Any:
    """The LightGBM model trained on every training row, over the workers; retried when a
    worker was lost during a fit."""
    candidate = chosen.candidates[0]
    dask_class = DaskLGBMClassifier if chosen.task == "classification" else DaskLGBMRegressor
    params = {**candidate.estimator.get_params(), "time_out": _network_timeout()}
    for attempt in range(1, FIT_ATTEMPTS + 1):
        # Every worker the run asked for, also when one was lost before the first attempt: a
        # fit on fewer workers would give each more rows than it was sized for.
        _wait_for_workers(client, workers)
        before = engine.worker_addresses(client)
        print(
            f"train: LightGBM fit {attempt} of {FIT_ATTEMPTS} on {len(before)} workers", flush=True
        )
        x, y = _training_arrays(client, preprocess, sample, rows, sorted(before))
        try:
            x, y = placed(client, x, y, before)
            model = dask_class(client=client, **params)
            _fit_watched(client, model, x, y)
            return model.to_local()
        except Exception as error:
            if not _connected(client):
                raise engine.lost(
                    "the connection to the Dask scheduler broke during a LightGBM fit and did not "
                    f"come back within {engine.timeout():g} s ({error})"
                ) from None
            after = engine.worker_addresses(client)
            if before <= after:
                if isinstance(error, engine.ENGINE_FAILURES):
                    raise
                # Every worker is still there: the data or the params, not the engine.
                raise WorkloadError(
                    Reason.TrainingFailed,
                    f"{candidate.where}: distributed LightGBM training failed: {error}",
                    EXIT_INVALID_DATA,
                ) from None
            lost = ", ".join(sorted(before - after))
            if attempt == FIT_ATTEMPTS:
                raise engine.lost(
                    f"distributed LightGBM training failed {FIT_ATTEMPTS} times as workers were "
                    f"lost (last: {lost}): {error}. A worker restarted mid-fit has most often "
                    "run out of memory (its pod's log says so): give spec.workers.resources "
                    "more memory, or add workers"
                ) from None
            # Whatever the fit failed with (a peer's broken connection, tasks cancelled with the
            # lost worker's data, a call to its old address timing out), a worker was lost: the
            # fit is retried. The workers that survived may still sit in the failed fit's
            # collective, their only thread blocked on the lost peer: restarting every worker
            # process (the nannies do) clears them before the next attempt, which places the
            # parts anew. Dask removes the workers that do not restart in time; new ones replace
            # them.
            with suppress(TimeoutError):
                client.restart(timeout=RESTART_SECONDS, wait_for_workers=False)
            print(
                f"train: LightGBM fit {attempt} of {FIT_ATTEMPTS} lost worker(s) {lost}; "
                "retrying once the workers are back",
                flush=True,
            )
    raise AssertionError("unreachable: the last attempt returns or raises")


def assign(parts: list[Part], workers: list[str]) -> list[str]:
    """The worker of each part: the one with the fewest training rows so far, so that the
    workers' shares differ by at most one part's rows."""
    load = dict.fromkeys(workers, 0)
    chosen = []
    for part in parts:
        worker = min(workers, key=load.__getitem__)
        load[worker] += part.train_rows
        chosen.append(worker)
    return chosen


def _training_arrays(
    client: Client,
    preprocess: Pipeline,
    sample: tuple[Array, Array],
    rows: _Rows,
    workers: list[str],
) -> tuple[Any, Any]:
    """The training rows as dask arrays of the parts, each computed on the worker that has the
    fewest rows so far. Left to the scheduler, the workers that happen to be free take more
    parts (8, 6 and 6 of 20 in a measured run), and the busiest one runs out of memory first."""
    x_sample, y_sample = sample
    width = preprocess.transform(x_sample[:1]).shape[1]
    # Sent once to every worker, not inside each task.
    fitted = client.scatter(preprocess, broadcast=True, hash=False)  # type: ignore[no-untyped-call]
    x_parts, y_parts = [], []
    training = [part for part in rows.parts if part.train_rows]
    for part, worker in zip(training, assign(training, workers), strict=True):
        # Elsewhere when that worker is lost: the fit fails then anyway, and is retried.
        where = {"workers": [worker], "allow_other_workers": True}
        matrix = client.submit(
            _read_transformed,
            fitted,
            width,
            rows.config,
            rows.data,
            part,
            rows.features,
            rows.target,
            pure=False,
            **where,
        )
        x_parts.append(
            da.from_delayed(  # type: ignore[no-untyped-call]
                client.submit(_item, matrix, 0, **where),
                shape=(part.train_rows, width),
                dtype=FEATURE_DTYPE,
            )
        )
        y_parts.append(
            da.from_delayed(  # type: ignore[no-untyped-call]
                client.submit(_item, matrix, 1, **where),
                shape=(part.train_rows,),
                dtype=y_sample.dtype,
            )
        )
    return da.concatenate(x_parts), da.concatenate(y_parts)  # type: ignore[no-untyped-call]


def placed(client: Client, x: Any, y: Any, workers: set[str]) -> tuple[Any, Any]:
    """The training arrays computed onto the workers, once every one of `workers` holds its
    parts. Dask computes a part whose worker was lost on another one, and LightGBM then trains on
    the workers that hold parts: fewer workers, each with more rows than it was sized for. So a
    worker lost while the parts are placed fails this attempt, as one lost mid-fit does."""
    x, y = client.persist([x, y])  # type: ignore[no-untyped-call]
    while True:
        try:
            wait([x, y], timeout=WATCH_SECONDS)  # type: ignore[no-untyped-call]
            done = True
        except TimeoutError:
            done = False
        # Checked while the parts compute too: a lost worker's parts computed again elsewhere
        # would only be thrown away, and with no worker to compute them the wait would not end.
        gone = workers - engine.worker_addresses(client)
        if gone:
            raise RuntimeError(
                f"worker(s) {', '.join(sorted(gone))} left while the training rows were placed"
            )
        if done:
            return x, y


def _fit_watched(client: Client, model: Any, x: Any, y: Any) -> None:
    """lightgbm.dask pins each worker's share of the training to that worker's address. A worker
    the nanny restarts (it does at 95 % of the worker's memory) comes back under another address,
    and the pinned task would wait for the old one for ever. So the fit runs in a thread while
    this one watches the workers: once one it started with is gone and the fit has not failed by
    itself soon after, its tasks are cancelled, and the fit fails (to be retried) instead of
    hanging."""
    outcome: list[BaseException | None] = []

    def fit() -> None:
        try:
            model.fit(x, y)
        except BaseException as error:
            outcome.append(error)
        else:
            outcome.append(None)

    started = engine.worker_addresses(client)
    thread = threading.Thread(target=fit, name="lightgbm-fit", daemon=True)
    thread.start()
    lost_at: float | None = None
    while thread.is_alive():
        thread.join(WATCH_SECONDS)
        if not thread.is_alive():
            break
        if lost_at is None:
            gone = started - engine.worker_addresses(client)
            lost_at = time.monotonic() if gone else None
        elif time.monotonic() - lost_at > LOST_GRACE_SECONDS:
            # Surviving peers fail the fit by themselves within seconds (a broken connection);
            # when none did, no worker of the fit is left: cancelling the client's tasks (the
            # fit's among them) ends LightGBM's wait, and leaves the new workers alone.
            client.cancel([Future(key, client) for key in list(client.futures)], force=True)  # type: ignore[no-untyped-call]
            thread.join()
            raise RuntimeError(f"worker(s) {', '.join(sorted(gone))} left while LightGBM trained")
    (error,) = outcome
    if error is not None:
        raise error


def _connected(client: Client) -> bool:
    """Whether the client is connected to the scheduler, waiting while it reconnects: a client
    whose connection broke (seen on the local cluster under load, mid-fit) reconnects by itself
    within its time-out, and the fit is retried then."""
    deadline = time.monotonic() + engine.timeout()
    while client.status != "running":
        if client.status in ("closing", "closed") or time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def _network_timeout() -> int:
    value = os.environ.get(NETWORK_TIMEOUT_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_NETWORK_TIMEOUT_MINUTES


def _wait_for_workers(client: Client, count: int) -> None:
    limit = engine.timeout()
    try:
        client.wait_for_workers(count, timeout=limit)
    except TimeoutError:
        ready = len(engine.worker_addresses(client))
        raise engine.lost(
            f"{ready} of {count} Dask workers were there within {limit:g} s to train on"
        ) from None


def _predict(
    client: Client,
    pipeline: Pipeline,
    config: StorageConfig,
    data: str,
    parts: list[Part],
    features: list[Feature],
    target: str,
) -> tuple[Array, Array, Array | None]:
    """The test split's labels, predictions and class probabilities, computed on the workers."""
    model = client.scatter(pipeline, broadcast=True, hash=False)  # type: ignore[no-untyped-call]
    futures = [
        client.submit(_predict_part, model, config, data, part, features, target)
        for part in parts
        if len(part.test)
    ]
    results = client.gather(futures)  # type: ignore[no-untyped-call]
    y = np.concatenate([r[0] for r in results])
    predicted = np.concatenate([r[1] for r in results])
    has_probabilities = all(r[2] is not None for r in results)
    probabilities = np.concatenate([r[2] for r in results]) if has_probabilities else None
    return y, predicted, probabilities


class _Predicted:
    """The pipeline as evaluation.evaluate sees it, answering with the predictions the workers
    made for the test rows, which it is given by index (_rows)."""

    def __init__(self, pipeline: Pipeline, predicted: Array, probabilities: Array | None) -> None:
        self.classes_ = getattr(pipeline, "classes_", None)
        self.predicted = predicted
        self.probabilities = probabilities

    def predict(self, rows: Array) -> Array:
        return self.predicted[rows]

    def predict_proba(self, rows: Array) -> Array:
        if self.probabilities is None:
            raise AttributeError("predict_proba")
        return self.probabilities[rows]


def _rows(y: Array) -> Array:
    return np.arange(len(y))


# What runs on the workers. They import this module from the same image as the training pod.


@lru_cache(maxsize=4)
def _storage(config: StorageConfig) -> Storage:
    return Storage(config)


class _RangeReader(io.RawIOBase):
    """An S3 object as a seekable file, read by ranged GETs: pyarrow reads a Parquet file's
    footer and the column chunks of the row groups asked for, nothing else."""

    def __init__(self, storage: Storage, uri: S3Uri) -> None:
        super().__init__()
        self.client, self.uri = storage.client, uri
        try:
            self.size = int(
                self.client.head_object(Bucket=uri.bucket, Key=uri.key)["ContentLength"]
            )
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable(f"reading {uri}: {error}") from None
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        end = min(self.size, self.position + len(buffer))
        if end <= self.position:
            return 0
        try:
            body = self.client.get_object(
                Bucket=self.uri.bucket, Key=self.uri.key, Range=f"bytes={self.position}-{end - 1}"
            )["Body"]
            chunk: bytes = body.read()
        except (BotoCoreError, ClientError, OSError) as error:
            raise StorageUnavailable(f"reading {self.uri} broke off: {error}") from None
        buffer[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def _parquet(config: StorageConfig, data: str) -> pq.ParquetFile:
    return pq.ParquetFile(_RangeReader(_storage(config), S3Uri.parse(data)))


def _group_rows(config: StorageConfig, data: str) -> list[int]:
    metadata = _parquet(config, data).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def _read_table(
    config: StorageConfig,
    data: str,
    part: Part,
    features: list[Feature],
    target: str,
    test: bool,
) -> pa.Table:
    table = _parquet(config, data).read_row_groups(
        list(part.groups), columns=[*(f.name for f in features), target]
    )
    is_test = np.zeros(part.rows, dtype=bool)
    is_test[part.test] = True
    return table.filter(pa.array(is_test if test else ~is_test))


def _labels(table: pa.Table, target: str) -> Array:
    labels: Array = table.column(target).to_numpy(zero_copy_only=False)
    return labels


def _sample(
    config: StorageConfig,
    data: str,
    part: Part,
    features: list[Feature],
    target: str,
    test: bool,
    share: float,
    seed: int,
) -> tuple[Array, Array]:
    table = _read_table(config, data, part, features, target, test)
    if share < 1.0:
        # Chosen before the conversion, which makes a Python object of each value when a
        # feature is text or boolean (see _read_transformed).
        table = table.filter(np.random.default_rng(seed).random(table.num_rows) < share)
    return table_to_matrix(table, features), _labels(table, target)


def _read_transformed(
    preprocess: Pipeline,
    width: int,
    config: StorageConfig,
    data: str,
    part: Part,
    features: list[Feature],
    target: str,
) -> tuple[Array, Array]:
    """The part's training rows through the preprocessing, and their labels. A slice of
    TRANSFORM_ROWS rows at a time: the pipeline's input is an object array when a feature is
    text or boolean (a Python object per value). For a whole part of 190,000 rows by 30
    features that took 270 MiB above the part's result for a moment, and much of it stayed
    with the worker process after it was freed (measured)."""
    table = _read_table(config, data, part, features, target, False)
    x = np.empty((table.num_rows, width), dtype=FEATURE_DTYPE)
    for start, rows in _slices(table, features):
        transformed = preprocess.transform(rows)
        # One-hot columns may come back sparse; LightGBM's parts are dense like the rest.
        x[start : start + len(rows)] = (
            transformed.toarray() if hasattr(transformed, "toarray") else transformed
        )
    return x, _labels(table, target)


def _slices(table: pa.Table, features: list[Feature]) -> Iterator[tuple[int, Array]]:
    """The table's rows as the pipeline's input, TRANSFORM_ROWS at a time, with the first
    row's index."""
    for start in range(0, table.num_rows, TRANSFORM_ROWS):
        yield start, table_to_matrix(table.slice(start, TRANSFORM_ROWS), features)


def _item(pair: tuple[Array, Array], index: int) -> Array:
    return pair[index]


def _predict_part(
    pipeline: Pipeline,
    config: StorageConfig,
    data: str,
    part: Part,
    features: list[Feature],
    target: str,
) -> tuple[Array, Array, Array | None]:
    table = _read_table(config, data, part, features, target, True)
    predicted, probabilities = [], []
    for _, x in _slices(table, features):
        predicted.append(pipeline.predict(x))
        if hasattr(pipeline, "predict_proba"):
            probabilities.append(pipeline.predict_proba(x))
    return (
        _labels(table, target),
        np.concatenate(predicted),
        np.concatenate(probabilities) if probabilities else None,
    )
