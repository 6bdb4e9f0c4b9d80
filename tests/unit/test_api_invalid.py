"""Every manifest in the invalid catalogue is rejected by the models, naming the bad field.

Changes to immutable fields are refused by the API server alone (it compares with the stored
object, which the models never see); here we check that each change is valid on its own, so the
integration tier proves the refusal comes from the transition rule and nothing else.
"""

import pytest

from modelyard.manifests import ManifestError, parse
from tests.invalid_manifests import (
    ALLOWED_CHANGES,
    CATALOGUE,
    DATASET,
    IMMUTABLE_CHANGES,
    Change,
    Invalid,
)


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda case: case.id)
def test_invalid_manifest_is_rejected_naming_the_field(case: Invalid) -> None:
    with pytest.raises(ManifestError) as raised:
        parse(case.document)
    lines = str(raised.value).splitlines()
    blamed = [line for line in lines if line.startswith(f"{case.field}: ")]
    assert blamed, f"no error names {case.field}: {lines}"
    assert any(case.message.lower() in line.lower() for line in blamed), lines


def test_unknown_field_is_rejected_by_name() -> None:
    document = {**DATASET, "spec": {**DATASET["spec"], "traget": "species"}}
    with pytest.raises(ManifestError, match=r"spec\.traget: Extra inputs are not permitted"):
        parse(document)


def test_wrong_kind_is_rejected() -> None:
    with pytest.raises(ManifestError, match="apiVersion/kind"):
        parse({**DATASET, "kind": "Datasets"})


@pytest.mark.parametrize("case", IMMUTABLE_CHANGES + ALLOWED_CHANGES, ids=lambda case: case.id)
def test_both_sides_of_every_change_are_valid_objects(case: Change) -> None:
    parse(case.document)
    parse(case.changed())
    assert case.changed() != case.document, "the change changes nothing"
