"""The one place that knows where artifacts live in the bucket, and how versions are published.

    <root>/datasets/<namespace>/<name>/<version-hex>/data.parquet   normalized snapshot
                                                    /split.parquet  test-row indices
                                                    /manifest.json  written last
    <root>/models/<namespace>/<trainingjob>/<run>/model.joblib
                                                 /model.json        the model card
                                                 /manifest.json     written last

A version is published by writing its payload first and its manifest last; a reader that finds
no manifest treats the version as absent, so nobody ever sees a half-written version.
"""

from __future__ import annotations

from typing import Any

from modelyard.storage.client import ObjectNotFound, Storage
from modelyard.storage.digest import PREFIX
from modelyard.storage.uri import S3Uri

MANIFEST = "manifest.json"
DATA_FILE = "data.parquet"
SPLIT_FILE = "split.parquet"
MODEL_FILE = "model.joblib"
MODEL_CARD = "model.json"


def dataset_prefix(root: S3Uri, namespace: str, name: str, version: str) -> S3Uri:
    return root.join("datasets", namespace, name, version.removeprefix(PREFIX))


def model_prefix(root: S3Uri, namespace: str, training_job: str, run: str) -> S3Uri:
    return root.join("models", namespace, training_job, run)


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
