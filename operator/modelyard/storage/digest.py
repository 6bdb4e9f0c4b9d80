"""Content digests in the `sha256:<hex>` form used by versions and model files."""

from __future__ import annotations

import hashlib
from pathlib import Path

PREFIX = "sha256:"
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            hasher.update(chunk)
    return PREFIX + hasher.hexdigest()


def bytes_digest(data: bytes) -> str:
    return PREFIX + hashlib.sha256(data).hexdigest()


def short(digest: str, length: int = 12) -> str:
    """The first hex characters, for names that must stay short (Job names, directories)."""
    return digest.removeprefix(PREFIX)[:length]
