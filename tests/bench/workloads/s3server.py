"""The benchmark's S3 server: versitygw's posix backend on loopback, a real S3 implementation.

The tests' moto server keeps every object in memory and assembles a multipart upload there,
which fails for the 1.7 GB snapshot of the 2 GiB CSV; versitygw writes objects and parts as
files and joins the parts with copy_file_range. `hack/bin-path.sh versitygw` builds it once
(Go module proxy, 1-3 minutes on two cores) and caches it under ~/.cache/modelyard/bin/.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.plugins.s3 import S3Server, running_versitygw


def given_server(endpoint: str) -> S3Server:
    """A server the user runs; its credentials come from this process's environment."""
    defaults = S3Server(endpoint)
    return S3Server(
        endpoint,
        os.environ.get("AWS_ACCESS_KEY_ID", defaults.access_key),
        os.environ.get("AWS_SECRET_ACCESS_KEY", defaults.secret_key),
        endpoint,
    )


@contextmanager
def bench_versitygw() -> Iterator[S3Server]:
    """versitygw on loopback with a temporary data directory, gone when the context ends."""
    with (
        tempfile.TemporaryDirectory(prefix="modelyard-s3-") as work,
        running_versitygw(Path(work) / "data") as server,
    ):
        yield server
