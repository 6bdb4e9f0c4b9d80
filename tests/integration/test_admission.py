"""The generated CRDs on a real API server: bad objects are refused at admission, naming the
field; defaults, pruning, printer columns and `kubectl explain` work as users expect."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelyard.api import GROUP, KINDS, VERSION, Dataset
from modelyard.manifests import parse
from tests.conftest import PLURALS
from tests.invalid_manifests import (
    ALLOWED_CHANGES,
    CATALOGUE,
    DATASET,
    IMMUTABLE_CHANGES,
    MODEL_DEPLOYMENT,
    TRAINING_JOB,
    Change,
    Invalid,
)
from tests.plugins.kube import Cluster, kubectl_binary

pytestmark = pytest.mark.integration


@pytest.fixture
def custom(crds: Cluster) -> Iterator[client.CustomObjectsApi]:
    with crds.api_client() as api:
        yield client.CustomObjectsApi(api)


def _create(
    custom: client.CustomObjectsApi, namespace: str, document: dict[str, Any], **options: Any
) -> dict[str, Any]:
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURALS[document["kind"]],
        document,
        field_validation="Strict",
        **options,
    )
    return created


# A server-side dry run passes the same schema, rules and admission as a real create but stores
# nothing, so every refused create can share one namespace (no setup per case), and a case
# that wrongly passes leaves nothing behind.
@pytest.mark.parametrize("case", CATALOGUE, ids=lambda case: case.id)
def test_invalid_object_is_refused_at_admission_naming_the_field(
    custom: client.CustomObjectsApi, case: Invalid
) -> None:
    with pytest.raises(ApiException) as refused:
        _create(custom, "default", case.document, dry_run="All")
    assert refused.value.status == 422, refused.value.body
    body = str(refused.value.body)
    assert f"{case.field}:" in body, body
    assert (case.server_message or case.message).lower() in body.lower(), body


def test_unknown_field_is_refused_by_name(custom: client.CustomObjectsApi, namespace: str) -> None:
    document = {**DATASET, "spec": {**DATASET["spec"], "traget": "species"}}
    with pytest.raises(ApiException) as refused:
        _create(custom, namespace, document)
    assert refused.value.status == 400
    message = json.loads(refused.value.body)["message"]
    assert 'unknown field "spec.traget"' in message


def _patch(
    custom: client.CustomObjectsApi, namespace: str, document: dict[str, Any], patch: Any
) -> dict[str, Any]:
    """A JSON merge patch, as `kubectl patch --type=merge` sends it."""
    patched: dict[str, Any] = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURALS[document["kind"]],
        document["metadata"]["name"],
        patch,
    )
    return patched


@pytest.mark.parametrize("case", IMMUTABLE_CHANGES, ids=lambda case: case.id)
def test_change_to_an_immutable_field_is_refused_naming_the_field(
    custom: client.CustomObjectsApi, namespace: str, case: Change
) -> None:
    _create(custom, namespace, case.document)
    with pytest.raises(ApiException) as refused:
        _patch(custom, namespace, case.document, case.patch)
    assert refused.value.status == 422, refused.value.body
    body = str(refused.value.body)
    assert f"{case.field}: Invalid value" in body, body
    assert case.message in body, body


@pytest.mark.parametrize("case", ALLOWED_CHANGES, ids=lambda case: case.id)
def test_change_to_a_mutable_field_is_accepted(
    custom: client.CustomObjectsApi, namespace: str, case: Change
) -> None:
    _create(custom, namespace, case.document)
    patched = _patch(custom, namespace, case.document, case.patch)
    expected = parse(case.changed()).to_dict()
    assert patched["spec"] == expected["spec"]
    annotations = expected["metadata"].get("annotations", {})
    assert annotations.items() <= patched["metadata"].get("annotations", {}).items()


def test_server_defaults_match_the_models(custom: client.CustomObjectsApi, namespace: str) -> None:
    created = _create(custom, namespace, DATASET)
    assert created["spec"]["split"] == {"testFraction": 0.2, "seed": 42, "stratify": True}
    assert created["spec"] == Dataset.model_validate(DATASET).to_dict()["spec"]


def test_explicit_nulls_are_pruned_so_rules_see_them_absent(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    document = {
        **MODEL_DEPLOYMENT,
        "spec": {
            "model": {"trainingJobRef": {"name": "t", "run": None}, "uri": None, "digest": None}
        },
    }
    created = _create(custom, namespace, document)
    assert created["spec"]["model"] == {"trainingJobRef": {"name": "t"}}


@pytest.fixture
def kubectl(crds: Cluster) -> Iterator[list[str]]:
    yield [kubectl_binary(), f"--kubeconfig={crds.kubeconfig}"]


def test_kubectl_explain_prints_the_field_docs(kubectl: list[str]) -> None:
    # Discovery of new CRDs reaches kubectl's cache a moment after they are Established.
    output = ""
    for _ in range(20):
        result = subprocess.run(
            [*kubectl, "explain", "dataset.spec"], capture_output=True, text=True, check=False
        )
        output = result.stdout
        if result.returncode == 0:
            break
    assert "The label column to predict" in output
    assert "exactly one of s3, http, sql, api or builtin" in output


def test_kubectl_get_category_lists_all_kinds_with_columns(
    kubectl: list[str], custom: client.CustomObjectsApi, namespace: str
) -> None:
    for document in (DATASET, TRAINING_JOB, MODEL_DEPLOYMENT):
        _create(custom, namespace, document)
    result = subprocess.run(
        [*kubectl, "get", "modelyard", "-n", namespace],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    assert "dataset.modelyard.dev/bad" in result.stdout
    assert "trainingjob.modelyard.dev/bad" in result.stdout
    assert "modeldeployment.modelyard.dev/bad" in result.stdout
    header = result.stdout.splitlines()[0].split()
    assert header[:3] == ["NAME", "READY", "PHASE"] and header[-1] == "AGE"


def test_short_names_are_ours_alone_in_discovery(kubectl: list[str]) -> None:
    """`kubectl get dset|tj|mdep` can only mean our kinds: no built-in resource (nor any other
    installed) answers to those names, and none of ours takes a built-in's (`ds` is DaemonSet)."""

    def discover(path: str) -> Any:
        raw = subprocess.run([*kubectl, "get", "--raw", path], capture_output=True, check=True)
        return json.loads(raw.stdout)

    groups = discover("/apis")["groups"]
    paths = ["/api/v1"] + [f"/apis/{g['preferredVersion']['groupVersion']}" for g in groups]
    owners: dict[str, set[str]] = {}
    for path in paths:
        found = discover(path)
        group = found["groupVersion"].rpartition("/")[0] or "core"
        for resource in found["resources"]:
            if "/" in resource["name"]:
                continue  # a subresource
            for name in [resource["name"], resource.get("singularName") or ""] + (
                resource.get("shortNames") or []
            ):
                owners.setdefault(name, set()).add(group)
    assert owners["ds"] == {"apps"}, "ds is DaemonSet's"
    for kind in KINDS:
        for name in (*kind.info.short_names, kind.info.plural, kind.info.singular):
            assert owners.get(name) == {GROUP}, f"{name}: {owners.get(name)}"
