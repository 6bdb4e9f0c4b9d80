"""The operator's settings, from environment variables that the Helm chart sets."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from modelyard import __version__

DEFAULT_IMAGE_REPOSITORY = "modelyard"


class ConfigError(ValueError):
    """A setting the operator cannot start with; the message names the variable."""


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    trainer_image: str = f"{DEFAULT_IMAGE_REPOSITORY}/trainer:{__version__}"
    server_image: str = f"{DEFAULT_IMAGE_REPOSITORY}/server:{__version__}"
    router_image: str = f"{DEFAULT_IMAGE_REPOSITORY}/router:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    # Images a spec.image may name besides the two above: "repository" (any tag or digest) or
    # "repository@sha256:…" (that digest only). Empty: spec.image is refused unless it names
    # the default image, since any other image runs with the storage credentials.
    allowed_images: tuple[str, ...] = ()
    # Default storage; a Dataset's spec.storage overrides field by field.
    s3_endpoint: str | None = None
    s3_bucket: str = "modelyard"
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    s3_credentials_secret: str | None = None
    # Credentials for model servers, which only read: a Secret with read-only keys. Unset: the
    # credentials above.
    s3_serving_credentials_secret: str | None = None
    # Whether a Dataset's spec.storage may move its endpoint, bucket or prefix. Off: every
    # namespace's artifacts live under the operator's root, in the namespace's own prefix.
    allow_storage_override: bool = False
    # Extra S3 locations (URI prefixes) that Dataset sources and ModelDeployment model URIs of a
    # namespace may read, by namespace ("*": every namespace), beyond the namespace's own prefix.
    readable_locations: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Networks an http source may reach although private (passed to ingest pods), and extra
    # networks to refuse (cluster CIDRs outside the private ranges).
    http_allowed_networks: tuple[str, ...] = ()
    http_denied_networks: tuple[str, ...] = ()
    # Default container resources for workloads that don't set their own.
    workload_cpu_request: str = "100m"
    workload_memory_request: str = "256Mi"
    workload_cpu_limit: str = "1"
    workload_memory_limit: str = "2Gi"
    # Size of a workload's writable scratch space (/tmp), and its share of the node's disk.
    workload_tmp_size: str = "8Gi"
    ingest_deadline_seconds: int = 3600
    # Most candidates a hyperparameter search may fit (grid size, or random maxTrials).
    max_search_trials: int = 200
    job_ttl_seconds: int = 86400
    # Where workload pods (ingest, train, serve) may run, e.g. {"pool": "ml"}.
    workload_node_selector: tuple[tuple[str, str], ...] = ()
    # Pod tolerations and affinity for workload pods, as JSON (the chart renders its values).
    workload_tolerations: str = ""
    workload_affinity: str = ""
    metrics_port: int = 8000
    # Processes per model server pod (its --workers), each with a monitoring port of its own.
    server_workers: int = 1

    def locations_readable_by(self, namespace: str) -> tuple[str, ...]:
        """The configured extra locations for `namespace` (its own prefix is always readable)."""
        return tuple(
            location
            for key, locations in self.readable_locations
            if key in ("*", namespace)
            for location in locations
        )

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

        def number(name: str, default: int) -> int:
            text = get(name, str(default))
            try:
                return int(text)
            except ValueError:
                raise ConfigError(f"MODELYARD_{name}={text!r}: expected a whole number") from None

        return cls(
            namespaces=split("NAMESPACES"),
            trainer_image=get("TRAINER_IMAGE", defaults.trainer_image),
            server_image=get("SERVER_IMAGE", defaults.server_image),
            router_image=get("ROUTER_IMAGE", defaults.router_image),
            image_pull_policy=get("IMAGE_PULL_POLICY", defaults.image_pull_policy),
            image_pull_secrets=split("IMAGE_PULL_SECRETS"),
            allowed_images=split("ALLOWED_IMAGES"),
            s3_endpoint=env.get("MODELYARD_S3_ENDPOINT") or None,
            s3_bucket=get("S3_BUCKET", defaults.s3_bucket),
            s3_prefix=get("S3_PREFIX", defaults.s3_prefix).strip("/"),
            s3_region=get("S3_REGION", defaults.s3_region),
            s3_credentials_secret=env.get("MODELYARD_S3_CREDENTIALS_SECRET") or None,
            s3_serving_credentials_secret=(
                env.get("MODELYARD_S3_SERVING_CREDENTIALS_SECRET") or None
            ),
            allow_storage_override=get("ALLOW_STORAGE_OVERRIDE", "false").lower() == "true",
            readable_locations=_locations(env.get("MODELYARD_READABLE_LOCATIONS", "")),
            http_allowed_networks=_networks("HTTP_ALLOWED_NETWORKS", split),
            http_denied_networks=_networks("HTTP_DENIED_NETWORKS", split),
            workload_cpu_request=get("WORKLOAD_CPU_REQUEST", defaults.workload_cpu_request),
            workload_memory_request=get(
                "WORKLOAD_MEMORY_REQUEST", defaults.workload_memory_request
            ),
            workload_cpu_limit=get("WORKLOAD_CPU_LIMIT", defaults.workload_cpu_limit),
            workload_memory_limit=get("WORKLOAD_MEMORY_LIMIT", defaults.workload_memory_limit),
            workload_tmp_size=get("WORKLOAD_TMP_SIZE", defaults.workload_tmp_size),
            ingest_deadline_seconds=number(
                "INGEST_DEADLINE_SECONDS", defaults.ingest_deadline_seconds
            ),
            max_search_trials=number("MAX_SEARCH_TRIALS", defaults.max_search_trials),
            job_ttl_seconds=number("JOB_TTL_SECONDS", defaults.job_ttl_seconds),
            workload_node_selector=tuple(
                (key.strip(), value.strip())
                for key, _, value in (
                    item.partition("=") for item in split("WORKLOAD_NODE_SELECTOR")
                )
            ),
            workload_tolerations=_json_setting(env, "WORKLOAD_TOLERATIONS", list),
            workload_affinity=_json_setting(env, "WORKLOAD_AFFINITY", dict),
            metrics_port=number("METRICS_PORT", defaults.metrics_port),
            server_workers=_server_workers(number("SERVER_WORKERS", defaults.server_workers)),
        )


MAX_SERVER_WORKERS = 64


def _server_workers(workers: int) -> int:
    if not 1 <= workers <= MAX_SERVER_WORKERS:
        raise ConfigError(
            f"MODELYARD_SERVER_WORKERS={workers}: expected 1 to {MAX_SERVER_WORKERS} processes"
        )
    return workers


def _networks(name: str, split: Callable[[str], tuple[str, ...]]) -> tuple[str, ...]:
    """CIDRs, checked here so that a typo stops the operator, not every ingest pod."""
    networks = split(name)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as error:
            raise ConfigError(f"MODELYARD_{name}: {error}") from None
    return networks


def _json_setting(env: Mapping[str, str], name: str, kind: type) -> str:
    """A JSON-valued setting, checked at start-up and kept as its canonical text."""
    text = env.get(f"MODELYARD_{name}", "").strip()
    if not text:
        return ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"MODELYARD_{name}: not JSON: {error}") from None
    if not isinstance(value, kind):
        raise ConfigError(f"MODELYARD_{name}: expected a JSON {kind.__name__}")
    return "" if not value else json.dumps(value, sort_keys=True)


def _locations(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """MODELYARD_READABLE_LOCATIONS: a JSON object of namespace → list of s3:// prefixes."""
    if not text.strip():
        return ()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"MODELYARD_READABLE_LOCATIONS: not JSON: {error}") from None
    if not isinstance(document, dict) or not all(
        isinstance(locations, list)
        and all(isinstance(uri, str) and uri.startswith("s3://") for uri in locations)
        for locations in document.values()
    ):
        raise ConfigError(
            "MODELYARD_READABLE_LOCATIONS: expected {namespace: [s3://bucket/prefix/, …]}"
        )
    return tuple(
        (str(namespace), tuple(sorted(locations)))
        for namespace, locations in sorted(document.items())
    )
