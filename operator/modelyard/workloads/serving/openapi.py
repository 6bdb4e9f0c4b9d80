"""The server's OpenAPI 3.0 description, served at GET /openapi.json.

It says what the server really accepts, no more: request bodies are described as loosely as
the decoder reads them (extra keys are ignored), and every status a route can answer is
listed, so clients and fuzzers (schemathesis, in the integration tests) can hold it to it.
Paths name the served model and version as the only values of their parameters.
"""

from __future__ import annotations

from typing import Any

from modelyard import __version__
from modelyard.workloads.serving.protocol import BYTES, NUMERIC_DATATYPES, OUTPUTS

PATH = "/openapi.json"
JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/Error"}
_DESCRIPTIONS = {
    "200": "OK",
    "400": "not the protocol's envelope: bad JSON, a missing or mistyped field",
    "404": "no such model or endpoint",
    "405": "method not allowed on this path (the Allow header lists the right ones)",
    "413": "request body larger than --max-body-bytes",
    "422": "well-formed, but the data does not fit the model",
    "503": "the model is loading, or the server is draining",
}
_PARAMETERS = {"type": "object", "description": '{"probabilities": true} asks for them too'}


def _responses(success: dict[str, Any] | None, *errors: int, text: bool = False) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    if success is not None:
        media = "text/plain" if text else JSON
        answers["200"] = {"description": "OK", "content": {media: {"schema": success}}}
    for status in errors:
        answers[str(status)] = {
            "description": _DESCRIPTIONS[str(status)],
            "content": {JSON: {"schema": _ERROR}},
        }
    return answers


def _get(summary: str, success: dict[str, Any], *errors: int, text: bool = False) -> Any:
    return {"get": {"summary": summary, "responses": _responses(success, *errors, text=text)}}


def _readiness(summary: str, schema: dict[str, Any]) -> Any:
    """200 when ready, 503 with the same body while loading or draining."""
    answer = {"content": {JSON: {"schema": schema}}}
    return {
        "get": {
            "summary": summary,
            "responses": {
                "200": {"description": "ready", **answer},
                "503": {"description": "loading or draining", **answer},
            },
        }
    }


def _post(summary: str, body: str, success: str, *errors: int) -> Any:
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{body}"}}},
            },
            "responses": _responses(
                {"$ref": f"#/components/schemas/{success}"}, *(errors or (400, 413, 422, 503))
            ),
        }
    }


_feedback = _post(
    "ground truth for an earlier prediction, by its request id",
    "Feedback",
    "FeedbackAnswer",
    400,
    413,
    503,
)


def describe(name: str, version: str | None) -> dict[str, Any]:
    """The description for a server of model `name` (and `version`, once loaded)."""
    model = {"type": "object", "description": "model metadata (docs/serving.md)"}
    ready = {"$ref": "#/components/schemas/ModelReady"}
    paths: dict[str, Any] = {
        "/v2/health/live": _get("liveness", {"type": "object"}),
        "/v2/health/ready": _readiness("server readiness", {"type": "object"}),
        "/v2": _get("server metadata", {"type": "object"}),
        "/metrics": _get("Prometheus metrics", {"type": "string"}, text=True),
        "/v1/models": _get("the served models", {"type": "object"}),
        PATH: _get("this description", {"type": "object"}),
        f"/v2/models/{name}": _get("model metadata", model, 503),
        f"/v2/models/{name}/ready": _readiness("model readiness", ready),
        f"/v2/models/{name}/infer": _post("V2 inference", "InferenceRequest", "InferenceResponse"),
        f"/v1/models/{name}": _readiness("model readiness (V1)", ready),
        f"/v1/models/{name}:predict": _post("V1 prediction", "V1Request", "V1Response"),
        f"/v1/models/{name}:predict_proba": _post(
            "V1 prediction with probabilities", "V1Request", "V1Response"
        ),
        f"/v2/models/{name}/feedback": _feedback,
        f"/v1/models/{name}:feedback": _feedback,
    }
    if version is not None:
        versioned = f"/v2/models/{name}/versions/{version}"
        paths[versioned] = paths[f"/v2/models/{name}"]
        paths[f"{versioned}/ready"] = paths[f"/v2/models/{name}/ready"]
        paths[f"{versioned}/infer"] = paths[f"/v2/models/{name}/infer"]
        paths[f"{versioned}/feedback"] = _feedback
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"modelyard model server: {name}",
            "version": __version__,
            "description": "Open Inference Protocol (V2) and KServe V1 for one scikit-learn "
            'model. Bad requests get a 4xx with {"error": message}; never a 5xx.',
        },
        "paths": paths,
        "components": {"schemas": _schemas()},
    }


def _schemas() -> dict[str, Any]:
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": sorted(NUMERIC_DATATYPES | {BYTES})},
            "data": {"type": "array", "description": "flat, or nested rows"},
            "parameters": {"type": "object"},
        },
    }
    output = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "enum": list(OUTPUTS)}},
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "description": "what is wrong"}},
        },
        "ModelReady": {
            "type": "object",
            "required": ["name", "ready"],
            "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
        },
        "InferenceRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": _PARAMETERS,
                "inputs": {"type": "array", "minItems": 1, "items": tensor},
                "outputs": {"type": "array", "items": output},
            },
        },
        "InferenceResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"type": "object"}},
            },
        },
        "Feedback": {
            "type": "object",
            "required": ["id", "truth"],
            "properties": {
                "id": {
                    "type": "string",
                    "description": "the prediction's request id (its X-Request-Id)",
                },
                "truth": {
                    "type": "array",
                    "minItems": 1,
                    "description": "one true value per row of that request: class labels for "
                    "a classifier, numbers for a regressor",
                },
            },
        },
        "FeedbackAnswer": {
            "type": "object",
            "required": ["id", "matched"],
            "properties": {
                "id": {"type": "string"},
                "matched": {
                    "type": "boolean",
                    "description": "false: this process does not hold the prediction; the "
                    "operator relays the feedback to the deployment's other processes",
                },
            },
        },
        "V1Request": {
            "type": "object",
            "required": ["instances"],
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"oneOf": [{"type": "array"}, {"type": "object"}]},
                },
                "parameters": _PARAMETERS,
            },
        },
        "V1Response": {
            "type": "object",
            "required": ["model_name", "predictions"],
            "properties": {
                "model_name": {"type": "string"},
                "predictions": {"type": "array"},
                "probabilities": {"type": "array"},
                "classes": {"type": "array"},
            },
        },
    }
