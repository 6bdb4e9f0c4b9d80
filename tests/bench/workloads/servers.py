"""The servers a benchmarked workload talks to: a loopback HTTP file server and S3."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from tests.plugins.s3 import S3Server

# HTTP sources may not reach loopback by default; a workload fetching from serving_directory's
# server needs this in its environment.
ALLOW_LOOPBACK = {"MODELYARD_HTTP_ALLOWED_NETWORKS": "127.0.0.1/32"}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not news in a benchmark."""


@contextmanager
def serving_directory(directory: Path) -> Iterator[str]:
    """An HTTP server on loopback for the files in `directory`; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


@contextmanager
def fresh_bucket(s3: S3Server) -> Iterator[dict[str, str]]:
    """A new bucket (so that nothing is reused from an earlier round), emptied afterwards."""
    env = s3.env(f"bench-{uuid.uuid4().hex[:10]}")
    storage = Storage(StorageConfig.from_env(env))
    storage.ensure_bucket(env["MODELYARD_S3_BUCKET"])
    try:
        yield env
    finally:
        # Free the server's disk: a full-size round leaves a 1.7 GB snapshot behind.
        client = storage.client
        bucket = env["MODELYARD_S3_BUCKET"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        with contextlib.suppress(ClientError):  # some servers list lazily; the bucket may stay
            client.delete_bucket(Bucket=bucket)
