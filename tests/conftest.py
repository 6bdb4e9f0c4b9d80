"""Shared test setup: the cluster and S3 fixtures live in plugins, one per service."""

from pathlib import Path
from typing import Any

import yaml

from modelyard.api import KINDS

pytest_plugins = [
    "tests.plugins.kube",
    "tests.plugins.operator",
    "tests.plugins.s3",
    "tests.plugins.postgres",
]

REPO = Path(__file__).resolve().parent.parent
# Resource plurals by kind, for the API calls the tests make.
PLURALS = {kind.info.kind: kind.info.plural for kind in KINDS}
EXAMPLES = REPO / "examples"


def _kustomize_patches() -> set[Path]:
    """Files that kustomizations use as patches: partial objects, not manifests."""
    patches = set()
    for kustomization in EXAMPLES.rglob("kustomization.yaml"):
        for patch in yaml.safe_load(kustomization.read_text()).get("patches") or []:
            if "path" in patch:
                patches.add((kustomization.parent / patch["path"]).resolve())
    return patches


def example_manifests() -> list[tuple[Path, dict[str, Any]]]:
    """Every Modelyard object in examples/, with its file."""
    patches = _kustomize_patches()
    return [
        (path, document)
        for path in sorted(EXAMPLES.rglob("*.yaml"))
        if path.resolve() not in patches
        for document in yaml.safe_load_all(path.read_text())
        if document and str(document.get("apiVersion", "")).startswith("modelyard.dev/")
    ]
