"""The checked-in CRDs match the models, are structural, and validate what the models validate."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelyard import apidocs, crds
from modelyard.api import KINDS
from tests.conftest import REPO, example_manifests
from tests.invalid_manifests import CATALOGUE, IMMUTABLE_CHANGES, Change, Invalid

CRD_DIR = REPO / "crds"
RENDERED = crds.render_all()
KUBERNETES_VERSION = "1.34.0"


def _schema(kind: str) -> dict[str, Any]:
    crd = next(yaml.safe_load(t) for t in RENDERED.values() if f"kind: {kind}\n" in t)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("directory", [CRD_DIR, REPO / "charts/modelyard/files/crds"])
def test_checked_in_crds_match_the_models(directory: Path) -> None:
    on_disk = {path.name: path.read_text() for path in sorted(directory.glob("*.yaml"))}
    assert on_disk == RENDERED, f"{directory} is stale: run `make crds` and commit the result"


@pytest.mark.parametrize("text", RENDERED.values(), ids=RENDERED.keys())
def test_crd_is_a_valid_customresourcedefinition(text: str) -> None:
    kubernetes_validate.validate(yaml.safe_load(text), KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("kind", [model.info.kind for model in KINDS])
def test_crd_schema_is_structural(kind: str) -> None:
    for path, node in _nodes(_schema(kind)):
        assert "$ref" not in node, path
        escape = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        assert "type" in node or escape, f"{path} has no type"
        assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), path
        assert not ("additionalProperties" in node and "properties" in node), path
        assert not node.get("uniqueItems"), path
        assert "nullable" not in node, f"{path}: nulls must be pruned, not stored"


@pytest.mark.parametrize("kind", [model.info.kind for model in KINDS])
def test_crd_names_short_names_and_category(kind: str) -> None:
    model = next(model for model in KINDS if model.info.kind == kind)
    crd = yaml.safe_load(RENDERED[crds.crd_filename(model)])
    names = crd["spec"]["names"]
    assert names["categories"] == ["modelyard"]
    assert names["shortNames"] == list(model.info.short_names)
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns[:2] == ["Ready", "Phase"] and columns[-1] == "Age"


def test_field_docs_become_descriptions() -> None:
    spec = _schema("Dataset")["properties"]["spec"]
    assert "label column" in spec["properties"]["target"]["description"]
    assert "exactly one of" in spec["properties"]["source"]["description"]


def test_cel_rules_are_emitted() -> None:
    source = _schema("Dataset")["properties"]["spec"]["properties"]["source"]
    assert source["x-kubernetes-validations"][0]["rule"].startswith("[has(self.s3)")
    ref = _schema("TrainingJob")["properties"]["spec"]["properties"]["datasetRef"]
    assert {"rule": "self.name == oldSelf.name"}.items() <= ref["x-kubernetes-validations"][
        0
    ].items()


def _openapi_validator(kind: str) -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 schema objects are Draft 4 in their bounds (boolean exclusiveMinimum).
    return jsonschema.Draft4Validator(_schema(kind))


@pytest.mark.parametrize(
    "document",
    [pytest.param(doc, id=f"{path.name}:{doc['kind']}") for path, doc in example_manifests()],
)
def test_examples_satisfy_the_crd_schema(document: dict[str, Any]) -> None:
    errors = list(_openapi_validator(document["kind"]).iter_errors(document))
    assert not errors, [error.message for error in errors]


@pytest.mark.parametrize(
    "case", [case for case in CATALOGUE if not case.cel], ids=lambda case: case.id
)
def test_schema_level_violations_fail_the_crd_schema(case: Invalid) -> None:
    assert list(_openapi_validator(case.document["kind"]).iter_errors(case.document)), case.id


def test_checked_in_api_reference_matches_the_models() -> None:
    assert (REPO / "docs" / "api.md").read_text() == apidocs.render_reference(), (
        "docs/api.md is stale: run `make crds` and commit the result"
    )


def _immutable_fields(kind: str) -> set[str]:
    """Paths the API server blames for a transition rule (one that compares with oldSelf)."""
    blamed = set()
    for path, node in _nodes(_schema(kind)):
        for rule in node.get("x-kubernetes-validations", []):
            if "oldSelf" in rule["rule"]:
                blamed.add(f"{path}{rule.get('fieldPath', '')}".lstrip("."))
    return blamed


@pytest.mark.parametrize("case", IMMUTABLE_CHANGES, ids=lambda case: case.id)
def test_immutable_fields_carry_a_transition_rule_and_are_documented(case: Change) -> None:
    assert case.field in _immutable_fields(case.document["kind"])
    rows = [
        line
        for line in (REPO / "docs" / "api.md").read_text().splitlines()
        if line.startswith(f"| `{case.field}` |")
    ]
    assert len(rows) == 1 and "**Immutable**" in rows[0], rows


def test_only_the_declared_fields_are_immutable() -> None:
    declared = {case.field for case in IMMUTABLE_CHANGES}
    assert set().union(*(_immutable_fields(model.info.kind) for model in KINDS)) == declared
