"""Reading Modelyard manifests from YAML into the API models, with errors that name the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modelyard.api import API_VERSION, KINDS, ResourceBase

_BY_KIND = {model.info.kind: model for model in KINDS}


class ManifestError(ValueError):
    """A manifest that is not a valid Modelyard object; the message names each bad field."""


def parse(document: dict[str, Any]) -> ResourceBase:
    """Validate one object (as a dict) against its kind's model."""
    kind = document.get("kind")
    if document.get("apiVersion") != API_VERSION or kind not in _BY_KIND:
        raise ManifestError(
            f"apiVersion/kind: expected {API_VERSION} with one of {', '.join(_BY_KIND)}, "
            f"got {document.get('apiVersion')}/{kind}"
        )
    try:
        return _BY_KIND[kind].model_validate(document)
    except ValidationError as error:
        raise ManifestError(describe(error, kind)) from None


def describe(error: ValidationError, kind: str) -> str:
    """One line per problem, each starting with the field path as kubectl would print it."""
    lines = []
    for problem in error.errors():
        path = ""
        for part in problem["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        field_path = problem.get("ctx", {}).get("field_path")
        if field_path:
            path += f".{field_path}"
        path = path.lstrip(".") or kind
        message = problem["msg"]
        lines.append(f"{path}: {message}")
    return "\n".join(lines)


def load_documents(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as stream:
        for document in yaml.safe_load_all(stream):
            if document:
                yield document


def load(path: Path) -> list[ResourceBase]:
    """Every Modelyard object in a YAML file; other kinds (Secrets, Namespaces…) are skipped."""
    return [
        parse(document)
        for document in load_documents(path)
        if str(document.get("apiVersion", "")).startswith("modelyard.dev/")
    ]
