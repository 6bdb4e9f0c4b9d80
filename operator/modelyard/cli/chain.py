"""The chain behind a resource: ModelDeployment ← TrainingJob(s) ← Dataset, read from specs."""

from __future__ import annotations

from typing import Any

from modelyard.api.dataset import Dataset
from modelyard.api.trainingjob import TrainingJob
from modelyard.cli.refs import Ref


def upstream(obj: dict[str, Any]) -> list[Ref]:
    """What `obj` is made from: a ModelDeployment's TrainingJobs (model and canary), a
    TrainingJob's Dataset; nothing for a Dataset or a model given by URI."""
    spec = obj.get("spec") or {}
    if obj["kind"] == "TrainingJob":
        return [Ref(Dataset.info, spec["datasetRef"]["name"])]
    if obj["kind"] != "ModelDeployment":
        return []
    sources = [spec.get("model") or {}, (spec.get("canary") or {}).get("model") or {}]
    names = dict.fromkeys(s["trainingJobRef"]["name"] for s in sources if s.get("trainingJobRef"))
    return [Ref(TrainingJob.info, name) for name in names]
