"""ModelDeployment controller: resolve the model (promotion gate, pins), apply the serving
children, and report rollout progress and lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import kopf

from modelyard.api import GROUP, VERSION
from modelyard.api.dataset import DatasetSpec
from modelyard.api.modeldeployment import ModelDeploymentSpec, ModelSource, Promotion
from modelyard.api.trainingjob import meets
from modelyard.controllers import metrics
from modelyard.controllers.conditions import get_condition, now, set_condition
from modelyard.controllers.context import Context, from_memo, post_event
from modelyard.controllers.denials import reported
from modelyard.reasons import Reason
from modelyard.resources.jobs import Owner
from modelyard.resources.serving import (
    CANARY,
    MAIN,
    ModelRef,
    build_deployment,
    build_hpa,
    build_pdb,
    build_service,
    deployment_name,
    service_url,
    split_replicas,
)

KIND = "ModelDeployment"
HISTORY_LIMIT = 20


@dataclass(frozen=True)
class Resolution:
    """The model to serve for one track, or why there is none; `blocked` notes a gated run."""

    model: dict[str, Any] | None
    reason: str
    message: str
    blocked: str | None = field(default=None)


@kopf.on.resume(GROUP, VERSION, "modeldeployments")
@kopf.on.create(GROUP, VERSION, "modeldeployments")
@kopf.on.update(GROUP, VERSION, "modeldeployments")
def modeldeployment_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    context, plain = from_memo(memo, kwargs), dict(body)
    with metrics.reconciling(KIND), reported(context, KIND, plain):
        reconcile(context, plain)


@kopf.on.event(
    "apps",
    "v1",
    "deployments",
    labels={"app.kubernetes.io/managed-by": "modelyard", "app.kubernetes.io/component": "server"},
)
def server_deployment_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    owner = body["metadata"]["labels"].get("modelyard.dev/modeldeployment")
    context = from_memo(memo)
    deployment = context.kube.custom(KIND, body["metadata"]["namespace"], owner) if owner else None
    if deployment is not None and not deployment["metadata"].get("deletionTimestamp"):
        report_rollout(context, deployment)


def trainingjob_changed(context: Context, namespace: str, training_job: str) -> None:
    """A run ended: ModelDeployments following that TrainingJob may move to its model."""
    for name in context.related().modeldeployments_using(namespace, training_job):
        body = context.kube.custom(KIND, namespace, name)
        if body is not None:
            with metrics.reconciling(KIND), reported(context, KIND, body, retry=False):
                reconcile(context, body)


def reconcile(context: Context, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation", 1)
    spec = ModelDeploymentSpec.model_validate(body["spec"])
    status = body.get("status") or {}
    conditions = status.get("conditions")
    main = resolve(context, namespace, spec.model, spec.promotion, status.get("model"))
    canary = resolve(context, namespace, spec.canary.model, None, None) if spec.canary else None
    problem = main if main.model is None else canary if canary and canary.model is None else None
    if problem is not None:
        conditions = set_condition(
            conditions, "ModelResolved", False, problem.reason, problem.message, generation
        )
        patch: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
        if not status.get("model"):
            patch["phase"] = "Pending"
            patch["conditions"] = set_condition(
                conditions, "Ready", False, problem.reason, problem.message, generation
            )
        context.kube.patch_status(KIND, namespace, name, patch)
        metrics.set_phase(KIND, namespace, name, patch.get("phase", status.get("phase")))
        return
    assert main.model is not None
    conditions = set_condition(
        conditions, "ModelResolved", True, main.reason, main.message, generation
    )
    if main.blocked:
        conditions = set_condition(
            conditions, "Promoted", False, Reason.PromotionBlocked, main.blocked, generation
        )
        if _condition_changed(status, "Promoted", "False"):
            post_event(body, Reason.PromotionBlocked, main.blocked, warning=True)
    else:
        conditions = set_condition(
            conditions, "Promoted", True, Reason.Promoted, main.message, generation
        )

    _apply_children(context, body, spec, main.model, canary.model if canary else None)

    patch = {
        "observedGeneration": generation,
        "conditions": conditions,
        "url": service_url(name, namespace),
        "model": main.model,
    }
    current = status.get("model")
    if current is None or current.get("digest") != main.model["digest"]:
        patch["servedSince"] = now()
        if current is not None:
            entry = {"model": current, "servedUntil": now()}
            if status.get("servedSince"):
                entry["servedFrom"] = status["servedSince"]
            patch["history"] = [entry, *(status.get("history") or [])][:HISTORY_LIMIT]
            post_event(
                body,
                Reason.ModelChanged,
                f"serving {_describe(main.model)} (was {_describe(current)})",
            )
    if not (canary and canary.model):
        patch["canary"] = None
    context.kube.patch_status(KIND, namespace, name, patch)
    fresh = context.kube.custom(KIND, namespace, name)
    if fresh is not None:
        report_rollout(context, fresh, canary.model if canary else None)


def resolve(
    context: Context,
    namespace: str,
    source: ModelSource,
    promotion: Promotion | None,
    current: dict[str, Any] | None,
) -> Resolution:
    if source.uri is not None and source.digest is not None:
        return Resolution(
            {"uri": source.uri, "digest": source.digest}, Reason.Resolved, f"serving {source.uri}"
        )
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
                None, Reason.RunNotSucceeded, f"{ref.name}/{ref.run} is {run['phase']}"
            )
        return Resolution(
            _lineage(training_job, run), Reason.Pinned, f"pinned to {ref.name}/{ref.run}"
        )
    succeeded = [r for r in runs if r["phase"] == "Succeeded" and r.get("model")]
    if not succeeded:
        return Resolution(
            None, Reason.ModelNotReady, f"TrainingJob {ref.name} has no successful run yet"
        )
    if promotion is None:
        latest = succeeded[-1]
        return Resolution(
            _lineage(training_job, latest), Reason.Latest, f"latest run {ref.name}/{latest['id']}"
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
        return Resolution(None, Reason.PromotionBlocked, blocked or "no run passes the gate")
    chosen = passing[-1]
    message = f"run {ref.name}/{chosen['id']} passes {promotion.metric} ≥ {promotion.minimum:g}"
    if blocked:
        blocked += f"; still serving {chosen['id']}"
    return Resolution(_lineage(training_job, chosen), Reason.Promoted, message, blocked)


def _passes(run: dict[str, Any], promotion: Promotion) -> bool:
    value = (run.get("metrics") or {}).get(promotion.metric)
    return value is not None and meets(promotion.metric, float(value), promotion.minimum)


def _lineage(training_job: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    return {
        "uri": run["model"]["uri"],
        "digest": run["model"]["digest"],
        "trainingJob": training_job["metadata"]["name"],
        "run": run["id"],
        "dataset": training_job["spec"]["datasetRef"]["name"],
        "datasetVersion": run.get("datasetVersion"),
    }


def _apply_children(
    context: Context,
    body: dict[str, Any],
    spec: ModelDeploymentSpec,
    main: dict[str, Any],
    canary: dict[str, Any] | None,
) -> None:
    meta = body["metadata"]
    owner = Owner(KIND, meta["name"], meta["namespace"], meta["uid"])
    kube, config = context.kube, context.config
    percent = spec.canary.traffic_percent if spec.canary and canary else None
    if spec.autoscaling:
        main_replicas: int | None = None  # the HPA owns the count
        canary_replicas = max(1, round(spec.autoscaling.min_replicas * (percent or 0) / 100))
        total = spec.autoscaling.min_replicas
    else:
        total = 1 if spec.replicas is None else spec.replicas
        main_replicas, canary_replicas = split_replicas(total, percent)
    kube.apply(
        build_deployment(owner, spec, MAIN, _model_ref(context, owner, main), main_replicas, config)
    )
    if canary and percent:
        model = _model_ref(context, owner, canary)
        kube.apply(build_deployment(owner, spec, CANARY, model, canary_replicas, config))
    else:
        kube.delete("apps/v1", "Deployment", owner.namespace, deployment_name(owner.name, CANARY))
    kube.apply(build_service(owner))
    hpa = build_hpa(owner, spec.autoscaling) if spec.autoscaling else None
    if hpa:
        kube.apply(hpa)
    else:
        kube.delete(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            owner.namespace,
            build_service(owner)["metadata"]["name"],
        )
    pdb = build_pdb(owner)
    if total > 1:
        kube.apply(pdb)
    else:
        kube.delete("policy/v1", "PodDisruptionBudget", owner.namespace, pdb["metadata"]["name"])


def _model_ref(context: Context, owner: Owner, model: dict[str, Any]) -> ModelRef:
    """The model, with its Dataset's storage settings when it came from a training run."""
    storage = None
    if model.get("dataset"):
        dataset = context.kube.custom("Dataset", owner.namespace, model["dataset"])
        if dataset is not None:
            storage = DatasetSpec.model_validate(dataset["spec"]).storage
    return ModelRef(model["uri"], model["digest"], storage)


