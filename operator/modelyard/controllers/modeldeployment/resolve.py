"""Which model a ModelDeployment track serves: a pinned run, the latest run that passes the
promotion gate, or a model given by URI — with its full lineage, or why there is none yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelyard.api.modeldeployment import ModelSource, Promotion
from modelyard.api.trainingjob import meets
from modelyard.controllers.context import Context
from modelyard.reasons import Reason


@dataclass(frozen=True)
class Resolution:
    """The model to serve for one track, or why there is none; `blocked` notes a gated run.
    `failed`: there will be none until a human acts (not just not yet)."""

    model: dict[str, Any] | None
    reason: str
    message: str
    blocked: str | None = field(default=None)
    failed: bool = False


def resolve(
    context: Context,
    namespace: str,
    source: ModelSource,
    promotion: Promotion | None,
    current: dict[str, Any] | None,
) -> Resolution:
    if source.uri is not None and source.digest is not None:
        model = {"uri": source.uri, "digest": source.digest, "cardDigest": source.card_digest}
        # Where it was first served from stays where it is read, whatever the settings become.
        same = current is not None and all(current.get(k) == v for k, v in model.items())
        endpoint = current.get("endpoint") if same and current else context.config.s3_endpoint
        if endpoint:
            model["endpoint"] = endpoint
        return Resolution(model, Reason.Resolved, f"serving {source.uri}")
    ref = source.training_job_ref
    assert ref is not None  # the API allows exactly one of uri and trainingJobRef
    training_job = context.kube.custom("TrainingJob", namespace, ref.name)
    if training_job is None:
        return Resolution(
            None, Reason.TrainingJobNotFound, f"TrainingJob {ref.name} does not exist"
        )
    runs = (training_job.get("status") or {}).get("runs") or []
    if ref.run:
        run = next((r for r in runs if r["id"] == ref.run), None)
        if run is None:
            return Resolution(
                None, Reason.RunNotFound, f"TrainingJob {ref.name} has no run {ref.run}"
            )
        if run["phase"] != "Succeeded" or not run.get("model"):
            return Resolution(
                None,
                Reason.RunNotSucceeded,
                f"{ref.name}/{ref.run} is {run['phase']}",
                failed=run["phase"] == "Failed",
            )
        return Resolution(
            lineage(training_job, run), Reason.Pinned, f"pinned to {ref.name}/{ref.run}"
        )
    succeeded = [r for r in runs if r["phase"] == "Succeeded" and r.get("model")]
    if not succeeded:
        if runs and runs[-1]["phase"] == "Failed":
            # No run in flight and none to come until someone changes the TrainingJob or its
            # data: a stall, in the run's own words.
            latest = runs[-1]
            return Resolution(
                None,
                Reason.RunNotSucceeded,
                f"TrainingJob {ref.name} has no successful run: {latest['id']} failed "
                f"({latest.get('reason')}: {latest.get('message')})",
                failed=True,
            )
        return Resolution(
            None, Reason.ModelNotReady, f"TrainingJob {ref.name} has no successful run yet"
        )
    if promotion is None:
        latest = succeeded[-1]
        return Resolution(
            lineage(training_job, latest), Reason.Latest, f"latest run {ref.name}/{latest['id']}"
        )
    passing = [r for r in succeeded if _passes(r, promotion)]
    blocked = None
    if succeeded[-1] not in passing:
        run = succeeded[-1]
        value = (run.get("metrics") or {}).get(promotion.metric)
        blocked = (
            f"{ref.name}/{run['id']} has {promotion.metric}={value} against the gate "
            f"{promotion.minimum:g}"
        )
    if not passing:
        if current is not None and current.get("trainingJob") == ref.name:
            return Resolution(current, Reason.Promoted, "keeping the served model", blocked)
        return Resolution(
            None, Reason.PromotionBlocked, blocked or "no run passes the gate", failed=True
        )
    chosen = passing[-1]
    message = f"run {ref.name}/{chosen['id']} passes {promotion.metric} ≥ {promotion.minimum:g}"
    if blocked:
        blocked += f"; still serving {chosen['id']}"
    return Resolution(lineage(training_job, chosen), Reason.Promoted, message, blocked)


def _passes(run: dict[str, Any], promotion: Promotion) -> bool:
    value = (run.get("metrics") or {}).get(promotion.metric)
    return value is not None and meets(promotion.metric, float(value), promotion.minimum)


def lineage(training_job: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The served model as status records it: file, digests, the run and the data it saw."""
    model = {
        "uri": run["model"]["uri"],
        "digest": run["model"]["digest"],
        "cardDigest": run["model"].get("cardDigest"),
        "endpoint": run["model"].get("endpoint"),
        "trainingJob": training_job["metadata"]["name"],
        "run": run["id"],
        "dataset": training_job["spec"]["datasetRef"]["name"],
        "datasetVersion": run.get("datasetVersion"),
    }
    return {key: value for key, value in model.items() if value is not None}


def describe(model: dict[str, Any]) -> str:
    if model.get("run"):
        return f"{model.get('trainingJob')}/{model['run']} ({model['digest'][:19]}…)"
    return f"{model['uri']} ({model['digest'][:19]}…)"
