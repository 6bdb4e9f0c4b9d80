"""How far a ModelDeployment's rollout is, from its Deployments' own status."""

from __future__ import annotations

import dataclasses
from typing import Any

from modelyard.controllers import metrics, pods
from modelyard.controllers.conditions import get_condition, progressing, settled
from modelyard.controllers.context import Context, post_event
from modelyard.controllers.fresh import patch_status
from modelyard.controllers.modeldeployment.resolve import describe
from modelyard.controllers.provenance import controller
from modelyard.reasons import Reason
from modelyard.resources.router import ROUTER, router_name, track_service_name
from modelyard.resources.serving import (
    CANARY,
    MAIN,
    TRACK_LABEL,
    deployment_name,
    service_name,
)

KIND = "ModelDeployment"
# Stalls the reconcile decided (it applied nothing): the Deployments' status must not hide them.
REFUSALS = frozenset({Reason.ImageNotAllowed, Reason.LocationNotAllowed, Reason.NameConflict})
# A router whose tracks have been ready this long has had time to reach them (kube-proxy routes
# a new Service's address within seconds); a router past its deadline then cannot.
ROUTER_GRACE_SECONDS = 30.0


def report_rollout(
    context: Context, body: dict[str, Any], canary_model: dict[str, Any] | None = None
) -> None:
    """Replica counts, canary share, phase and Ready from the Deployments' own status."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status = body.get("status") or {}
    refused = (get_condition(status.get("conditions"), "Stalled") or {}).get("reason")
    if not status.get("model") or refused in REFUSALS:
        return
    main = context.kube.get("apps/v1", "Deployment", namespace, deployment_name(name, MAIN))
    canary = context.kube.get("apps/v1", "Deployment", namespace, deployment_name(name, CANARY))
    router = context.kube.get("apps/v1", "Deployment", namespace, router_name(name))
    tracks = [d for d in (main, canary, router) if d is not None]
    if main is None:
        return
    ready = {
        d["metadata"]["name"]: (d.get("status") or {}).get("readyReplicas") or 0 for d in tracks
    }
    main_ready = ready[main["metadata"]["name"]]
    canary_ready = ready[canary["metadata"]["name"]] if canary else 0
    done = all(rolled_out(d) for d in tracks)
    generation = meta.get("generation")
    conditions = status.get("conditions")
    stuck = None if done else _stuck(context, namespace, tracks, main_ready + canary_ready > 0)
    # A rollout keeps Ready=True while the replicas it replaces serve, not while it raises
    # replicas from zero: nothing serves until the first new one is ready.
    keep_ready = (get_condition(conditions, "Ready") or {}).get("reason") != Reason.ScaledToZero
    if stuck is not None:
        phase, reason, message = "Progressing", stuck.reason, stuck.message
        conditions = pods.showing(conditions, stuck, generation, keep_ready) or conditions
    elif done and main_ready + canary_ready > 0:
        phase, reason = "Ready", Reason.Serving
        message = f"{main_ready + canary_ready} replicas serve {describe(status['model'])}"
        conditions = settled(conditions, reason, message, generation)
    elif done and not any(replicas_of(d) for d in (main, canary) if d is not None):
        # Scaled to zero as asked: done, not a rollout that never ends.
        phase, reason = "Ready", Reason.ScaledToZero
        message = (
            f"spec.replicas is 0: no replica serves {describe(status['model'])}, and the model's "
            "URL answers no request until it is raised"
        )
        conditions = settled(conditions, reason, message, generation)
    else:
        phase, reason = "Progressing", Reason.RollingOut
        message = f"{main_ready + canary_ready} replicas ready; rollout in progress"
        conditions = progressing(conditions, reason, message, generation, keep_ready)
    patch: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "replicas": replicas_of(main),
        "readyReplicas": main_ready + canary_ready,
    }
    if canary is not None:
        model = canary_model or (status.get("canary") or {}).get("model")
        if model is not None:
            patch["canary"] = {
                "model": model,
                "replicas": replicas_of(canary),
                "trafficPercent": _canary_share(context, body),
            }
    was_ready = status.get("phase") == "Ready"
    was_ready_for = (get_condition(status.get("conditions"), "Ready") or {}).get("reason")
    was_stuck = get_condition(status.get("conditions"), "Stalled") or {}
    if any(status.get(key) != value for key, value in patch.items()):
        patch_status(context, KIND, body, patch)
    metrics.set_phase(KIND, namespace, name, phase)
    if phase == "Ready" and not (was_ready and was_ready_for == reason):
        post_event(body, reason, message)
    if (
        stuck is not None
        and stuck.final
        and (was_stuck.get("reason"), was_stuck.get("message")) != (stuck.reason, stuck.message)
    ):
        post_event(body, stuck.reason, stuck.message, warning=True)


def _canary_share(context: Context, body: dict[str, Any]) -> int:
    """The share of requests the canary gets now: what the model's Service points at says."""
    meta = body["metadata"]
    service = context.kube.get("v1", "Service", meta["namespace"], service_name(meta["name"]))
    front = ((service or {}).get("spec") or {}).get("selector", {}).get(TRACK_LABEL)
    if front == ROUTER:
        return int(body["spec"]["canary"]["trafficPercent"])
    return 100 if front == CANARY else 0


