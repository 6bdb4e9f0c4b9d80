"""Publishing a version or a model: payload first, this manifest last; reading it back."""

from __future__ import annotations

from typing import Any

from modelyard.storage.client import ObjectNotFound, Storage
from modelyard.storage.layout import MANIFEST
from modelyard.storage.uri import S3Uri


def read_manifest(storage: Storage, prefix: S3Uri) -> dict[str, Any] | None:
    """The manifest of a published version, or None while it is absent or half-written."""
    try:
        manifest: dict[str, Any] = storage.get_json(prefix.join(MANIFEST))
    except ObjectNotFound:
        return None
    return manifest


def publish_manifest(storage: Storage, prefix: S3Uri, manifest: dict[str, Any]) -> S3Uri:
    """The last step of publishing: after this the version exists for every reader."""
    uri = prefix.join(MANIFEST)
    storage.put_json(uri, manifest)
    return uri