def report_rollout(
    context: Context, body: dict[str, Any], canary_model: dict[str, Any] | None = None
) -> None:
    """Replica counts, canary share, phase and Ready from the Deployments' own status."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status = body.get("status") or {}
    if not status.get("model"):
        return
    main = context.kube.get("apps/v1", "Deployment", namespace, deployment_name(name, MAIN))
    canary = context.kube.get("apps/v1", "Deployment", namespace, deployment_name(name, CANARY))
    tracks = [d for d in (main, canary) if d is not None]
    if main is None:
        return
    ready = {
        d["metadata"]["name"]: (d.get("status") or {}).get("readyReplicas") or 0 for d in tracks
    }
    main_ready = ready[main["metadata"]["name"]]
    canary_ready = ready[canary["metadata"]["name"]] if canary else 0
    done = all(_rolled_out(d) for d in tracks)
    generation = meta.get("generation")
    conditions = status.get("conditions")
    if done and main_ready + canary_ready > 0:
        phase, ready_status, reason = "Ready", True, Reason.Serving
        message = f"{main_ready + canary_ready} replicas serve {_describe(status['model'])}"
    else:
        phase, ready_status, reason = "Progressing", False, Reason.RollingOut
        message = f"{main_ready + canary_ready} replicas ready; rollout in progress"
    conditions = set_condition(conditions, "Ready", ready_status, reason, message, generation)
    patch: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "replicas": (main.get("spec") or {}).get("replicas") or 0,
        "readyReplicas": main_ready + canary_ready,
    }
    if canary is not None:
        model = canary_model or (status.get("canary") or {}).get("model")
        if model is not None:
            total_ready = main_ready + canary_ready
            patch["canary"] = {
                "model": model,
                "replicas": (canary.get("spec") or {}).get("replicas") or 0,
                "trafficPercent": round(100 * canary_ready / total_ready) if total_ready else 0,
            }
    was_ready = status.get("phase") == "Ready"
    context.kube.patch_status(KIND, namespace, name, patch)
    metrics.set_phase(KIND, namespace, name, phase)
    if phase == "Ready" and not was_ready:
        post_event(body, Reason.Serving, message)


def _rolled_out(deployment: dict[str, Any]) -> bool:
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 1)
        and (status.get("updatedReplicas") or 0) >= desired
        and (status.get("availableReplicas") or 0) >= desired
        and (status.get("replicas") or 0) <= desired
    )


def _condition_changed(status: dict[str, Any], type_: str, value: str) -> bool:
    current = get_condition(status.get("conditions"), type_)
    return current is None or current.get("status") != value


def _describe(model: dict[str, Any]) -> str:
    if model.get("run"):
        return f"{model.get('trainingJob')}/{model['run']} ({model['digest'][:19]}…)"
    return f"{model['uri']} ({model['digest'][:19]}…)"
