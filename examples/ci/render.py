"""Render a project's Modelyard manifests for one commit: a TrainingJob of its own, and the
ModelDeployment pointed at it.

    python examples/ci/render.py examples/credit-scoring/manifests.yaml --commit 1a2b3c4 > out.yaml

Each TrainingJob `NAME` becomes `NAME-<commit>` with the label `modelyard.dev/commit`, so every
commit's training is a record of its own (runs, metrics, model digest) that `kubectl get tj -l
modelyard.dev/commit=<commit>` finds. Every ModelDeployment whose `spec.model.trainingJobRef`
names such a TrainingJob is pointed at the commit's: its promotion gate then decides whether the
commit's model replaces the one served, which keeps serving when the gate blocks.
Datasets and everything else pass through unchanged.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

COMMIT_LABEL = "modelyard.dev/commit"
# Object names are DNS-1123 subdomains of at most 253 characters; labels stop at 63.
COMMIT_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def render(documents: Iterable[dict[str, Any]], commit: str) -> list[dict[str, Any]]:
    if not COMMIT_PATTERN.fullmatch(commit):
        raise ValueError(f"commit {commit!r}: use lower-case letters, digits and '-' (≤ 63)")
    documents = [document for document in documents if document]
    renamed = {
        document["metadata"]["name"]: f"{document['metadata']['name']}-{commit}"
        for document in documents
        if document.get("kind") == "TrainingJob"
    }
    rendered = []
    for document in documents:
        document = dict(document)
        if document.get("kind") == "TrainingJob":
            metadata = dict(document["metadata"])
            metadata["name"] = renamed[metadata["name"]]
            metadata["labels"] = {**(metadata.get("labels") or {}), COMMIT_LABEL: commit}
            document["metadata"] = metadata
        elif document.get("kind") == "ModelDeployment":
            reference = document["spec"]["model"].get("trainingJobRef")
            if reference and reference["name"] in renamed:
                model = {"trainingJobRef": {**reference, "name": renamed[reference["name"]]}}
                document["spec"] = {**document["spec"], "model": model}
        rendered.append(document)
    return rendered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", type=Path, help="YAML file with the project's objects")
    parser.add_argument(
        "--commit", required=True, help="short commit id, e.g. $CI_COMMIT_SHORT_SHA"
    )
    args = parser.parse_args()
    documents = yaml.safe_load_all(args.manifests.read_text())
    try:
        rendered = render(documents, args.commit.lower())
    except ValueError as error:
        parser.error(str(error))
    yaml.safe_dump_all(rendered, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
