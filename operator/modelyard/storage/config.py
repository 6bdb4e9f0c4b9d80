"""Where the S3-compatible store is and how to reach it, from the standard environment.

Credentials are never part of this object: boto3 reads AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (mounted from a Secret in-cluster) itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from modelyard.storage.uri import S3Uri


@dataclass(frozen=True)
class StorageConfig:
    endpoint: str | None = None  # None means AWS itself
    region: str = "us-east-1"
    bucket: str = "modelyard"
    prefix: str = ""
    path_style: bool = True  # MinIO, SeaweedFS and moto want path-style addressing
    # Attempts per S3 call (botocore's standard retry mode, backoff with jitter) before a
    # workload gives up with StorageUnavailable and the Job's backoffLimit takes over.
    max_attempts: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorageConfig:
        env = os.environ if env is None else env
        return cls(
            endpoint=env.get("MODELYARD_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            bucket=env.get("MODELYARD_S3_BUCKET", "modelyard"),
            prefix=env.get("MODELYARD_S3_PREFIX", "").strip("/"),
            path_style=env.get("MODELYARD_S3_PATH_STYLE", "true").lower() != "false",
            max_attempts=int(env.get("MODELYARD_S3_MAX_ATTEMPTS") or 5),
        )

    @property
    def root(self) -> S3Uri:
        return S3Uri(self.bucket, f"{self.prefix}/" if self.prefix else "")

    def override(self, **fields: str | None) -> StorageConfig:
        """This configuration with the given fields replaced, where they are set (spec.storage)."""
        changes = {name: value for name, value in fields.items() if value is not None}
        if "prefix" in changes:
            changes["prefix"] = str(changes["prefix"]).strip("/")
        return replace(self, **changes)  # type: ignore[arg-type]
