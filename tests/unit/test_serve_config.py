"""Server settings: flags over environment, the card found beside the model, clear refusals."""

from __future__ import annotations

import pytest

from modelyard.storage.uri import S3Uri
from modelyard.workloads.serving.config import parse


def test_the_card_is_read_beside_the_model_file() -> None:
    config = parse(["--model-uri", "s3://models/default/iris/run-1/model.joblib"], env={})
    assert config.model_uri == S3Uri("models", "default/iris/run-1/model.joblib")
    assert config.card_uri == S3Uri("models", "default/iris/run-1/model.json")


def test_a_directory_uri_means_its_model_file() -> None:
    config = parse(["--model-uri", "s3://models/default/iris/run-1/"], env={})
    assert config.model_uri == S3Uri("models", "default/iris/run-1/model.joblib")


def test_the_environment_configures_a_pod_and_flags_override_it() -> None:
    env = {
        "MODELYARD_MODEL_URI": "s3://models/a/model.joblib",
        "MODELYARD_MODEL_DIGEST": "sha256:" + "a" * 64,
        "MODELYARD_PORT": "9000",
        "MODELYARD_WORKERS": "2",
    }
    config = parse([], env=env)
    assert (config.port, config.workers, config.expected_digest) == (
        9000,
        2,
        env["MODELYARD_MODEL_DIGEST"],
    )
    assert config.name is None and config.host == "0.0.0.0"
    assert parse(["--port", "8081", "--name", "flower"], env=env).port == 8081


def test_the_limits_under_abuse_have_defaults_and_settings() -> None:
    model = ["--model-uri", "s3://models/a/model.joblib"]
    config = parse(model, env={})
    assert (
        config.max_connections,
        config.max_inflight_bytes,
        config.max_queued_requests,
        config.write_seconds,
    ) == (1024, 64 * 2**20, 4096, 60.0)
    env = {
        "MODELYARD_MAX_CONNECTIONS": "10",
        "MODELYARD_MAX_INFLIGHT_BYTES": str(2**30),
        "MODELYARD_MAX_QUEUED_REQUESTS": "20",
        "MODELYARD_WRITE_SECONDS": "2.5",
    }
    config = parse(model, env=env)
    assert (
        config.max_connections,
        config.max_inflight_bytes,
        config.max_queued_requests,
        config.write_seconds,
    ) == (10, 2**30, 20, 2.5)
    assert parse([*model, "--max-connections", "11"], env=env).max_connections == 11


def test_batching_is_on_by_default_and_set_by_flag_or_environment() -> None:
    model = ["--model-uri", "s3://models/a/model.joblib"]
    config = parse(model, env={})
    assert (config.batch_rows, config.batch_wait_seconds) == (256, 0.0)
    env = {"MODELYARD_BATCH_ROWS": "1", "MODELYARD_BATCH_WAIT_MS": "2.5"}
    assert (parse(model, env=env).batch_rows, parse(model, env=env).batch_wait_seconds) == (
        1,
        0.0025,
    )
    assert parse([*model, "--batch-rows", "64"], env=env).batch_rows == 64


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "no model: pass --model-uri or set MODELYARD_MODEL_URI"),
        (["--model-uri", "gs://x/model.joblib"], {}, "expected s3://bucket/key"),
        (
            ["--model-uri", "s3://models/model.joblib", "--model-digest", "md5:1"],
            {},
            "sha256:<hex>",
        ),
        (["--model-uri", "s3://models/model.joblib", "--workers", "0"], {}, "at least 1"),
        (
            ["--model-uri", "s3://models/model.joblib", "--workers", "2", "--port", "0"],
            {},
            "needs a fixed --port",
        ),
        (["--model-uri", "s3://models/model.joblib"], {"MODELYARD_PORT": "http"}, "MODELYARD_PORT"),
        (
            ["--model-uri", "s3://models/model.joblib", "--max-connections", "0"],
            {},
            "--max-connections 0: must be positive",
        ),
        (
            ["--model-uri", "s3://models/model.joblib", "--write-seconds", "0"],
            {},
            "--write-seconds 0.0: must be positive",
        ),
        (
            ["--model-uri", "s3://models/model.joblib", "--max-inflight-bytes", "1000"],
            {},
            "must be at least --max-body-bytes",
        ),
        (
            ["--model-uri", "s3://models/model.joblib", "--batch-rows", "0"],
            {},
            "--batch-rows 0: must lie within 1-1024",
        ),
        (
            ["--model-uri", "s3://models/model.joblib"],
            {"MODELYARD_BATCH_ROWS": "4096"},
            "--batch-rows 4096: must lie within 1-1024",
        ),
        (
            ["--model-uri", "s3://models/model.joblib", "--batch-wait-ms", "-1"],
            {},
            "--batch-wait-ms -1.0: must lie within 0-1000",
        ),
        (
            ["--model-uri", "s3://models/model.joblib"],
            {"MODELYARD_BATCH_WAIT_MS": "soon"},
            "MODELYARD_BATCH_WAIT_MS='soon': expected a number",
        ),
    ],
)
def test_bad_settings_are_refused_by_name(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    # UsageError, or InvalidUri for URIs: both ValueErrors the command reports as usage errors.
    with pytest.raises(ValueError) as refused:
        parse(argv, env=env)
    assert message in str(refused.value)
