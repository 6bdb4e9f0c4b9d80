"""`modelyard-worker ingest|train|serve`: the entry point of the trainer and server images."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "ingest": "modelyard.workloads.ingest",
    "train": "modelyard.workloads.train",
    "serve": "modelyard.workloads.serve",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(f"usage: modelyard-worker {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    # Import only the workload asked for: the server image has no pyarrow, the trainer no uvloop.
    module = importlib.import_module(COMMANDS[args[0]])
    code: int = module.main(args[1:])
    return code


if __name__ == "__main__":
    sys.exit(main())
