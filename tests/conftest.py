"""Shared test setup: the cluster and S3 fixtures live in plugins, one per service."""

from pathlib import Path

pytest_plugins = ["tests.plugins.kube", "tests.plugins.operator", "tests.plugins.s3"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
