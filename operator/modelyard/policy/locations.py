"""Which S3 locations a namespace may read and write through the operator.

Everything a namespace's workloads write lives under its own prefix (storage/layout.py). A
Dataset's s3 source and a ModelDeployment's model URI must lie there too, or in a location the
cluster admin lists for that namespace; nothing under another namespace's prefix is ever
readable, whatever the list says. A Dataset may move its artifacts to another endpoint, bucket or
prefix only when the admin allows overrides: with shared credentials, a prefix of its choosing
could otherwise land inside another namespace's."""

from __future__ import annotations

from modelyard.api.common import StorageSpec
from modelyard.config import OperatorConfig
from modelyard.storage import layout
from modelyard.storage.uri import InvalidUri, S3Uri


def root(bucket: str, prefix: str) -> S3Uri:
    prefix = prefix.strip("/")
    return S3Uri(bucket, f"{prefix}/" if prefix else "")


def default_root(config: OperatorConfig) -> S3Uri:
    return root(config.s3_bucket, config.s3_prefix)


def dataset_root(config: OperatorConfig, storage: StorageSpec | None) -> S3Uri:
    """The root a Dataset's versions (and the models trained on them) are written under."""
    if storage is None:
        return default_root(config)
    return root(storage.bucket or config.s3_bucket, storage.prefix or config.s3_prefix)


def storage_override_refusal(config: OperatorConfig, storage: StorageSpec | None) -> str | None:
    """Why a Dataset's spec.storage may not be used, or None when it may."""
    if storage is None or config.allow_storage_override:
        return None
    moved = [
        f"spec.storage.{field}"
        for field, value in (
            ("endpoint", storage.endpoint),
            ("bucket", storage.bucket),
            ("prefix", storage.prefix),
        )
        if value is not None
    ]
    if not moved:
        return None
    return (
        f"{', '.join(moved)}: this operator keeps every namespace's artifacts in its own "
        "storage (storage.allowOverride is off); remove the field, or ask the cluster admin"
    )


def readable(uri: str, namespace: str, roots: tuple[S3Uri, ...], config: OperatorConfig) -> bool:
    """Whether `namespace` may read `uri`: under its own prefix in one of `roots` (the default
    root and its Dataset's), or in a location configured for it, never under another
    namespace's prefix."""
    try:
        target = S3Uri.parse(uri)
    except InvalidUri:
        return False
    for storage_root in roots:
        if layout.is_within(target, storage_root.join(layout.NAMESPACES)):
            return layout.is_within(target, layout.namespace_root(storage_root, namespace))
    return any(
        layout.is_within(target, S3Uri.parse(location))
        for location in config.locations_readable_by(namespace)
    )


def location_refusal(
    field: str, uri: str, namespace: str, roots: tuple[S3Uri, ...], config: OperatorConfig
) -> str | None:
    """Why `namespace` may not read `uri` (named by `field`), or None when it may."""
    if readable(uri, namespace, roots, config):
        return None
    own = " or ".join(str(layout.namespace_root(r, namespace)) for r in roots)
    return (
        f"{field}: {uri} is outside this namespace's storage ({own}) and the locations the "
        "operator allows it to read (storage.readableLocations)"
    )
