"""How a workload gets its spec and storage settings: the same API models the operator uses."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from modelyard.api.common import StorageSpec
from modelyard.manifests import describe
from modelyard.reasons import Reason
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import InvalidUri, S3Uri
from modelyard.workloads.common.termination import EXIT_USAGE, WorkloadError

ModelT = TypeVar("ModelT", bound=BaseModel)


def load_spec(model: type[ModelT], source: str | None) -> ModelT:
    """The spec from a JSON/YAML file, stdin ('-') or $MODELYARD_SPEC, validated by `model`."""
    if source == "-":
        text = sys.stdin.read()
    elif source:
        text = Path(source).read_text()
    else:
        text = os.environ.get("MODELYARD_SPEC", "")
    if not text:
        raise WorkloadError(
            Reason.InvalidArguments, "no spec: pass --spec or set $MODELYARD_SPEC", EXIT_USAGE
        )
    try:
        return model.model_validate(yaml.safe_load(text))
    except ValidationError as error:
        raise WorkloadError(Reason.InvalidSpec, describe(error, "spec"), EXIT_USAGE) from None


def storage_config(storage: StorageSpec | None) -> StorageConfig:
    """The environment's storage settings with a spec's `storage` overrides applied."""
    config = StorageConfig.from_env()
    if storage is None:
        return config
    return config.override(
        endpoint=storage.endpoint,
        bucket=storage.bucket,
        prefix=storage.prefix,
        region=storage.region,
    )


def parse_uri(flag: str, value: str) -> S3Uri:
    """An s3:// argument, or a usage error naming the flag."""
    try:
        return S3Uri.parse(value)
    except InvalidUri as error:
        raise WorkloadError(Reason.InvalidArguments, f"{flag}: {error}", EXIT_USAGE) from None