def _stuck(
    context: Context, namespace: str, tracks: list[dict[str, Any]], serving: bool
) -> pods.PodProblem | None:
    """Why the rollout cannot finish: a server pod that cannot start or keeps crashing (its
    own reason), or a Deployment past its progress deadline with pods that never get ready; a pod
    still waiting for a node only when nothing else stops the rollout.

    While replicas serve, a pod waiting for a node is most often a scale-up the cluster answers
    by itself (a cluster autoscaler adds a node in minutes): it waits as long as its Deployment
    would (progressDeadlineSeconds), not the 20 s a first rollout with nothing serving gets."""
    waiting = None
    for deployment in tracks:
        name = deployment["metadata"]["name"]
        patience = pods.UNSCHEDULABLE_PATIENCE_SECONDS
        if serving:
            patience = float(deployment["spec"].get("progressDeadlineSeconds") or patience)
        refused = _condition(deployment, "ReplicaFailure")
        if refused is not None and refused.get("status") == "True":
            # No pod to look at: the API server refused them (a quota used up, say).
            return pods.PodProblem(
                Reason.FailedCreate, f"Deployment {name}: {refused.get('message')}"
            )
        selector = ",".join(
            f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
        )
        unplaced = None
        for pod in context.kube.list_objects("v1", "Pod", namespace, selector):
            owner = controller(pod["metadata"])
            # The Deployment's own pods: made by one of its ReplicaSets (<deployment>-<hash>).
            if owner.get("kind") != "ReplicaSet" or not owner.get("name", "").startswith(
                f"{name}-"
            ):
                continue
            found = pods.problem(pod, patience)
            if found is not None and found.final:
                return found
            unplaced = unplaced or found
        waiting = waiting or unplaced
        deadline = _past_deadline(deployment)
        if deadline is None:
            continue
        if unplaced is not None:
            # Its pods never got ready because no node took them: the scheduler's words.
            return dataclasses.replace(unplaced, reason=Reason.Unschedulable, final=True)
        if deployment["metadata"]["labels"].get(TRACK_LABEL) != ROUTER:
            return pods.PodProblem(
                Reason.ReadinessNeverReached,
                f"Deployment {name}: {deadline}; its new pods never passed their readiness "
                "probe (see their logs: the model may still be loading)",
            )
        # A router is ready once both tracks answer through their Services: its own deadline
        # says nothing while a track still loads its model, or only just got ready.
        if _tracks_serve(tracks):
            served = deployment["metadata"]["labels"]["modelyard.dev/modeldeployment"]
            stable, canary = (track_service_name(served, track) for track in (MAIN, CANARY))
            return pods.PodProblem(
                Reason.ReadinessNeverReached,
                f"Deployment {name}: {deadline}; its router pods never had an answer from both "
                f"tracks through Services {stable} and {canary}, though both tracks are ready: "
                "a NetworkPolicy may keep the router from reaching their pods (see the router "
                "pods' logs)",
            )
    return waiting


def _condition(deployment: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return get_condition((deployment.get("status") or {}).get("conditions"), type_)


def _past_deadline(deployment: dict[str, Any]) -> str | None:
    """The Deployment controller's message when the rollout made no progress in time."""
    progress = _condition(deployment, "Progressing") or {}
    if progress.get("reason") == "ProgressDeadlineExceeded":
        return str(progress.get("message"))
    return None


def _tracks_serve(deployments: list[dict[str, Any]]) -> bool:
    """Both tracks rolled out and available for ROUTER_GRACE_SECONDS at least."""
    tracks = [d for d in deployments if d["metadata"]["labels"].get(TRACK_LABEL) in (MAIN, CANARY)]
    return len(tracks) == 2 and all(
        rolled_out(track) and _available_for(track) >= ROUTER_GRACE_SECONDS for track in tracks
    )


def _available_for(deployment: dict[str, Any]) -> float:
    """Seconds the Deployment has been Available; 0 when it is not."""
    available = _condition(deployment, "Available") or {}
    if available.get("status") != "True":
        return 0.0
    return pods.seconds_since(available.get("lastTransitionTime"))


def replicas_of(deployment: dict[str, Any]) -> int:
    """The replicas the Deployment asks for."""
    return int((deployment.get("spec") or {}).get("replicas", 1))


def rolled_out(deployment: dict[str, Any]) -> bool:
    """Every replica the Deployment asks for is of its current template and available, by a
    status that describes its current spec (as `kubectl rollout status` checks)."""
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 1)
        and (status.get("updatedReplicas") or 0) >= desired
        and (status.get("availableReplicas") or 0) >= desired
        and (status.get("replicas") or 0) <= desired
    )
