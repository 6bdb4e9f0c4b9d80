"""The `modelyard` command line; `kubectl modelyard` is the same command as a kubectl plugin."""

from modelyard.cli.main import build_parser, kubectl_plugin, main

__all__ = ["build_parser", "kubectl_plugin", "main"]
