"""`modelyard predict mdep/NAME --data rows.csv|rows.json|-`: rows through the model server of a
ModelDeployment, over the API server's service proxy (or the Service itself inside a pod)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelyard.api.modeldeployment import ModelDeployment
from modelyard.cli import inference
from modelyard.cli.errors import CliError, UsageError
from modelyard.cli.kubeclient import Answer, Kube, Options
from modelyard.cli.output import Painter, dump, table
from modelyard.cli.refs import Ref, parse_ref
from modelyard.cli.status import ready_condition
from modelyard.resources.serving import service_name


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "predict", parents=parents, help="send rows to a ModelDeployment and print predictions"
    )
    parser.add_argument("resource", help="mdep/NAME")
    parser.add_argument(
        "--data",
        "-d",
        required=True,
        help="CSV with a header row, or JSON (a list of objects or lists, or a V2 request); "
        "- reads stdin",
    )
    parser.add_argument(
        "--probabilities", action="store_true", help="also print class probabilities"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ref = parse_ref(args.resource, ModelDeployment.info.kind)
    rows = inference.parse(*_read(args.data))
    kube = Kube.connect(Options.from_args(args))
    try:
        result = predict(kube, ref, rows, args.probabilities)
    finally:
        kube.close()
    if args.output != "table":
        print(dump(result.to_dict(), args.output))
    else:
        print(render(result, Painter.for_stream(sys.stdout)))
    return 0


def _read(name: str) -> tuple[str, str]:
    if name == "-":
        return "stdin", sys.stdin.read()
    try:
        return name, Path(name).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(
            f"{name}: cannot read: {getattr(error, 'strerror', None) or error}"
        ) from None


def predict(
    kube: Kube, ref: Ref, rows: inference.Rows | dict[str, Any], probabilities: bool
) -> inference.Predictions:
    deployment = kube.get(ref)
    url = (deployment.get("status") or {}).get("url")
    service = service_name(ref.name)
    metadata = kube.service_request(service, f"v2/models/{ref.name}", None, url)
    if metadata.status != 200:
        raise CliError(_refusal(ref, deployment, metadata))
    document = metadata.json()
    request = inference.build_request(
        rows,
        document.get("inputs") or [],
        (document.get("parameters") or {}).get("target"),
        probabilities,
    )
    answer = kube.service_request(service, f"v2/models/{ref.name}/infer", request, url)
    if answer.status != 200:
        raise CliError(_refusal(ref, deployment, answer))
    return inference.read_answer(answer.json())


def _refusal(ref: Ref, deployment: dict[str, Any], answer: Answer) -> str:
    """Who said no and why: the model server names the problem in the request; the API server
    answers for a Service without ready endpoints."""
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if isinstance(body, dict) and "error" in body:
        return f"{ref}: the model server refused the request ({answer.status}): {body['error']}"
    status = deployment.get("status") or {}
    ready = ready_condition(status)
    state = ": ".join(
        p
        for p in (status.get("phase") or "Pending", ready.get("reason"), ready.get("message"))
        if p
    )
    message = body.get("message") if isinstance(body, dict) else None
    detail = message or answer.body.decode(errors="replace").strip()[:200]
    return f"{ref} did not answer ({answer.status}: {detail}); it is {state}"


def render(result: inference.Predictions, painter: Painter) -> str:
    headers = ["ROW", "PREDICTION"]
    classes = result.classes or []
    headers += [f"P({_show(label)})" for label in classes]
    rows = []
    for index, prediction in enumerate(result.predictions):
        row = [str(index + 1), _show(prediction)]
        if result.probabilities is not None:
            row += [f"{p:.3f}" for p in result.probabilities[index]]
        rows.append(row)
    return table(headers, rows, painter)


def _show(value: Any) -> str:
    """A label as a person reads it: strings bare, numbers and booleans as JSON writes them."""
    return value if isinstance(value, str) else json.dumps(value)
