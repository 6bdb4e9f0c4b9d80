"""The Secret of a sql or api source reaches the ingest container by reference, never by value."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from modelyard.api.dataset import DatasetSpec
from modelyard.api.sources import SOURCE_SECRET_ENV
from modelyard.config import OperatorConfig
from modelyard.resources.jobs import Owner, build_ingest_job, ingest_job_name

CONFIG = OperatorConfig(s3_endpoint="http://10.0.0.1:8333", s3_credentials_secret="s3-creds")
DATASET = Owner("Dataset", "orders", "ml", "uid-1")
# What the Secret would hold; the operator never reads it, so it cannot be in the manifest.
SECRET_VALUE = "postgresql://reader:s3cr3t@db.internal:5432/shop"


def _ingest(source: dict[str, Any]) -> dict[str, Any]:
    spec = DatasetSpec.model_validate({"source": source, "target": "label"})
    return build_ingest_job(
        DATASET,
        spec,
        ingest_job_name("orders", "uid-1", 1, ""),
        "s3://modelyard/namespaces/ml/datasets/orders/",
        CONFIG,
    )


def _env(job: dict[str, Any]) -> list[dict[str, Any]]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    env: list[dict[str, Any]] = container["env"]
    return env


@pytest.mark.parametrize(
    ("source", "ref"),
    [
        (
            {
                "sql": {
                    "query": "SELECT * FROM orders ORDER BY id",
                    "connectionSecretRef": {"name": "shop-db", "key": "uri"},
                }
            },
            {"name": "shop-db", "key": "uri"},
        ),
        (
            {
                "api": {
                    "url": "https://api.example.com/orders",
                    "headersSecretRef": {"name": "shop-api", "key": "headers"},
                }
            },
            {"name": "shop-api", "key": "headers"},
        ),
    ],
    ids=["sql", "api"],
)
def test_the_source_secret_is_one_env_var_by_secret_key_reference(
    source: dict[str, Any], ref: dict[str, str]
) -> None:
    job = _ingest(source)

    secret_env = [item for item in _env(job) if item["name"] == SOURCE_SECRET_ENV]
    assert secret_env == [{"name": SOURCE_SECRET_ENV, "valueFrom": {"secretKeyRef": ref}}]
    kubernetes_validate.validate(job, "1.34.0", strict=True)


def test_the_secret_value_is_never_in_the_manifest() -> None:
    job = _ingest(
        {
            "sql": {
                "query": "SELECT * FROM orders ORDER BY id",
                "connectionSecretRef": {"name": "shop-db", "key": "uri"},
            }
        }
    )

    text = json.dumps(job)
    assert "s3cr3t" not in text and SECRET_VALUE not in text
    spec_env = next(item for item in _env(job) if item["name"] == "MODELYARD_SPEC")
    assert json.loads(spec_env["value"])["source"]["sql"]["connectionSecretRef"] == {
        "name": "shop-db",
        "key": "uri",
    }


@pytest.mark.parametrize(
    "source",
    [
        {"builtin": {"name": "iris"}},
        {"s3": {"uri": "s3://modelyard/data.csv"}},
        {"http": {"url": "https://example.com/data.csv"}},
        {"api": {"url": "https://api.example.com/open"}},
    ],
    ids=["builtin", "s3", "http", "api-without-headers"],
)
def test_sources_without_a_secret_get_no_secret_env(source: dict[str, Any]) -> None:
    names = [item["name"] for item in _env(_ingest(source))]

    assert SOURCE_SECRET_ENV not in names
