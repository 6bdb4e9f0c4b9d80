"""The `modelyard` command (also `kubectl modelyard`): the parser, and errors as one line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from modelyard.cli import lineage, local, logs, predict, report, status, uninstall, wait
from modelyard.cli.errors import CliError
from modelyard.cli.output import FORMATS
from modelyard.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED


def _connection_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "-n", "--namespace", help="namespace (default: the current context's, else default)"
    )
    flags.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    flags.add_argument("--context", help="kubeconfig context (default: the current one)")
    return flags


def _output_flag() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "-o", "--output", choices=FORMATS, default="table", help="table (default), json or yaml"
    )
    return flags


def build_parser(prog: str = "modelyard") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Kubernetes-native MLOps: datasets, training, serving."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local.add_parsers(commands)
    connection, output = _connection_flags(), _output_flag()
    status.add_parser(commands, [connection, output])
    lineage.add_parser(commands, [connection, output])
    predict.add_parser(commands, [connection, output])
    logs.add_parser(commands, [connection])
    report.add_parser(commands, [connection])
    wait.add_parser(commands, [connection])
    uninstall.add_parser(commands, [connection])
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "modelyard") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        code: int = args.func(args)
    except CliError as error:
        return error.tell()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `modelyard logs … | head`: the reader left; the interpreter must not write there again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return code


def kubectl_plugin() -> int:
    """`kubectl modelyard …` runs the executable kubectl-modelyard found on $PATH."""
    return main(prog="kubectl modelyard")
