"""Routing and request handling, independent of the HTTP machinery in http.py.

`App.handle` answers a request synchronously whenever it can: small predictions run inline,
because a thread hop costs more than predicting a few rows. Large batches come back as an
`Offload` whose model call runs on a worker thread, so the event loop keeps serving others.
With batching on, small predictions come back as a `Batchable` instead, which the server
predicts together with the others that queued at the same time (batching.py).

Every prediction has a request id (V2's body `id`, else the X-Request-Id header, else one made
here), echoed in the X-Request-Id response header, under which its predicted values are kept
for ground truth sent later to the feedback endpoints (feedback.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import orjson

from modelyard import __version__
from modelyard.workloads.serving import openapi, protocol
from modelyard.workloads.serving.config import (
    DEFAULT_FEEDBACK_WINDOW,
    DEFAULT_REMEMBER_ROWS,
    INLINE_ROWS,
)
from modelyard.workloads.serving.drift import DriftMonitor
from modelyard.workloads.serving.errors import RequestError
from modelyard.workloads.serving.feedback import Labels, checked_id, header_id, new_request_id
from modelyard.workloads.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from modelyard.workloads.serving.metrics import Metrics
from modelyard.workloads.serving.model import Model
from modelyard.workloads.serving.protocol import Inference

log = logging.getLogger("modelyard.serve")

JSON = b"application/json"
OTHER = "other"  # endpoint label of unrouted paths: raw paths would explode label cardinality


class Response(NamedTuple):
    status: int
    body: bytes
    endpoint: str
    content_type: bytes = JSON
    headers: bytes = b""  # extra raw header lines, each ending in CRLF


class Outcome(NamedTuple):
    predictions: np.ndarray | None
    proba: np.ndarray | None


class Offload(NamedTuple):
    """A prediction to compute off the event loop, then turn into a response on it."""

    compute: Callable[[], Outcome]
    respond: Callable[[Outcome], Response]
    endpoint: str


class Batchable(NamedTuple):
    """A small prediction that may share one model call with others queued beside it."""

    model: Model
    matrix: np.ndarray
    predict: bool
    proba: bool
    respond: Callable[[Outcome], Response]
    endpoint: str

    def compute(self) -> Outcome:
        return Outcome(
            self.model.predict(self.matrix) if self.predict else None,
            self.model.predict_proba(self.matrix) if self.proba else None,
        )


# A handler takes the body and the raw X-Request-Id header (None without one).
Handler = Callable[[bytes, bytes | None], "Response | Offload | Batchable"]


class Route(NamedTuple):
    endpoint: str
    methods: frozenset[bytes]
    handler: Handler


def error(status: int, message: str, endpoint: str, headers: bytes = b"") -> Response:
    return Response(status, orjson.dumps({"error": message}), endpoint, JSON, headers)


GET = frozenset({b"GET"})
POST = frozenset({b"POST"})


class App:
    def __init__(
        self,
        name: str | None,
        metrics: Metrics,
        drift_window: int,
        *,
        remember_rows: int = DEFAULT_REMEMBER_ROWS,
        feedback_window: int = DEFAULT_FEEDBACK_WINDOW,
        batching: bool = False,
    ) -> None:
        self.name = name
        # Small predictions come back as Batchable for the server to predict together.
        self.batching = batching
        self.metrics = metrics
        self.model: Model | None = None
        self.draining = False
        self.drift: DriftMonitor | None = None
        self.labels: Labels | None = None
        self._drift_window = drift_window
        self._remember_rows = remember_rows
        self._feedback_window = feedback_window
        self._server_metadata = orjson.dumps(
            {"name": "modelyard", "version": __version__, "extensions": []}
        )
        self._model_metadata = b""
        self._openapi = orjson.dumps(openapi.describe(name, None)) if name is not None else b""
        self._routes: dict[bytes, Route] = {
            b"/v2/health/live": Route("/v2/health/live", GET, self._live),
            b"/v2/health/ready": Route("/v2/health/ready", GET, self._ready),
            b"/v2": Route("/v2", GET, self._server),
            b"/metrics": Route("/metrics", GET, self._metrics),
            b"/v1/models": Route("/v1/models", GET, self._v1_models),
            openapi.PATH.encode(): Route(openapi.PATH, GET, self._openapi_description),
        }
        if name is not None:
            self._add_model_routes(name, None)

    @property
    def ready(self) -> bool:
        return self.model is not None and not self.draining

    def set_model(self, model: Model, load_seconds: float) -> None:
        """Called once, on the event loop, when loading succeeded."""
        self.name = model.name
        self.drift = DriftMonitor(
            model.features, model.card.baseline, self._drift_window, model.dtype
        )
        self.labels = Labels(model, self._remember_rows, self._feedback_window)
        self._model_metadata = orjson.dumps(_v2_metadata(model))
        self._openapi = orjson.dumps(openapi.describe(model.name, model.version))
        self._add_model_routes(model.name, model.version)
        self.metrics.model = model.name
        self.metrics.load_seconds = load_seconds
        self.metrics.drift = self.drift
        self.metrics.labels = self.labels
        self.metrics.ready = True
        self.model = model

    # --- dispatch ----------------------------------------------------------------------------

    def handle(
        self,
        method: bytes,
        path: bytes,
        body: bytes,
        request_id: bytes | None = None,
        authorization: bytes | None = None,  # the serving port asks for none: clients are anyone
    ) -> Response | Offload | Batchable:
        route = self._routes.get(path)
        if route is None:
            return self._unrouted(path)
        if method not in route.methods:
            allowed = ", ".join(sorted(m.decode() for m in route.methods))
            return error(
                405,
                f"{method.decode(errors='replace')} is not allowed on {route.endpoint}; "
                f"use {allowed}",
                route.endpoint,
                f"allow: {allowed}\r\n".encode(),
            )
        try:
            return route.handler(body, request_id)
        except RequestError as failure:
            return error(failure.status, failure.message, route.endpoint)
        except Exception as failure:  # a bug of ours: answer, log, and keep serving
            log.exception("unexpected error on %s", route.endpoint)
            return error(500, f"internal error: {type(failure).__name__}", route.endpoint)

    def finish(self, offload: Offload | Batchable, outcome: Outcome | BaseException) -> Response:
        """The response to an offloaded or batched prediction, given what its model call
        produced (or raised)."""
        if isinstance(outcome, RequestError):
            return error(outcome.status, outcome.message, offload.endpoint)
        if isinstance(outcome, BaseException):
            log.error("unexpected error on %s", offload.endpoint, exc_info=outcome)
            return error(500, f"internal error: {type(outcome).__name__}", offload.endpoint)
        return offload.respond(outcome)

    def _unrouted(self, path: bytes) -> Response:
        text = path.decode(errors="replace")
        for prefix in ("/v2/models/", "/v1/models/"):
            if text.startswith(prefix):
                asked = text.removeprefix(prefix).split("/")[0].split(":")[0]
                if self.name is None:
                    return error(503, "the model is still loading", OTHER)
                if asked != self.name:
                    return error(
                        404, f"model {asked!r} not found: this server serves {self.name!r}", OTHER
                    )
        return error(404, f"no such endpoint: {text}", OTHER)

    def _add_model_routes(self, name: str, version: str | None) -> None:
        v2 = f"/v2/models/{name}"
        v1 = f"/v1/models/{name}"
        routes = {
            v2: Route("/v2/models/{name}", GET, self._v2_model),
            f"{v2}/ready": Route("/v2/models/{name}/ready", GET, self._model_ready),
            f"{v2}/infer": Route("/v2/models/{name}/infer", POST, self._v2_infer),
            v1: Route("/v1/models/{name}", GET, self._model_ready),
            f"{v1}:predict": Route("/v1/models/{name}:predict", POST, self._v1_predict),
            f"{v1}:predict_proba": Route(
                "/v1/models/{name}:predict_proba", POST, self._v1_predict_proba
            ),
            f"{v2}/feedback": Route("/v2/models/{name}/feedback", POST, self._v2_feedback),
            f"{v1}:feedback": Route("/v1/models/{name}:feedback", POST, self._v1_feedback),
        }
        if version is not None:
            versioned = f"{v2}/versions/{version}"
            routes[versioned] = Route("/v2/models/{name}", GET, self._v2_model)
            routes[f"{versioned}/ready"] = Route("/v2/models/{name}/ready", GET, self._model_ready)
            routes[f"{versioned}/infer"] = Route("/v2/models/{name}/infer", POST, self._v2_infer)
            routes[f"{versioned}/feedback"] = Route(
                "/v2/models/{name}/feedback", POST, self._v2_feedback
            )
        self._routes.update({path.encode(): route for path, route in routes.items()})

    def _loaded(self) -> Model:
        if self.model is None:
            raise RequestError(503, "the model is still loading")
        return self.model

    # --- handlers ----------------------------------------------------------------------------

    def _live(self, body: bytes, request_id: bytes | None) -> Response:
        return Response(200, b'{"live":true}', "/v2/health/live")

    def _ready(self, body: bytes, request_id: bytes | None) -> Response:
        if self.ready:
            return Response(200, b'{"ready":true}', "/v2/health/ready")
        return Response(503, b'{"ready":false}', "/v2/health/ready")

    def _server(self, body: bytes, request_id: bytes | None) -> Response:
        return Response(200, self._server_metadata, "/v2")

    def _metrics(self, body: bytes, request_id: bytes | None) -> Response:
        return Response(200, self.metrics.render(), "/metrics", METRICS_CONTENT_TYPE)

    def _openapi_description(self, body: bytes, request_id: bytes | None) -> Response:
        if not self._openapi:
            raise RequestError(503, "the model is still loading: its name is not known yet")
        return Response(200, self._openapi, openapi.PATH)

    def _v1_models(self, body: bytes, request_id: bytes | None) -> Response:
        return Response(
            200, orjson.dumps({"models": [self.name] if self.name else []}), "/v1/models"
        )

    def _v2_model(self, body: bytes, request_id: bytes | None) -> Response:
        self._loaded()
        return Response(200, self._model_metadata, "/v2/models/{name}")

    def _model_ready(self, body: bytes, request_id: bytes | None) -> Response:
        document = orjson.dumps({"name": self.name, "ready": self.ready})
        return Response(200 if self.ready else 503, document, "/v2/models/{name}/ready")

    def _v2_infer(self, body: bytes, request_id: bytes | None) -> Response | Offload | Batchable:
        model = self._loaded()
        inference = protocol.decode_v2(model, body)
        return self._predict(
            model, inference, request_id, "/v2/models/{name}/infer", self._respond_v2
        )

    def _v1_predict(self, body: bytes, request_id: bytes | None) -> Response | Offload | Batchable:
        model = self._loaded()
        inference = protocol.decode_v1(model, body, proba_verb=False)
        return self._predict(
            model, inference, request_id, "/v1/models/{name}:predict", self._respond_v1
        )

    def _v1_predict_proba(
        self, body: bytes, request_id: bytes | None
    ) -> Response | Offload | Batchable:
        model = self._loaded()
        inference = protocol.decode_v1(model, body, proba_verb=True)
        endpoint = "/v1/models/{name}:predict_proba"
        return self._predict(model, inference, request_id, endpoint, self._respond_v1)

    def _v2_feedback(self, body: bytes, request_id: bytes | None) -> Response:
        return self._feedback(body, "/v2/models/{name}/feedback")

    def _v1_feedback(self, body: bytes, request_id: bytes | None) -> Response:
        return self._feedback(body, "/v1/models/{name}:feedback")

    def _feedback(self, body: bytes, endpoint: str) -> Response:
        self._loaded()
        labels = self.labels
        assert labels is not None  # set with the model
        document = protocol.loads(body)
        if not isinstance(document, dict):
            raise RequestError(
                400, 'the body must be a JSON object: {"id": "<request id>", "truth": [...]}'
            )
        request_id = document.get("id")
        if not isinstance(request_id, str):
            raise RequestError(
                400, '"id" must be a string: the request id of the prediction (X-Request-Id)'
            )
        checked_id(request_id, '"id"')
        matched = labels.feedback(request_id, labels.check_truth(document.get("truth")))
        return Response(200, orjson.dumps({"id": request_id, "matched": matched}), endpoint)

    def _predict(
        self,
        model: Model,
        inference: Inference,
        header: bytes | None,
        endpoint: str,
        respond: Callable[[Model, Inference, str, Outcome], Response],
    ) -> Response | Offload | Batchable:
        if inference.proba:
            model.require_proba()
        if inference.request_id is None:
            inference.request_id = header_id(header) if header is not None else new_request_id()
        if self.drift is not None:
            self.drift.observe(inference.matrix)

        def answer(outcome: Outcome) -> Response:
            return respond(model, inference, endpoint, outcome)

        item = Batchable(
            model, inference.matrix, inference.predict, inference.proba, answer, endpoint
        )
        if len(inference.matrix) > INLINE_ROWS:
            return Offload(item.compute, answer, endpoint)
        if self.batching:
            return item
        return answer(item.compute())

    def _count(self, model: Model, inference: Inference, outcome: Outcome) -> bytes:
        """Count the prediction, remember it for feedback; the X-Request-Id header line."""
        if model.is_classifier and outcome.predictions is not None:
            self.metrics.predictions(outcome.predictions.tolist())
        else:
            self.metrics.rows(len(inference.matrix))
        request_id = inference.request_id
        assert request_id is not None  # _predict sets one
        labels = self.labels
        if labels is not None:
            if outcome.predictions is not None:
                labels.remember(request_id, outcome.predictions)
            elif outcome.proba is not None:
                labels.remember(request_id, labels.labels_of(outcome.proba))
        return b"x-request-id: %b\r\n" % request_id.encode()

    def _respond_v2(
        self, model: Model, inference: Inference, endpoint: str, outcome: Outcome
    ) -> Response:
        header = self._count(model, inference, outcome)
        body = protocol.encode_v2(model, inference.request_id, outcome.predictions, outcome.proba)
        return Response(200, body, endpoint, JSON, header)

    def _respond_v1(
        self, model: Model, inference: Inference, endpoint: str, outcome: Outcome
    ) -> Response:
        header = self._count(model, inference, outcome)
        assert outcome.predictions is not None  # V1 always predicts
        return Response(
            200,
            protocol.encode_v1(model, outcome.predictions, outcome.proba),
            endpoint,
            JSON,
            header,
        )


def _v2_metadata(model: Model) -> dict[str, Any]:
    card = model.card
    outputs: list[dict[str, Any]] = [
        {"name": protocol.PREDICT, "datatype": _label_datatype(model), "shape": [-1]}
    ]
    if model.has_proba:
        outputs.append(
            {"name": protocol.PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(model.classes)]}
        )
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "scikit-learn",
        "inputs": [
            {"name": name, "datatype": datatype, "shape": [-1]}
            for name, datatype in zip(
                model.features, protocol.feature_datatypes(model), strict=True
            )
        ],
        "outputs": outputs,
        "parameters": {
            "task": card.task,
            "target": card.target,
            "estimator": card.estimator,
            "classes": model.classes if model.is_classifier else None,
            "digest": card.digest,
            "run": card.run,
            "training_job": card.training_job,
            "dataset_version": card.dataset.version,
            "accepts_missing": model.accepts_missing,
            "engine": model.engine,
        },
    }


def _label_datatype(model: Model) -> str:
    if not model.is_classifier:
        return "FP64"
    kinds = {type(label) for label in model.classes}
    if kinds <= {int}:
        return "INT64"
    if kinds <= {bool}:
        return "BOOL"
    if kinds <= {float, int}:
        return "FP64"
    return protocol.BYTES
