"""What a namespace may ask of the operator: images it may run, storage it may read or write."""

from __future__ import annotations

import pytest

from modelyard.api.common import StorageSpec
from modelyard.config import ConfigError, OperatorConfig
from modelyard.policy import locations
from modelyard.policy.images import ImageReference, image_allowed

DEFAULT = "modelyard/trainer:0.1.0"
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("reference", "repository", "digest"),
    [
        ("modelyard/trainer:0.1.0", "modelyard/trainer", None),
        ("registry:5000/team/trainer", "registry:5000/team/trainer", None),
        ("registry:5000/team/trainer:1.2", "registry:5000/team/trainer", None),
        (f"registry.example/trainer@{DIGEST}", "registry.example/trainer", DIGEST),
        (f"registry.example/trainer:1@{DIGEST}", "registry.example/trainer", DIGEST),
    ],
)
def test_image_references_split_into_repository_and_digest(
    reference: str, repository: str, digest: str | None
) -> None:
    assert ImageReference.parse(reference) == ImageReference(repository, digest)


@pytest.mark.parametrize(
    ("image", "allowed", "expected"),
    [
        (DEFAULT, (), True),  # the operator's own image
        ("evil/trainer:1", (), False),  # off by default
        ("modelyard/trainer:latest", (), False),  # another tag of the default is another image
        ("registry.example/team/trainer:2", ("registry.example/team/trainer",), True),
        ("registry.example/team/trainer-evil:2", ("registry.example/team/trainer",), False),
        ("registry.example/team:2", ("registry.example/team/trainer",), False),
        (f"registry.example/t@{DIGEST}", (f"registry.example/t@{DIGEST}",), True),
        ("registry.example/t:1", (f"registry.example/t@{DIGEST}",), False),
        ("registry.example/t@sha256:" + "b" * 64, (f"registry.example/t@{DIGEST}",), False),
    ],
)
def test_spec_images_run_only_when_the_configuration_allows_them(
    image: str, allowed: tuple[str, ...], expected: bool
) -> None:
    assert image_allowed(image, (DEFAULT,), allowed) is expected


CONFIG = OperatorConfig(
    s3_bucket="modelyard",
    s3_prefix="prod",
    readable_locations=(("*", ("s3://lake/public/",)), ("team-a", ("s3://lake/team-a",))),
)
ROOTS = (locations.default_root(CONFIG),)


@pytest.mark.parametrize(
    ("uri", "namespace", "expected"),
    [
        ("s3://modelyard/prod/namespaces/team-a/uploads/x.csv", "team-a", True),
        ("s3://modelyard/prod/namespaces/team-b/datasets/d/v/data.parquet", "team-a", False),
        ("s3://modelyard/prod/namespaces/team-ab/x.csv", "team-a", False),
        ("s3://modelyard/prod/namespaces/", "team-a", False),
        ("s3://modelyard/other/x.csv", "team-a", False),
        ("s3://lake/public/x.csv", "team-b", True),
        ("s3://lake/publicity/x.csv", "team-b", False),
        ("s3://lake/team-a/x.csv", "team-a", True),
        ("s3://lake/team-a/x.csv", "team-b", False),
        ("s3://lake/team-ab/x.csv", "team-a", False),
        ("not a uri", "team-a", False),
    ],
)
def test_a_namespace_reads_its_own_prefix_and_the_locations_listed_for_it(
    uri: str, namespace: str, expected: bool
) -> None:
    assert locations.readable(uri, namespace, ROOTS, CONFIG) is expected


def test_no_listed_location_opens_another_namespaces_prefix() -> None:
    config = OperatorConfig(readable_locations=(("*", ("s3://modelyard/",)),))
    roots = (locations.default_root(config),)
    assert locations.readable("s3://modelyard/anything/x.csv", "a", roots, config)
    assert not locations.readable("s3://modelyard/namespaces/b/x.csv", "a", roots, config)
    refusal = locations.location_refusal(
        "spec.source.s3.uri", "s3://modelyard/namespaces/b/x.csv", "a", roots, config
    )
    assert refusal is not None and refusal.startswith("spec.source.s3.uri: ")
    assert "s3://modelyard/namespaces/a/" in refusal


def test_storage_overrides_that_move_artifacts_need_the_admins_consent() -> None:
    moved = StorageSpec(bucket="elsewhere", credentialsSecretRef={"name": "mine"})
    refusal = locations.storage_override_refusal(OperatorConfig(), moved)
    assert refusal is not None and "spec.storage.bucket" in refusal
    own_credentials = StorageSpec(credentialsSecretRef={"name": "mine"}, region="eu")
    assert locations.storage_override_refusal(OperatorConfig(), own_credentials) is None
    allowed = OperatorConfig(allow_storage_override=True)
    assert locations.storage_override_refusal(allowed, moved) is None
    assert str(locations.dataset_root(allowed, moved)) == "s3://elsewhere/"


def test_readable_locations_come_from_json_and_bad_json_is_refused_at_start() -> None:
    config = OperatorConfig.from_env(
        {"MODELYARD_READABLE_LOCATIONS": '{"*": ["s3://lake/public/"], "a": ["s3://x/"]}'}
    )
    assert config.locations_readable_by("a") == ("s3://lake/public/", "s3://x/")
    assert config.locations_readable_by("b") == ("s3://lake/public/",)
    with pytest.raises(ConfigError, match="MODELYARD_READABLE_LOCATIONS"):
        OperatorConfig.from_env({"MODELYARD_READABLE_LOCATIONS": '{"a": "s3://x/"}'})
    with pytest.raises(ConfigError, match="MODELYARD_HTTP_ALLOWED_NETWORKS"):
        OperatorConfig.from_env({"MODELYARD_HTTP_ALLOWED_NETWORKS": "10.0.0.0/33"})
    with pytest.raises(ConfigError, match="MODELYARD_WORKLOAD_TOLERATIONS"):
        OperatorConfig.from_env({"MODELYARD_WORKLOAD_TOLERATIONS": '{"key": "x"}'})
