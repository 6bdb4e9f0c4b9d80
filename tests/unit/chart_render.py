"""Renders the Helm chart with the real `helm` binary, for the chart tests."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO
from tests.plugins.kube import built_binary

CHART = REPO / "charts" / "modelyard"
# The Kubernetes the rendered manifests are validated for (kubernetes-validate): the one the
# local cluster runs. Helm itself renders for the version it was built with (hack/build-binaries.sh
# stamps it), as a user's `helm template` does.
KUBE_VERSION = "1.34.0"
RELEASE = "my"
# The release's objects are named so (the chart's `modelyard.fullname`).
FULLNAME = f"{RELEASE}-modelyard"
NAMESPACE = "modelyard-system"

Manifest = dict[str, Any]


def helm() -> str:
    """$HELM, else the binary hack/build-binaries.sh builds (on first use) into the cache."""
    explicit = os.environ.get("HELM")
    if explicit and Path(explicit).is_file():
        return explicit
    return built_binary("helm")


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, check=False, timeout=120)


def _set_args(values: Mapping[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@cache
def _render(items: tuple[tuple[str, str], ...], document: str) -> tuple[Manifest, ...]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values_file:
        values_file.write(document)
        values_file.flush()
        result = run_helm(
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--values",
            values_file.name,
            *_set_args(dict(items)),
        )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(
    values: Mapping[str, str] | None = None, document: Mapping[str, Any] | None = None
) -> list[Manifest]:
    """The chart's manifests with these `--set` values and a values file holding `document`,
    for values `--set` cannot spell (lists of objects, keys with dots). Cached per input."""
    return list(
        _render(tuple(sorted((values or {}).items())), json.dumps(document or {}, sort_keys=True))
    )


def template_error(values: Mapping[str, str], *extra: str) -> str:
    """stderr of a `helm template` that must fail."""
    result = run_helm(
        "template",
        RELEASE,
        str(CHART),
        *_set_args(values),
        *extra,
    )
    assert result.returncode != 0, "helm template accepted values it should reject"
    return result.stderr


def of_kind(manifests: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in manifests if doc["kind"] == kind]


def one(manifests: Sequence[Manifest], kind: str) -> Manifest:
    found = of_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
