"""Who refers to whom, kept in memory by kopf from its watches: a finished ingestion or run finds
the TrainingJobs and ModelDeployments that follow it without listing the namespace."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from modelyard.api import GROUP, VERSION

Key = tuple[str, str]  # (namespace, name of the referenced object)
# kopf passes each index to handlers under its function's name.
TRAININGJOBS_BY_DATASET = "trainingjobs_by_dataset"
MODELDEPLOYMENTS_BY_TRAININGJOB = "modeldeployments_by_trainingjob"


@kopf.index(GROUP, VERSION, "trainingjobs")
def trainingjobs_by_dataset(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str | None, str], str]:
    return {(namespace, spec["datasetRef"]["name"]): name}


@kopf.index(GROUP, VERSION, "modeldeployments")
def modeldeployments_by_trainingjob(
    namespace: str | None, name: str, body: kopf.Body, meta: kopf.Meta, **_: Any
) -> dict[tuple[str | None, str], str]:
    if meta.get("deletionTimestamp"):
        return {}  # on its way out: it no longer holds anything
    return {(namespace, training_job): name for training_job in references(dict(body))}


def references(body: Mapping[str, Any]) -> set[str]:
    """Names of the TrainingJobs a ModelDeployment serves from (main and canary)."""
    spec = body.get("spec") or {}
    sources = [spec.get("model") or {}, (spec.get("canary") or {}).get("model") or {}]
    return {s["trainingJobRef"]["name"] for s in sources if s.get("trainingJobRef")}


@dataclass(frozen=True)
class Relations:
    """The two indexes as handlers receive them (kopf passes each by its function's name)."""

    trainingjobs: Mapping[Key, Collection[str]]
    modeldeployments: Mapping[Key, Collection[str]]

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Relations:
        return cls(kwargs[TRAININGJOBS_BY_DATASET], kwargs[MODELDEPLOYMENTS_BY_TRAININGJOB])

    def trainingjobs_using(self, namespace: str, dataset: str) -> list[str]:
        return sorted(set(self.trainingjobs.get((namespace, dataset), ())))

    def modeldeployments_using(self, namespace: str, training_job: str) -> list[str]:
        return sorted(set(self.modeldeployments.get((namespace, training_job), ())))
