"""The operator's settings, from environment variables that the Helm chart sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from modelyard import __version__

DEFAULT_IMAGE_REPOSITORY = "modelyard"


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    trainer_image: str = f"{DEFAULT_IMAGE_REPOSITORY}/trainer:{__version__}"
    server_image: str = f"{DEFAULT_IMAGE_REPOSITORY}/server:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    # Default storage; a Dataset's spec.storage overrides field by field.
    s3_endpoint: str | None = None
    s3_bucket: str = "modelyard"
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    s3_credentials_secret: str | None = None
    # Default container resources for workloads that don't set their own.
    workload_cpu_request: str = "100m"
    workload_memory_request: str = "256Mi"
    workload_memory_limit: str = "2Gi"
    job_ttl_seconds: int = 86400
    # Where workload pods (ingest, train, serve) may run, e.g. {"pool": "ml"}.
    workload_node_selector: tuple[tuple[str, str], ...] = ()
    metrics_port: int = 8000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        defaults = cls()

        def get(name: str, default: str) -> str:
            return env.get(f"MODELYARD_{name}", "") or default

        def split(name: str) -> tuple[str, ...]:
            return tuple(
                item.strip() for item in env.get(f"MODELYARD_{name}", "").split(",") if item.strip()
            )

        return cls(
            namespaces=split("NAMESPACES"),
            trainer_image=get("TRAINER_IMAGE", defaults.trainer_image),
            server_image=get("SERVER_IMAGE", defaults.server_image),
            image_pull_policy=get("IMAGE_PULL_POLICY", defaults.image_pull_policy),
            image_pull_secrets=split("IMAGE_PULL_SECRETS"),
            s3_endpoint=env.get("MODELYARD_S3_ENDPOINT") or None,
            s3_bucket=get("S3_BUCKET", defaults.s3_bucket),
            s3_prefix=get("S3_PREFIX", defaults.s3_prefix).strip("/"),
            s3_region=get("S3_REGION", defaults.s3_region),
            s3_credentials_secret=env.get("MODELYARD_S3_CREDENTIALS_SECRET") or None,
            workload_cpu_request=get("WORKLOAD_CPU_REQUEST", defaults.workload_cpu_request),
            workload_memory_request=get(
                "WORKLOAD_MEMORY_REQUEST", defaults.workload_memory_request
            ),
            workload_memory_limit=get("WORKLOAD_MEMORY_LIMIT", defaults.workload_memory_limit),
            job_ttl_seconds=int(get("JOB_TTL_SECONDS", str(defaults.job_ttl_seconds))),
            workload_node_selector=tuple(
                (key.strip(), value.strip())
                for key, _, value in (
                    item.partition("=") for item in split("WORKLOAD_NODE_SELECTOR")
                )
            ),
            metrics_port=int(get("METRICS_PORT", str(defaults.metrics_port))),
        )
