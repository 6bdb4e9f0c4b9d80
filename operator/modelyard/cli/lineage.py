"""`modelyard lineage mdep/NAME`: dataset → training run → model → deployment, as a tree.

Everything comes from the three statuses except the model's library versions, which only the
model card in S3 (`model.json` beside the model) records; they are read when the environment
names an S3 endpoint (MODELYARD_S3_ENDPOINT or AWS_ENDPOINT_URL, with AWS credentials).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelyard.api.dataset import Dataset
from modelyard.api.modeldeployment import ModelDeployment
from modelyard.api.trainingjob import TrainingJob
from modelyard.cli.errors import CliError
from modelyard.cli.kubeclient import Kube, Options
from modelyard.cli.output import Painter, dump, short_digest, tone
from modelyard.cli.refs import Ref, parse_ref
from modelyard.cli.status import ready_condition

CARD_ENDPOINT_VARIABLES = ("MODELYARD_S3_ENDPOINT", "AWS_ENDPOINT_URL")


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "lineage",
        parents=parents,
        help="the chain dataset → training run → model → deployment behind a ModelDeployment",
    )
    parser.add_argument("resource", help="mdep/NAME")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ref = parse_ref(args.resource, ModelDeployment.info.kind)
    kube = Kube.connect(Options.from_args(args))
    try:
        document = collect(kube, ref)
    finally:
        kube.close()
    model = document["model"]
    model["libraries"] = card_libraries(model["uri"], model.get("cardDigest"))
    if args.output != "table":
        print(dump(document, args.output))
    else:
        print(render(document, Painter.for_stream(sys.stdout)))
    return 0


def collect(kube: Kube, ref: Ref) -> dict[str, Any]:
    """The lineage as data: what was served, the run that made it, the data that run saw."""
    deployment = kube.get(ref)
    status = deployment.get("status") or {}
    served = status.get("model")
    if not served:
        ready = ready_condition(status)
        why = ": ".join(
            p
            for p in (status.get("phase") or "Pending", ready.get("reason"), ready.get("message"))
            if p
        )
        raise CliError(f"{ref} serves no model yet ({why})")
    training_job = (
        kube.find(Ref(TrainingJob.info, served["trainingJob"]))
        if served.get("trainingJob")
        else None
    )
    dataset_name = served.get("dataset") or (
        ((training_job or {}).get("spec") or {}).get("datasetRef", {}).get("name")
    )
    dataset = kube.find(Ref(Dataset.info, dataset_name)) if dataset_name else None
    return {
        "dataset": _dataset(dataset_name, dataset, served.get("datasetVersion")),
        "trainingRun": _training_run(served, training_job),
        "model": {key: served[key] for key in ("uri", "digest", "cardDigest") if served.get(key)},
        "deployment": _deployment(deployment),
    }


def _dataset(
    name: str | None, dataset: dict[str, Any] | None, version: str | None
) -> dict[str, Any] | None:
    if name is None:
        return None
    status = (dataset or {}).get("status") or {}
    record: dict[str, Any] = next(
        (h for h in status.get("history") or [] if h.get("version") == version), {}
    )
    current = status if status.get("version") == version else {}
    return {
        "name": name,
        "exists": dataset is not None,
        "source": (dataset or {}).get("spec", {}).get("source"),
        "version": version,
        "uri": record.get("uri") or current.get("uri"),
        "rows": record.get("rows", current.get("rows")),
        "columns": current.get("columns"),
    }


def _training_run(
    served: dict[str, Any], training_job: dict[str, Any] | None
) -> dict[str, Any] | None:
    if not served.get("trainingJob"):
        return None
    runs = ((training_job or {}).get("status") or {}).get("runs") or []
    run: dict[str, Any] = next((r for r in runs if r.get("id") == served.get("run")), {})
    return {
        "trainingJob": served["trainingJob"],
        "exists": training_job is not None,
        "run": served.get("run"),
        "phase": run.get("phase"),
        # The run's own record: with spec.candidates the spec names no single estimator.
        "estimator": run.get("estimator")
        or (((training_job or {}).get("spec") or {}).get("estimator") or {}).get("class"),
        "params": run.get("params"),
        "metrics": run.get("metrics"),
        "startedAt": run.get("startedAt"),
        "finishedAt": run.get("finishedAt"),
        "durationSeconds": _seconds_between(run.get("startedAt"), run.get("finishedAt")),
    }


def _deployment(deployment: dict[str, Any]) -> dict[str, Any]:
    status = deployment.get("status") or {}
    ready = ready_condition(status)
    canary = status.get("canary")
    return {
        "name": deployment["metadata"]["name"],
        "phase": status.get("phase") or "Pending",
        "reason": ready.get("reason"),
        "url": status.get("url"),
        "replicas": status.get("replicas"),
        "readyReplicas": status.get("readyReplicas"),
        "servedSince": status.get("servedSince"),
        "canary": (
            {
                "run": canary["model"].get("run"),
                "trainingJob": canary["model"].get("trainingJob"),
                "digest": canary["model"].get("digest"),
                "trafficPercent": canary.get("trafficPercent"),
                "replicas": canary.get("replicas"),
            }
            if canary
            else None
        ),
    }


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (_timestamp(end) - _timestamp(start)).total_seconds()


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def card_libraries(model_uri: str, card_digest: str | None = None) -> dict[str, str] | str:
    """Library versions from the model card, or why they are not shown. A card whose bytes are
    not the ones the training run recorded (`card_digest`) is not believed."""
    if not any(os.environ.get(name) for name in CARD_ENDPOINT_VARIABLES):
        return "not in the status; set MODELYARD_S3_ENDPOINT (and AWS credentials) to read them"
    try:
        from modelyard.storage import layout
        from modelyard.storage.client import Storage
        from modelyard.storage.config import StorageConfig
        from modelyard.storage.digest import bytes_digest
        from modelyard.storage.uri import S3Uri
    except ImportError:
        return "reading the model card needs boto3: pip install 'modelyard[train]'"
    card_uri = S3Uri.parse(model_uri.rsplit("/", 1)[0] + "/" + layout.MODEL_CARD)
    try:
        data = Storage(StorageConfig.from_env()).get_bytes(card_uri)
        card = json.loads(data)
    except Exception as error:  # any storage failure only costs this one line
        return f"model card {card_uri} unreadable: {error}"
    if card_digest is not None and bytes_digest(data) != card_digest:
        return f"model card {card_uri} is not the one the run recorded ({card_digest[:19]}…)"
    libraries = card.get("libraries") if isinstance(card, dict) else None
    return libraries if isinstance(libraries, dict) else f"model card {card_uri} has no libraries"


@dataclass
class Node:
    title: str
    fields: list[tuple[str, str]] = field(default_factory=list)


def render(document: dict[str, Any], painter: Painter) -> str:
    nodes = [
        node
        for node in (
            _dataset_node(document["dataset"]),
            _run_node(document["trainingRun"], painter),
            _model_node(document["model"]),
            _deployment_node(document["deployment"], painter),
        )
        if node is not None
    ]
    lines: list[str] = []
    for depth, node in enumerate(nodes):
        indent = "    " * (depth - 1)
        lines.append(node.title if depth == 0 else f"{indent}└── {node.title}")
        bar = "│   " if depth + 1 < len(nodes) else "    "
        width = max((len(key) for key, _ in node.fields), default=0)
        for key, value in node.fields:
            lines.append(f"{'    ' * depth}{bar}{painter.paint(key.ljust(width), 'dim')}  {value}")
    return "\n".join(lines)


def _dataset_node(dataset: dict[str, Any] | None) -> Node | None:
    if dataset is None:
        return None
    node = Node(f"dataset/{dataset['name']}" + ("" if dataset["exists"] else " (deleted)"))
    if dataset["source"]:
        node.fields.append(("source", _source(dataset["source"])))
    size = ", ".join(
        f"{dataset[key]} {key}" for key in ("rows", "columns") if dataset[key] is not None
    )
    node.fields.append(("version", f"{dataset['version']}" + (f"  ({size})" if size else "")))
    if dataset["uri"]:
        node.fields.append(("snapshot", dataset["uri"]))
    return node


def _source(source: dict[str, Any]) -> str:
    kind, where = next(iter(source.items()))
    return f"{kind} {next(iter(where.values()))}" if isinstance(where, dict) and where else kind


def _run_node(run: dict[str, Any] | None, painter: Painter) -> Node | None:
    if run is None:
        return None
    phase = painter.paint(run["phase"], tone(run["phase"])) if run["phase"] else ""
    deleted = "" if run["exists"] else " (deleted)"
    node = Node(f"trainingjob/{run['trainingJob']}{deleted}  {run['run']}  {phase}".rstrip())
    if run["estimator"]:
        node.fields.append(("estimator", run["estimator"]))
    if run["params"]:
        node.fields.append(("params", _pairs(run["params"])))
    if run["metrics"]:
        node.fields.append(("metrics", _pairs(run["metrics"])))
    if run["durationSeconds"] is not None:
        node.fields.append(("duration", _duration(run["durationSeconds"])))
    return node


def _model_node(model: dict[str, Any]) -> Node:
    libraries = model.get("libraries")
    shown = (
        ", ".join(f"{name} {version}" for name, version in sorted(libraries.items()))
        if isinstance(libraries, dict)
        else f"({libraries})"
    )
    fields = [("digest", model["digest"])]
    if model.get("cardDigest"):
        fields.append(("card", model["cardDigest"]))
    return Node(f"model  {model['uri']}", [*fields, ("libraries", shown)])


def _deployment_node(deployment: dict[str, Any], painter: Painter) -> Node:
    phase = painter.paint(deployment["phase"], tone(deployment["phase"]))
    reason = f" ({deployment['reason']})" if deployment["reason"] else ""
    node = Node(f"modeldeployment/{deployment['name']}  {phase}{reason}")
    if deployment["url"]:
        node.fields.append(("url", deployment["url"]))
    if deployment["replicas"] is not None:
        ready = deployment["readyReplicas"] or 0
        node.fields.append(("replicas", f"{ready}/{deployment['replicas']} ready"))
    canary = deployment["canary"]
    node.fields.append(
        (
            "canary",
            f"{_origin(canary)} ({short_digest(canary['digest'])}), "
            f"{canary['trafficPercent']}% of traffic on {canary['replicas']} replica(s)"
            if canary
            else "none",
        )
    )
    return node


def _origin(model: dict[str, Any]) -> str:
    return f"{model['trainingJob']}/{model['run']}" if model["trainingJob"] else "a model by URI"


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={json.dumps(value)}"
        for key, value in sorted(values.items())
    )


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"
