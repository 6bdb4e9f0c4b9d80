"""Commands that need no cluster connection of their own: version, crds, validate, operator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelyard import __version__


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser("version", help="print the version").set_defaults(func=_version)

    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions as YAML")
    crds.add_argument("--output-dir", help="write one file per kind here instead of printing")
    crds.add_argument("--docs", help="also write the API field reference (Markdown) to this file")
    crds.set_defaults(func=_crds)

    validate = commands.add_parser("validate", help="check manifests against the API models")
    validate.add_argument("files", nargs="+", help="YAML files with Modelyard objects")
    validate.set_defaults(func=_validate)

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
    operator.set_defaults(func=_operator)


def _version(_: argparse.Namespace) -> int:
    print(f"modelyard {__version__}")
    return 0


def _crds(args: argparse.Namespace) -> int:
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


def _validate(args: argparse.Namespace) -> int:
    import yaml

    from modelyard.manifests import ManifestError, load

    failed = 0
    for name in args.files:
        try:
            objects = load(Path(name))
        except ManifestError as error:
            failed += 1
            print(f"{name}: invalid\n{error}", file=sys.stderr)
            continue
        except (OSError, yaml.YAMLError) as error:
            failed += 1
            print(
                f"{name}: cannot read: {getattr(error, 'strerror', None) or error}", file=sys.stderr
            )
            continue
        for obj in objects:
            print(f"{name}: {obj.info.kind}/{obj.metadata.name} valid")
    return 1 if failed else 0


def _operator(args: argparse.Namespace) -> int:
    # The operator's calls go through controllers/kube.py, never the official client, but kopf
    # imports that client whenever it is installed: 14 MiB resident (operator-memory.md), and the
    # image has it for `uninstall-cleanup` only. None in sys.modules makes the import fail as if
    # it were not installed.
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    from modelyard.config import OperatorConfig
    from modelyard.controllers.runner import run

    namespaces = args.namespace or list(OperatorConfig.from_env().namespaces)
    run(namespaces=namespaces, liveness_port=args.liveness_port, standalone=args.standalone)
    return 0
