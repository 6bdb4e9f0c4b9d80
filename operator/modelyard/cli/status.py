"""`modelyard status [KIND[/NAME]]`: the Modelyard resources of a namespace, one line each, with
phase, Ready reason and the result that matters for the kind (version, metric, URL)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from modelyard.api import KINDS
from modelyard.api.common import KindInfo
from modelyard.cli.kubeclient import Kube, Options
from modelyard.cli.output import Cell, Painter, age, dump, short_digest, table, tone
from modelyard.cli.refs import kind_of, parse_ref
from modelyard.controllers.conditions import get_condition


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "status",
        parents=parents,
        help="phase, Ready reason and results of the Modelyard resources in a namespace",
    )
    parser.add_argument(
        "resource", nargs="?", help="KIND (e.g. tj) or KIND/NAME (e.g. mdep/iris); default: all"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The argument is checked before connecting: a typo is a usage error even without a cluster.
    ref = parse_ref(args.resource) if args.resource and "/" in args.resource else None
    infos = [kind_of(args.resource)] if args.resource and ref is None else [k.info for k in KINDS]
    kube = Kube.connect(Options.from_args(args))
    try:
        objects = [kube.get(ref)] if ref else _objects(kube, infos)
    finally:
        kube.close()
    summaries = [summarize(obj) for obj in objects]
    if args.output != "table":
        print(dump(summaries, args.output))
        return 0
    if not summaries:
        print(f"No Modelyard resources found in namespace {kube.namespace}.", file=sys.stderr)
        return 0
    print(render(summaries, Painter.for_stream(sys.stdout)))
    return 0


def _objects(kube: Kube, infos: list[KindInfo]) -> list[dict[str, Any]]:
    objects = []
    for info in infos:  # chain order: datasets, then training, then serving
        objects.extend(sorted(kube.objects(info), key=lambda o: str(o["metadata"]["name"])))
    return objects


def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    return get_condition(status.get("conditions"), "Ready") or {}


def summarize(obj: dict[str, Any]) -> dict[str, Any]:
    """What the table shows, as data for -o json|yaml."""
    info = kind_of(obj["kind"])
    status = obj.get("status") or {}
    ready = ready_condition(status)
    return {
        "kind": info.kind,
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"].get("namespace"),
        "phase": status.get("phase") or "Pending",
        "ready": ready.get("status", "Unknown"),
        "reason": ready.get("reason", ""),
        "message": ready.get("message", ""),
        "result": result(info.kind, status),
        "created": obj["metadata"].get("creationTimestamp"),
    }


def result(kind: str, status: dict[str, Any]) -> str:
    """The one line that tells how far the resource got: a version, a score, a URL."""
    if kind == "Dataset":
        parts = [short_digest(status.get("version"))]
        if status.get("rows") is not None:
            parts.append(f"{status['rows']} rows")
        return " ".join(p for p in parts if p)
    if kind == "TrainingJob":
        metric = status.get("primaryMetric") or {}
        parts = [status.get("latestRun") or ""]
        if metric:
            parts.append(f"{metric['name']}={metric['value']:.4g}")
        runs = status.get("runs") or []
        if runs and runs[-1].get("phase") in ("Pending", "Running"):
            parts.append(f"({runs[-1]['id']} {runs[-1]['phase'].lower()})")
        return " ".join(p for p in parts if p)
    parts = [status.get("url") or ""]
    if status.get("replicas") is not None:
        parts.append(f"{status.get('readyReplicas') or 0}/{status['replicas']} ready")
    canary = status.get("canary")
    if canary:
        parts.append(f"canary {canary.get('trafficPercent', 0)}%")
    return " ".join(p for p in parts if p)


def render(summaries: list[dict[str, Any]], painter: Painter) -> str:
    rows = [
        [
            f"{kind_of(s['kind']).singular}/{s['name']}",
            Cell(s["phase"], tone(s["phase"])),
            Cell(s["ready"], tone(s["ready"])),
            s["reason"],
            s["result"],
            age(s["created"]),
        ]
        for s in summaries
    ]
    return table(["RESOURCE", "PHASE", "READY", "REASON", "RESULT", "AGE"], rows, painter)
