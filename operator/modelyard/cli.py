"""The `modelyard` command: run the operator, print CRDs, validate manifests."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from modelyard import __version__


def _cmd_version(_: argparse.Namespace) -> int:
    print(f"modelyard {__version__}")
    return 0


def _cmd_crds(args: argparse.Namespace) -> int:
    from modelyard import apidocs, crds

    if args.docs:
        Path(args.docs).write_text(apidocs.render_reference())
        print(f"wrote {args.docs}", file=sys.stderr)
    if args.output_dir:
        for path in crds.write_all(Path(args.output_dir)):
            print(f"wrote {path}", file=sys.stderr)
        return 0
    sys.stdout.write("---\n".join(crds.render_all().values()))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from modelyard.manifests import ManifestError, load

    failed = 0
    for name in args.files:
        try:
            objects = load(Path(name))
        except ManifestError as error:
            failed += 1
            print(f"{name}: invalid\n{error}", file=sys.stderr)
            continue
        for obj in objects:
            print(f"{name}: {obj.info.kind}/{obj.metadata.name} valid")
    return 1 if failed else 0


def _cmd_operator(args: argparse.Namespace) -> int:
    from modelyard.config import OperatorConfig
    from modelyard.controllers.runner import run

    namespaces = args.namespace or list(OperatorConfig.from_env().namespaces)
    run(namespaces=namespaces, liveness_port=args.liveness_port, standalone=args.standalone)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelyard", description="Kubernetes-native MLOps: datasets, training, serving."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("version", help="print the version").set_defaults(func=_cmd_version)

    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions as YAML")
    crds.add_argument("--output-dir", help="write one file per kind here instead of printing")
    crds.add_argument("--docs", help="also write the API field reference (Markdown) to this file")
    crds.set_defaults(func=_cmd_crds)

    validate = commands.add_parser("validate", help="check manifests against the API models")
    validate.add_argument("files", nargs="+", help="YAML files with Modelyard objects")
    validate.set_defaults(func=_cmd_validate)

    operator = commands.add_parser("operator", help="run the operator against the current cluster")
    operator.add_argument(
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable; default: $MODELYARD_NAMESPACES, else all)",
    )
    operator.add_argument(
        "--liveness-port", type=int, default=8080, help="port of the /healthz probe endpoint"
    )
    operator.add_argument(
        "--standalone", action="store_true", help="no peering: for a single local replica"
    )
    operator.set_defaults(func=_cmd_operator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
