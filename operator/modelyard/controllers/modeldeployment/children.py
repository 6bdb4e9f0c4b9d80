"""The serving children of a ModelDeployment, applied only where they are its own.

Children have stable, user-visible names (the Service is the model's URL), so a name can already
be taken: by another object's child, or by something a user made. The operator applies and
deletes a child only when its controller is this ModelDeployment, or a ModelDeployment of the
same name that no longer exists (an orphan of `kubectl delete --cascade=orphan`, taken over);
anything else is a NameConflict, reported, never overwritten.
"""

from __future__ import annotations

import logging
from typing import Any

from modelyard.api.common import StorageSpec
from modelyard.api.dataset import DatasetSpec
from modelyard.api.modeldeployment import ModelDeploymentSpec
from modelyard.controllers.context import Context
from modelyard.controllers.kube import Manifest
from modelyard.controllers.modeldeployment.handover import WAIT_SECONDS, endpoints_follow
from modelyard.controllers.modeldeployment.rollout import replicas_of, rolled_out
from modelyard.controllers.provenance import controller, controller_uid
from modelyard.resources.jobs import Owner
from modelyard.resources.router import (
    ROUTER,
    build_router,
    build_router_config,
    build_track_service,
    router_name,
    track_service_name,
)
from modelyard.resources.serving import (
    CANARY,
    MAIN,
    TRACK_LABEL,
    ModelRef,
    build_deployment,
    build_hpa,
    build_pdb,
    build_service,
    deployment_name,
    service_name,
    split_replicas,
)

KIND = "ModelDeployment"
log = logging.getLogger(__name__)


class NameConflict(Exception):
    """A child's name is held by an object that is not this ModelDeployment's."""


def _holder(context: Context, owner: Owner, existing: Manifest) -> str | None:
    """Who holds `existing` when it is not ours to change, or None when it is."""
    uid = controller_uid(existing["metadata"])
    if uid == owner.uid:
        return None
    reference = controller(existing["metadata"])
    if reference.get("kind") == KIND and reference.get("name") == owner.name:
        return None  # our predecessor under this name is gone (its UID differs from ours)
    if not reference:
        return "nobody (it was not made by the operator)"
    return f"{reference.get('kind')} {reference.get('name')}"


def _check(
    context: Context, owner: Owner, api_version: str, kind: str, name: str
) -> Manifest | None:
    existing = context.kube.get(api_version, kind, owner.namespace, name)
    if existing is not None:
        holder = _holder(context, owner, existing)
        if holder is not None:
            raise NameConflict(f"{kind} {name} exists and belongs to {holder}")
    return existing


def _apply(context: Context, owner: Owner, manifest: Manifest) -> None:
    meta = manifest["metadata"]
    _check(context, owner, manifest["apiVersion"], manifest["kind"], meta["name"])
    context.kube.apply(manifest)


def _delete(context: Context, owner: Owner, api_version: str, kind: str, name: str) -> None:
    existing = context.kube.get(api_version, kind, owner.namespace, name)
    if existing is not None and controller_uid(existing["metadata"]) == owner.uid:
        context.kube.delete(api_version, kind, owner.namespace, name)


