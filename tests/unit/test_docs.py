"""The reference docs stay true to the code: every reason, setting and metric the code has is
documented, and the links between the docs lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelyard import reasonsdoc
from modelyard.reasons import Reason
from tests.conftest import REPO

OPERATIONS = REPO / "docs" / "operations.md"
PACKAGE = REPO / "operator" / "modelyard"
# Hand-written pages of this issue, whose relative links must resolve.
PAGES = [
    REPO / "README.md",
    REPO / "docs" / "architecture.md",
    OPERATIONS,
    *sorted((REPO / "examples").glob("*/README.md")),
]


def test_the_reasons_tables_in_the_operations_guide_are_current() -> None:
    text = OPERATIONS.read_text()
    assert reasonsdoc.update(text) == text, (
        "docs/operations.md is stale: run `python -m modelyard.reasonsdoc docs/operations.md`"
    )


def test_every_reason_has_a_row_in_the_operations_guide() -> None:
    rows = set(re.findall(r"^\| `(\w+)` \|", OPERATIONS.read_text(), flags=re.MULTILINE))
    assert {reason.value for reason in Reason} <= rows


def test_the_generator_replaces_only_the_text_between_its_markers() -> None:
    document = f"# Guide\n\nbefore\n{reasonsdoc.BEGIN}\nold table\n{reasonsdoc.END}\nafter\n"
    updated = reasonsdoc.update(document)
    assert updated.startswith(f"# Guide\n\nbefore\n{reasonsdoc.BEGIN}\n#### Problems")
    assert updated.endswith(f"{reasonsdoc.END}\nafter\n")
    assert "old table" not in updated
    assert reasonsdoc.update(updated) == updated


def test_the_generator_refuses_a_document_without_markers(tmp_path: Path) -> None:
    with pytest.raises(reasonsdoc.MarkersMissing):
        reasonsdoc.update("# Guide\n")
    page = tmp_path / "guide.md"
    page.write_text("# Guide\n")
    assert reasonsdoc.main([str(page), "--check"]) == 1


def test_check_fails_on_a_stale_document(tmp_path: Path) -> None:
    page = tmp_path / "guide.md"
    page.write_text(f"{reasonsdoc.BEGIN}\n{reasonsdoc.END}\n")
    assert reasonsdoc.main([str(page), "--check"]) == 1
    assert reasonsdoc.main([str(page)]) == 0
    assert reasonsdoc.main([str(page), "--check"]) == 0


def _names(pattern: str, paths: list[Path]) -> set[str]:
    return {name for path in paths for name in re.findall(pattern, path.read_text())}


def test_every_modelyard_environment_variable_is_documented() -> None:
    sources = [*PACKAGE.rglob("*.py"), *(REPO / "charts" / "modelyard" / "templates").iterdir()]
    variables = _names(r"\bMODELYARD_[A-Z0-9_]*[A-Z0-9]\b", sources)
    assert variables, "no MODELYARD_* variable found: has the code moved?"
    missing = sorted(v for v in variables if f"`{v}`" not in OPERATIONS.read_text())
    assert not missing, f"document these in docs/operations.md (Configuration): {missing}"


def test_every_metric_is_documented() -> None:
    sources = [
        PACKAGE / "controllers" / "metrics.py",
        PACKAGE / "workloads" / "serving" / "metrics.py",
    ]
    metrics = _names(r'"(modelyard_[a-z_]+)"', sources)
    assert len(metrics) >= 10
    text = OPERATIONS.read_text()
    # Counters are exposed with a _total suffix; the docs name what Prometheus shows.
    missing = sorted(m for m in metrics if f"`{m}`" not in text and f"`{m}_total`" not in text)
    assert not missing, f"document these in docs/operations.md (Metrics): {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_files_that_exist(page: Path) -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    broken = [
        target for target in targets if "://" not in target and not (page.parent / target).exists()
    ]
    assert not broken, f"{page.relative_to(REPO)}: {broken}"


def test_the_readme_links_the_operations_guide_and_the_architecture() -> None:
    readme = (REPO / "README.md").read_text()
    assert "(docs/operations.md)" in readme
    assert "(docs/architecture.md)" in readme
