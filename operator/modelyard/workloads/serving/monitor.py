"""The monitoring port: what the operator asks each server process, on a port of its own.

Every process (each worker of `--workers N`) binds `--monitor-port` + its worker index, so the
operator reaches each one, where the shared serving port would reach one at the kernel's
choice. Only two routes, both POST:

    /monitoring/collect   this process's drift counts, quality sums and unmatched feedback
                          (monitoring.report.ProcessReport; unmatched handed over once)
    /monitoring/feedback  {"feedback": [{"id", "truth"}, ...]} relayed from other processes:
                          counted when this process holds the id, dropped otherwise (never
                          held again, so feedback cannot travel in circles); {"matched": k}

The serving port does not answer these paths, so clients of the model cannot read other
clients' feedback or inject relayed labels. With a token (MODELYARD_MONITOR_TOKEN, which the
operator derives from the ModelDeployment: monitoring.token), every request without
`Authorization: Bearer <token>` gets 401, so that no other pod that can reach the port can
either.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson

from modelyard.monitoring import token as monitor_token
from modelyard.monitoring.report import MAX_UNMATCHED, ProcessReport
from modelyard.workloads.serving import protocol
from modelyard.workloads.serving.app import (
    JSON,
    OTHER,
    POST,
    App,
    Batchable,
    Offload,
    Outcome,
    Response,
)
from modelyard.workloads.serving.app import error as error_response
from modelyard.workloads.serving.errors import RequestError
from modelyard.workloads.serving.feedback import Labels, checked_id
from modelyard.workloads.serving.metrics import Metrics

log = logging.getLogger("modelyard.serve")

COLLECT = "/monitoring/collect"
FEEDBACK = "/monitoring/feedback"


class MonitorApp:
    """Answers the monitoring port from the state of the process's serving App."""

    def __init__(self, app: App, token: str | None = None) -> None:
        self._app = app
        self._authorization = (
            monitor_token.header_value(token).encode() if token is not None else None
        )
        self.metrics: Metrics = app.metrics  # requests here are counted with the others
        self._routes = {COLLECT.encode(): self._collect, FEEDBACK.encode(): self._feedback}

    def handle(
        self,
        method: bytes,
        path: bytes,
        body: bytes,
        request_id: bytes | None = None,
        authorization: bytes | None = None,
    ) -> Response:
        handler = self._routes.get(path)
        expected = self._authorization
        # Before anything else, so that nothing about the port is told to a stranger; compared
        # in constant time, so that the answer's timing does not reveal the token bit by bit.
        if expected is not None and not hmac.compare_digest(authorization or b"", expected):
            return error_response(
                401,
                f"{monitor_token.HEADER}: Bearer <token> is required on the monitoring port",
                path.decode() if handler is not None else OTHER,
                b'www-authenticate: Bearer realm="modelyard-monitoring"\r\n',
            )
        if handler is None:
            return error_response(404, f"no such endpoint: {path.decode(errors='replace')}", OTHER)
        endpoint = path.decode()
        if method not in POST:
            return error_response(
                405,
                f"{method.decode(errors='replace')} is not allowed on {endpoint}; use POST",
                endpoint,
                b"allow: POST\r\n",
            )
        try:
            return handler(body)
        except RequestError as failure:
            return error_response(failure.status, failure.message, endpoint)
        except Exception as failure:  # a bug of ours: answer, log, and keep serving
            log.exception("unexpected error on %s", endpoint)
            return error_response(500, f"internal error: {type(failure).__name__}", endpoint)

    def finish(self, offload: Offload | Batchable, outcome: Outcome | BaseException) -> Response:
        # handle() never returns an Offload or a Batchable.
        raise AssertionError("the monitoring port never offloads or batches")

    def _labels(self) -> Labels:
        labels = self._app.labels
        if labels is None:
            raise RequestError(503, "the model is still loading")
        return labels

    def _collect(self, body: bytes) -> Response:
        labels = self._labels()
        model, drift = self._app.model, self._app.drift
        assert model is not None and drift is not None  # set with the labels
        report = ProcessReport(
            model=model.card.digest,
            worker=self.metrics.worker,
            task=model.card.task,
            rows=drift.rows,
            features=drift.counts(),
            quality=labels.sums(),
            unmatched=labels.take_unmatched(),
        )
        return Response(200, orjson.dumps(report.to_json()), COLLECT, JSON)

    def _feedback(self, body: bytes) -> Response:
        labels = self._labels()
        document = protocol.loads(body)
        entries: Any = document.get("feedback") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise RequestError(400, 'the body must be {"feedback": [{"id": ..., "truth": [...]}]}')
        if len(entries) > MAX_UNMATCHED:
            raise RequestError(400, f'"feedback" has more than {MAX_UNMATCHED} entries')
        checked: list[tuple[str, Any]] = []
        for i, entry in enumerate(entries):
            request_id = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(request_id, str):
                raise RequestError(400, f'"feedback[{i}].id" must be a string')
            checked.append((checked_id(request_id, f'"feedback[{i}].id"'), entry.get("truth")))
        matched = 0
        for i, (request_id, truth) in enumerate(checked):
            try:
                values = labels.check_truth(truth, f"feedback[{i}].truth")
            except RequestError:
                continue  # not this model's target: it can match nothing here, like an unknown id
            matched += labels.match(request_id, values)
        return Response(200, orjson.dumps({"matched": matched}), FEEDBACK, JSON)
