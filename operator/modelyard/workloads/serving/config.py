"""The server's settings, from flags first and the pod's environment second."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from modelyard.monitoring import token
from modelyard.storage import layout
from modelyard.storage.uri import S3Uri

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
# Worker i of --workers N answers the operator on this port + i (monitor.py).
DEFAULT_MONITOR_PORT = 9090
# Predictions kept by request id for feedback, and labelled rows the live metric spans.
DEFAULT_REMEMBER_ROWS = 100_000
DEFAULT_FEEDBACK_WINDOW = 10_000
DEFAULT_DRIFT_WINDOW = 1000
DEFAULT_DRAIN_SECONDS = 25.0  # under Kubernetes' default 30 s terminationGracePeriodSeconds
# A request must arrive whole within this, and a new connection must start one within it, so
# slow trickles (slow-loris) cannot hold connections forever.
DEFAULT_REQUEST_SECONDS = 60.0
# What abusive clients can make one server process hold (docs/serving.md, "Limits under abuse").
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_QUEUED_REQUESTS = 4096
# A client that reads none of its answers for this long is cut off (nginx's send_timeout).
DEFAULT_WRITE_SECONDS = 60.0
# Adaptive batching (batching.py): rows one model call takes at most (1: batching off), and how
# long the first request of a batch waits for more (0: only those read in the same turn of the
# event loop, so a lone request waits for nothing).
DEFAULT_BATCH_ROWS = 256
DEFAULT_BATCH_WAIT_SECONDS = 0.0
MAX_BATCH_WAIT_MS = 1000.0
# Above this many rows a prediction leaves the event loop for a thread (app.py), and so does
# no batch: a batch runs on the loop.
INLINE_ROWS = 1024


@dataclass(frozen=True)
class ServeConfig:
    model_uri: S3Uri
    card_uri: S3Uri
    manifest_uri: S3Uri
    expected_digest: str | None
    expected_card_digest: str | None
    name: str | None  # None: the card's name, known once the card is read
    host: str
    port: int
    workers: int
    max_body_bytes: int
    drift_window: int
    drain_seconds: float
    request_seconds: float = DEFAULT_REQUEST_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    max_queued_requests: int = DEFAULT_MAX_QUEUED_REQUESTS
    write_seconds: float = DEFAULT_WRITE_SECONDS
    batch_rows: int = DEFAULT_BATCH_ROWS
    batch_wait_seconds: float = DEFAULT_BATCH_WAIT_SECONDS
    monitor_port: int = DEFAULT_MONITOR_PORT
    remember_rows: int = DEFAULT_REMEMBER_ROWS
    feedback_window: int = DEFAULT_FEEDBACK_WINDOW
    # Required as `Authorization: Bearer <token>` on the monitoring port when set. From the
    # environment only: a flag's value would show in every `ps` on the node.
    monitor_token: str | None = None

    def monitor_port_of(self, worker: int) -> int:
        """The monitoring port of worker `worker` (0 for a single process)."""
        return self.monitor_port + worker


class UsageError(ValueError):
    """Bad flags or environment; the message names the setting."""


Number = TypeVar("Number", int, float)


def _number(
    env: Mapping[str, str], name: str, default: Number, kind: Callable[[str], Number]
) -> Number:
    text = env.get(name)
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{name}={text!r}: expected a number") from None


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> ServeConfig:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="modelyard-worker serve",
        description="Serve a scikit-learn model over the Open Inference Protocol (V2) and "
        "KServe V1.",
    )
    parser.add_argument(
        "--model-uri",
        default=env.get("MODELYARD_MODEL_URI"),
        help="s3://…/model.joblib, or its directory; model.json is read beside it "
        "[env MODELYARD_MODEL_URI]",
    )
    parser.add_argument(
        "--model-digest",
        default=env.get("MODELYARD_MODEL_DIGEST") or None,
        help="sha256:<hex> the model file must have, on top of the card's digest "
        "[env MODELYARD_MODEL_DIGEST]",
    )
    parser.add_argument(
        "--card-digest",
        default=env.get("MODELYARD_MODEL_CARD_DIGEST") or None,
        help="sha256:<hex> the model card (model.json) must have before it is read "
        "[env MODELYARD_MODEL_CARD_DIGEST]",
    )
    parser.add_argument(
        "--name",
        default=env.get("MODELYARD_MODEL_NAME") or None,
        help="model name in the URLs (default: the card's name) [env MODELYARD_MODEL_NAME]",
    )
    parser.add_argument("--host", default=env.get("MODELYARD_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=_number(env, "MODELYARD_PORT", 8080, int))
    parser.add_argument(
        "--workers",
        type=int,
        default=_number(env, "MODELYARD_WORKERS", 1, int),
        help="server processes sharing the port through SO_REUSEPORT [env MODELYARD_WORKERS]",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=_number(env, "MODELYARD_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, int),
        help="larger request bodies get 413 [env MODELYARD_MAX_BODY_BYTES]",
    )
    parser.add_argument(
        "--drift-window",
        type=int,
        default=_number(env, "MODELYARD_DRIFT_WINDOW", DEFAULT_DRIFT_WINDOW, int),
        help="recent input rows compared with the training baseline [env MODELYARD_DRIFT_WINDOW]",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=_number(env, "MODELYARD_DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS, float),
        help="on SIGTERM, how long in-flight requests may take to finish",
    )
    parser.add_argument(
        "--request-seconds",
        type=float,
        default=_number(env, "MODELYARD_REQUEST_SECONDS", DEFAULT_REQUEST_SECONDS, float),
        help="a request must arrive whole within this (slow-loris guard); a new connection "
        "must start one within it too [env MODELYARD_REQUEST_SECONDS]",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=_number(env, "MODELYARD_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, int),
        help="open connections per process; more are answered 503 and closed "
        "[env MODELYARD_MAX_CONNECTIONS]",
    )
    parser.add_argument(
        "--max-inflight-bytes",
        type=int,
        default=_number(env, "MODELYARD_MAX_INFLIGHT_BYTES", DEFAULT_MAX_INFLIGHT_BYTES, int),
        help="bytes of requests in progress per process (bodies, queued requests, answers not "
        "yet read); bodies past it get 503 [env MODELYARD_MAX_INFLIGHT_BYTES]",
    )
    parser.add_argument(
        "--max-queued-requests",
        type=int,
        default=_number(env, "MODELYARD_MAX_QUEUED_REQUESTS", DEFAULT_MAX_QUEUED_REQUESTS, int),
        help="pipelined requests waiting per process; more get 503 "
        "[env MODELYARD_MAX_QUEUED_REQUESTS]",
    )
    parser.add_argument(
        "--write-seconds",
        type=float,
        default=_number(env, "MODELYARD_WRITE_SECONDS", DEFAULT_WRITE_SECONDS, float),
        help="a client that reads none of its answers for this long is cut off "
        "[env MODELYARD_WRITE_SECONDS]",
    )
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=_number(env, "MODELYARD_BATCH_ROWS", DEFAULT_BATCH_ROWS, int),
        help="adaptive batching: small predictions that queue together are predicted in one "
        "model call of up to this many rows; 1 turns batching off [env MODELYARD_BATCH_ROWS]",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=_number(env, "MODELYARD_BATCH_WAIT_MS", DEFAULT_BATCH_WAIT_SECONDS * 1000, float),
        help="how long the first prediction of a batch waits for others; 0 takes only those "
        "already read, so a lone request never waits [env MODELYARD_BATCH_WAIT_MS]",
    )
    parser.add_argument(
        "--monitor-port",
        type=int,
        default=_number(env, "MODELYARD_MONITOR_PORT", DEFAULT_MONITOR_PORT, int),
        help="each process answers the operator's POST /monitoring/collect and "
        "/monitoring/feedback on this port + its worker index [env MODELYARD_MONITOR_PORT]; "
        f"with {token.ENV} set, only requests bearing that token",
    )
    parser.add_argument(
        "--remember-rows",
        type=int,
        default=_number(env, "MODELYARD_REMEMBER_ROWS", DEFAULT_REMEMBER_ROWS, int),
        help="rows of recent predictions each process keeps by request id for feedback "
        "[env MODELYARD_REMEMBER_ROWS]",
    )
    parser.add_argument(
        "--feedback-window",
        type=int,
        default=_number(env, "MODELYARD_FEEDBACK_WINDOW", DEFAULT_FEEDBACK_WINDOW, int),
        help="last labelled rows the live metric is computed over [env MODELYARD_FEEDBACK_WINDOW]",
    )
    args = parser.parse_args(list(argv))

    if not args.model_uri:
        raise UsageError("no model: pass --model-uri or set MODELYARD_MODEL_URI")
    model_uri = S3Uri.parse(args.model_uri)
    if model_uri.is_prefix:
        model_uri = model_uri.join(layout.MODEL_FILE)
    directory, _, _ = model_uri.key.rpartition("/")
    card_uri = S3Uri(model_uri.bucket, directory).join(layout.MODEL_CARD)
    manifest_uri = S3Uri(model_uri.bucket, directory).join(layout.MANIFEST)

    for flag, digest in (
        ("--model-digest", args.model_digest),
        ("--card-digest", args.card_digest),
    ):
        if digest is not None and not digest.startswith("sha256:"):
            raise UsageError(f"{flag} {digest!r}: expected sha256:<hex>")
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: must be at least 1")
    if args.workers > 1 and args.port == 0:
        raise UsageError("--workers > 1 needs a fixed --port: each worker binds it")
    if args.max_body_bytes < 1:
        raise UsageError(f"--max-body-bytes {args.max_body_bytes}: must be positive")
    if args.request_seconds <= 0:
        raise UsageError(f"--request-seconds {args.request_seconds}: must be positive")
    for flag, value in (
        ("--max-connections", args.max_connections),
        ("--max-queued-requests", args.max_queued_requests),
        ("--write-seconds", args.write_seconds),
    ):
        if value <= 0:
            raise UsageError(f"{flag} {value}: must be positive")
    if args.max_inflight_bytes < args.max_body_bytes:
        raise UsageError(
            f"--max-inflight-bytes {args.max_inflight_bytes}: must be at least --max-body-bytes "
            f"({args.max_body_bytes}), or no body that large could ever be read"
        )
    if not 1 <= args.batch_rows <= INLINE_ROWS:
        raise UsageError(
            f"--batch-rows {args.batch_rows}: must lie within 1-{INLINE_ROWS} (larger requests "
            "are predicted on a thread of their own)"
        )
    if not 0 <= args.batch_wait_ms <= MAX_BATCH_WAIT_MS:
        raise UsageError(
            f"--batch-wait-ms {args.batch_wait_ms}: must lie within 0-{MAX_BATCH_WAIT_MS}"
        )
    if args.drift_window < 1:
        raise UsageError(f"--drift-window {args.drift_window}: must be positive")
    for flag, value in (
        ("--remember-rows", args.remember_rows),
        ("--feedback-window", args.feedback_window),
    ):
        if value < 1:
            raise UsageError(f"{flag} {value}: must be positive")
    last_monitor_port = args.monitor_port + args.workers - 1
    if args.monitor_port < 1 or last_monitor_port > 65535:
        raise UsageError(
            f"--monitor-port {args.monitor_port}: with {args.workers} worker(s) the ports "
            f"{args.monitor_port}-{last_monitor_port} must lie within 1-65535"
        )
    if args.monitor_port <= args.port <= last_monitor_port:
        raise UsageError(
            f"--monitor-port {args.monitor_port}: the monitoring ports "
            f"{args.monitor_port}-{last_monitor_port} include the serving --port {args.port}"
        )
    return ServeConfig(
        model_uri=model_uri,
        card_uri=card_uri,
        manifest_uri=manifest_uri,
        expected_digest=args.model_digest,
        expected_card_digest=args.card_digest,
        name=args.name,
        host=args.host,
        port=args.port,
        workers=args.workers,
        max_body_bytes=args.max_body_bytes,
        drift_window=args.drift_window,
        drain_seconds=args.drain_seconds,
        request_seconds=args.request_seconds,
        max_connections=args.max_connections,
        max_inflight_bytes=args.max_inflight_bytes,
        max_queued_requests=args.max_queued_requests,
        write_seconds=args.write_seconds,
        batch_rows=args.batch_rows,
        batch_wait_seconds=args.batch_wait_ms / 1000,
        monitor_port=args.monitor_port,
        remember_rows=args.remember_rows,
        feedback_window=args.feedback_window,
        monitor_token=env.get(token.ENV) or None,
    )