def apply_children(
    context: Context,
    body: dict[str, Any],
    spec: ModelDeploymentSpec,
    main: dict[str, Any],
    canary: dict[str, Any] | None,
) -> None:
    meta = body["metadata"]
    owner = Owner(KIND, meta["name"], meta["namespace"], meta["uid"])
    config = context.config
    percent = (spec.canary.traffic_percent if spec.canary and canary else 0) or 0
    if spec.autoscaling:
        main_replicas: int | None = None  # the HPA owns the count
        total = spec.autoscaling.min_replicas
        canary_replicas = split_replicas(total, percent)[1]
    else:
        total = 1 if spec.replicas is None else spec.replicas
        main_replicas, canary_replicas = split_replicas(total, percent)
    routing = 0 < percent < 100
    # The Deployments as they are now, read once: what is ready decides where the Service points,
    # what exists what may go.
    now = {
        track: context.kube.get("apps/v1", "Deployment", owner.namespace, name)
        for track, name in (
            (MAIN, deployment_name(owner.name, MAIN)),
            (CANARY, deployment_name(owner.name, CANARY)),
            (ROUTER, router_name(owner.name)),
        )
    }
    wanted = ROUTER if routing else CANARY if percent >= 100 else MAIN
    needed = {
        MAIN: main_replicas if main_replicas is not None else total,
        CANARY: canary_replicas,
        ROUTER: 1,
    }[wanted]
    front = _front(context, owner, wanted, ready_to_serve(now[wanted], needed))
    if main_replicas == 0 and front != CANARY:
        main_replicas = total  # the main track serves until the canary can take everything
    # What the Service leaves goes only once its endpoints are the new front's pods alone.
    main_deployment = now[MAIN]
    main_now = 0 if main_deployment is None else replicas_of(main_deployment)
    main_goes = main_replicas == 0 and main_now > 0
    router_goes = not routing and front != ROUTER and now[ROUTER] is not None
    canary_goes = not (canary and percent) and front != CANARY and now[CANARY] is not None
    main_model = model_ref(context, owner, main)
    serving = main_now if main_goes else main_replicas
    _apply(context, owner, build_deployment(owner, spec, MAIN, main_model, serving, config))
    if canary and percent:
        model = model_ref(context, owner, canary)
        replicas = None if spec.autoscaling else canary_replicas
        _apply(context, owner, build_deployment(owner, spec, CANARY, model, replicas, config))
    if routing:
        for track in (MAIN, CANARY):
            _apply(context, owner, build_track_service(owner, track))
        _apply(context, owner, build_router_config(owner, percent))
        _apply(context, owner, build_router(owner, percent, 2 if total > 1 else 1, config))
    _apply(context, owner, build_service(owner, front))
    if (main_goes or router_goes or canary_goes) and not endpoints_follow(
        context,
        owner.namespace,
        service_name(owner.name),
        f"modelyard.dev/modeldeployment={owner.name},{TRACK_LABEL}={front}",
    ):
        log.warning(
            "%s/%s: the Service's endpoints are not on the %s track after %.0f s; what it left "
            "goes now",
            owner.namespace,
            owner.name,
            front,
            WAIT_SECONDS,
        )
    if main_goes:
        _apply(context, owner, build_deployment(owner, spec, MAIN, main_model, 0, config))
    if not routing and front != ROUTER:
        _delete(context, owner, "apps/v1", "Deployment", router_name(owner.name))
        _delete(context, owner, "v1", "ConfigMap", router_name(owner.name))
        for track in (MAIN, CANARY):
            _delete(context, owner, "v1", "Service", track_service_name(owner.name, track))
    if canary_goes:
        _delete(context, owner, "apps/v1", "Deployment", deployment_name(owner.name, CANARY))
    _apply_autoscalers(context, owner, spec, percent if canary else 0)
    pdb = build_pdb(owner)
    if total > 1:
        _apply(context, owner, pdb)
    else:
        _delete(context, owner, "policy/v1", "PodDisruptionBudget", pdb["metadata"]["name"])


def _apply_autoscalers(
    context: Context, owner: Owner, spec: ModelDeploymentSpec, percent: int
) -> None:
    """An autoscaler per track that serves: with weights, each track scales on its own load."""
    for track, share in ((MAIN, 100), (CANARY, percent)):
        if spec.autoscaling and share:
            _apply(context, owner, build_hpa(owner, spec.autoscaling, track, share))
        else:
            name = deployment_name(owner.name, track)
            _delete(context, owner, "autoscaling/v2", "HorizontalPodAutoscaler", name)


def _front(context: Context, owner: Owner, wanted: str, wanted_ready: bool) -> str:
    """The track the model's Service sends requests to: the one the spec wants once its
    Deployment is ready, until then the one it sends them to now (never a router on its way
    out), so a change of tracks never sends requests to pods not ready to take them. A new
    Service starts on the main track."""
    found = context.kube.get("v1", "Service", owner.namespace, service_name(owner.name)) or {}
    current = ((found.get("spec") or {}).get("selector") or {}).get(TRACK_LABEL)
    if current == wanted or wanted_ready:
        return wanted
    return CANARY if current == CANARY else MAIN


def ready_to_serve(deployment: Manifest | None, replicas: int) -> bool:
    """Whether the Deployment has rolled out `replicas` pods at least (one at least): a status
    from before a scale-down still counts the pods that went, and ready pods of an older
    template are not the ones asked for."""
    return (
        deployment is not None
        and rolled_out(deployment)
        and replicas_of(deployment) >= max(replicas, 1)
    )


def model_ref(context: Context, owner: Owner, model: dict[str, Any]) -> ModelRef:
    """The model, with its Dataset's storage settings when it came from a training run."""
    storage = None
    if model.get("dataset"):
        dataset = context.kube.custom("Dataset", owner.namespace, model["dataset"])
        if dataset is not None:
            storage = DatasetSpec.model_validate(dataset["spec"]).storage
    if model.get("endpoint"):
        # Read where it was written: a later change of the operator's storage settings must not
        # roll its servers onto a store that does not hold it.
        storage = (storage or StorageSpec()).model_copy(update={"endpoint": model["endpoint"]})
    return ModelRef(model["uri"], model["digest"], model.get("cardDigest"), storage)
