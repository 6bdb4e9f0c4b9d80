"""ModelDeployment controller: resolve the model (promotion gate, pins), check what the spec may
ask, apply the serving children, and report rollout progress and lineage."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.api import GROUP, VERSION
from modelyard.api.modeldeployment import ModelDeploymentSpec
from modelyard.controllers import metrics
from modelyard.controllers.conditions import (
    get_condition,
    now,
    progressing,
    set_condition,
    stalled,
)
from modelyard.controllers.context import Context, from_memo, post_event
from modelyard.controllers.denials import reported
from modelyard.controllers.modeldeployment.children import NameConflict, apply_children
from modelyard.controllers.modeldeployment.resolve import describe, resolve
from modelyard.controllers.modeldeployment.rollout import report_rollout
from modelyard.controllers.stalls import report_stall
from modelyard.policy import locations
from modelyard.policy.images import image_refusal
from modelyard.reasons import Reason
from modelyard.resources.router import ROUTER
from modelyard.resources.serving import TRACK_LABEL, service_url

KIND = "ModelDeployment"
HISTORY_LIMIT = 20

__all__ = ["pod_changed", "reconcile", "report_rollout", "trainingjob_changed"]


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
def server_deployment_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    labels = body["metadata"]["labels"]
    owner = labels.get("modelyard.dev/modeldeployment")
    context = from_memo(memo, kwargs)
    deployment = context.kube.custom(KIND, body["metadata"]["namespace"], owner) if owner else None
    if deployment is None or deployment["metadata"].get("deletionTimestamp"):
        return
    if labels.get(TRACK_LABEL) == ROUTER:
        # The router came up (or went): the model's URL may move onto it now.
        with metrics.reconciling(KIND), reported(context, KIND, deployment, retry=False):
            reconcile(context, deployment)
    else:
        report_rollout(context, deployment)


def pod_changed(context: Context, namespace: str, name: str) -> None:
    """A server pod cannot start, or started: the rollout's state may have changed."""
    deployment = context.kube.custom(KIND, namespace, name)
    if deployment is not None and not deployment["metadata"].get("deletionTimestamp"):
        report_rollout(context, deployment)


def trainingjob_changed(context: Context, namespace: str, training_job: str) -> None:
    """A run ended: ModelDeployments following that TrainingJob may move to its model."""
    for name in context.related().modeldeployments_using(namespace, training_job):
        body = context.kube.custom(KIND, namespace, name)
        if body is not None:
            with metrics.reconciling(KIND), reported(context, KIND, body, retry=False):
                reconcile(context, body)


def refusal(context: Context, namespace: str, spec: ModelDeploymentSpec) -> tuple[str, str] | None:
    """(reason, message) when the spec asks for what this namespace may not have served."""
    config = context.config
    refused = image_refusal(spec.image, config.server_image, config.allowed_images)
    if refused is not None:
        return Reason.ImageNotAllowed, refused
    sources = [("spec.model.uri", spec.model.uri)]
    if spec.canary is not None:
        sources.append(("spec.canary.model.uri", spec.canary.model.uri))
    roots = (locations.default_root(config),)
    for field, uri in sources:
        outside = uri and locations.location_refusal(field, uri, namespace, roots, config)
        if outside:
            return Reason.LocationNotAllowed, outside
    return None


def reconcile(context: Context, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation", 1)
    spec = ModelDeploymentSpec.model_validate(body["spec"])
    status = body.get("status") or {}
    conditions = status.get("conditions")
    refused = refusal(context, namespace, spec)
    if refused is not None:
        _stall(context, body, *refused)
        return
    main = resolve(context, namespace, spec.model, spec.promotion, status.get("model"))
    canary = (
        resolve(
            context,
            namespace,
            spec.canary.model,
            None,
            (status.get("canary") or {}).get("model"),
        )
        if spec.canary
        else None
    )
    problem = main if main.model is None else canary if canary and canary.model is None else None
    if problem is not None:
        conditions = set_condition(
            conditions, "ModelResolved", False, problem.reason, problem.message, generation
        )
        patch: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
        if not status.get("model"):
            # Waiting for a model is progress; a model that cannot come without a human is not.
            patch["phase"] = "Failed" if problem.failed else "Pending"
            update = stalled if problem.failed else progressing
            patch["conditions"] = update(conditions, problem.reason, problem.message, generation)
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
    try:
        apply_children(context, body, spec, main.model, canary.model if canary else None)
    except NameConflict as conflict:
        _stall(context, body, Reason.NameConflict, str(conflict))
        return

    patch = {
        "observedGeneration": generation,
        "conditions": conditions,
        "url": service_url(name, namespace),
        "model": main.model,
    }
    if status.get("phase") in (None, "Pending", "Failed"):
        patch["phase"] = "Progressing"
        patch["conditions"] = progressing(
            conditions, Reason.RollingOut, f"rolling out {describe(main.model)}", generation
        )
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
                f"serving {describe(main.model)} (was {describe(current)})",
            )
    if not (canary and canary.model):
        patch["canary"] = None
    context.kube.patch_status(KIND, namespace, name, patch)
    fresh = context.kube.custom(KIND, namespace, name)
    if fresh is not None:
        report_rollout(context, fresh, canary.model if canary else None)


def _stall(context: Context, body: dict[str, Any], reason: str, message: str) -> None:
    """Refuse to serve what the spec asks: Ready=False, Stalled=True, an Event; children that
    serve an earlier spec are left as they are."""
    meta = body["metadata"]
    status = body.get("status") or {}
    generation = meta.get("generation")
    patch = {
        "observedGeneration": generation,
        "phase": "Failed",
        "conditions": stalled(status.get("conditions"), reason, message, generation),
    }

    def write(patch: dict[str, Any]) -> None:
        context.kube.patch_status(KIND, meta["namespace"], meta["name"], patch)

    report_stall(KIND, body, patch, write, reason, message)


def _condition_changed(status: dict[str, Any], type_: str, value: str) -> bool:
    current = get_condition(status.get("conditions"), type_)
    return current is None or current.get("status") != value
