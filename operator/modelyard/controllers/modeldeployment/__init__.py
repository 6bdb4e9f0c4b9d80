"""ModelDeployment controller: resolve the model (promotion gate, pins), check what the spec may
ask, apply the serving children, and report rollout progress and lineage."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.api import GROUP, VERSION
from modelyard.api.modeldeployment import ModelDeploymentSpec
from modelyard.controllers import metrics, protection
from modelyard.controllers.conditions import (
    get_condition,
    now,
    progressing,
    set_condition,
    stalled,
)
from modelyard.controllers.context import Context, from_memo, post_event
from modelyard.controllers.denials import reported
from modelyard.controllers.fresh import on_fresh, patch_status
from modelyard.controllers.indexes import references
from modelyard.controllers.kube import Conflict
from modelyard.controllers.modeldeployment.children import NameConflict, apply_children
from modelyard.controllers.modeldeployment.resolve import describe, resolve
from modelyard.controllers.modeldeployment.rollout import report_rollout
from modelyard.controllers.modeldeployment.turns import now_or_after, one_at_a_time
from modelyard.controllers.monitoring import model_changed, without_monitoring
from modelyard.controllers.stalls import report_stall
from modelyard.policy import locations
from modelyard.policy.images import image_refusal
from modelyard.reasons import Reason
from modelyard.resources.serving import service_url

KIND = "ModelDeployment"
ROUTER_TICK_SECONDS = 5.0
HISTORY_LIMIT = 20

__all__ = ["pod_changed", "reconcile", "report_rollout", "trainingjob_changed"]


@kopf.on.resume(GROUP, VERSION, "modeldeployments")
@kopf.on.create(GROUP, VERSION, "modeldeployments")
@kopf.on.update(GROUP, VERSION, "modeldeployments")
def modeldeployment_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    context = from_memo(memo, kwargs)
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    with one_at_a_time(namespace, name):
        # Read again once it is our turn: kopf's copy may predate a change that the reconcile
        # before ours already acted on (scaling a track back down for a canary since removed).
        fresh = context.kube.custom(KIND, namespace, name)
        if fresh is None:
            return
        with metrics.reconciling(KIND), reported(context, KIND, fresh):
            try:
                reconcile(context, fresh)
            except Conflict as error:  # another writer (a run, a rollout) came first
                raise kopf.TemporaryError("status changed meanwhile", delay=1) from error


@kopf.on.event(
    "apps",
    "v1",
    "deployments",
    labels={"app.kubernetes.io/managed-by": "modelyard", "app.kubernetes.io/component": "server"},
)
def server_deployment_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    labels = body["metadata"]["labels"]
    owner = labels.get("modelyard.dev/modeldeployment")
    if not owner:
        return
    # A track or the router came up (or went): the model's URL may move onto it now, and what
    # it leaves may go. The reconcile ends with the rollout's status.
    follow(from_memo(memo, kwargs), body["metadata"]["namespace"], owner)


def _routed_rollout(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """A rollout through a canary's router is under way."""
    canary = spec.get("canary") or {}
    reconciling = get_condition(status.get("conditions"), "Reconciling") or {}
    percent = canary.get("trafficPercent") or 0
    return 0 < percent < 100 and reconciling.get("reason") == Reason.RollingOut


@kopf.timer(GROUP, VERSION, "modeldeployments", interval=ROUTER_TICK_SECONDS, when=_routed_rollout)
def routed_rollout_tick(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Look at the rollout again: nothing about a router changes while it waits for its tracks,
    and how long they have been ready is what tells a router that cannot reach them."""
    pod_changed(from_memo(memo, kwargs), body["metadata"]["namespace"], body["metadata"]["name"])


def pod_changed(context: Context, namespace: str, name: str) -> None:
    """A server pod or Deployment changed: the rollout's state may have changed."""

    def report(deployment: dict[str, Any]) -> None:
        if not deployment["metadata"].get("deletionTimestamp"):
            report_rollout(context, deployment)

    on_fresh(context, KIND, namespace, name, report)


def follow(context: Context, namespace: str, name: str) -> None:
    """Reconcile the ModelDeployment as it is now (an event outside its own handler)."""

    def again(body: dict[str, Any]) -> None:
        with metrics.reconciling(KIND), reported(context, KIND, body, retry=False):
            reconcile(context, body)

    now_or_after(namespace, name, lambda: on_fresh(context, KIND, namespace, name, again))


def trainingjob_changed(context: Context, namespace: str, training_job: str) -> None:
    """A run ended: ModelDeployments following that TrainingJob may move to its model."""
    for name in context.related().modeldeployments_using(namespace, training_job):
        follow(context, namespace, name)


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
    # Before a model is resolved from them: deleting them is blocked from now on.
    protection.hold(context, namespace, sorted(references(body)))
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
        patch_status(context, KIND, body, patch)
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
    if spec.monitoring is None and status.get("monitoring"):
        # Monitoring was turned off: its figures and conditions would only grow stale.
        patch["monitoring"] = None
        patch["conditions"] = conditions = without_monitoring(conditions)
        metrics.forget_monitoring(namespace, name)
    current = status.get("model")
    changed = current is None or current.get("digest") != main.model["digest"]
    if changed and current is not None:
        patch["conditions"] = conditions = model_changed(conditions, generation)
    if changed or status.get("phase") in (None, "Pending", "Failed"):
        # In the same write as the new model: nothing reads as done before it serves.
        patch["phase"] = "Progressing"
        patch["conditions"] = progressing(
            conditions,
            Reason.RollingOut,
            f"rolling out {describe(main.model)}",
            generation,
            keep_ready=True,
        )
    if changed:
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
    patch_status(context, KIND, body, patch)
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

    report_stall(KIND, body, patch, lambda p: patch_status(context, KIND, body, p), reason, message)


def _condition_changed(status: dict[str, Any], type_: str, value: str) -> bool:
    current = get_condition(status.get("conditions"), type_)
    return current is None or current.get("status") != value
