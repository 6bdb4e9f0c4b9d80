"""`modelyard-worker ingest|train|serve`: the entry point of the trainer and server images."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from modelyard.workloads.common.timing import log_process_time, seconds_since_exec

COMMANDS = {
    "ingest": "modelyard.workloads.ingest.run",
    "train": "modelyard.workloads.training.run",
    "serve": "modelyard.workloads.serving",
}
# Batch workloads: once they return, the termination message is written and their files are
# cleaned up, and nothing is left to do.
BATCH = frozenset({"ingest", "train"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run a workload; with `argv` None (the process's own entry point), a batch workload ends
    the process itself, without interpreter finalization: pyarrow's read-ahead threads on a
    Python stream that failed part-way can abort the interpreter as it shuts down (SIGABRT,
    exit 134), which would turn a clean failure into a crash the Job retries.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(f"usage: modelyard-worker {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    before_imports = seconds_since_exec()
    # Import only the workload asked for: the server image has no pyarrow, the trainer no uvloop.
    module = importlib.import_module(COMMANDS[args[0]])
    after_imports = seconds_since_exec()
    code: int = module.main(args[1:])
    if argv is None and args[0] in BATCH:
        log_process_time(args[0], before_imports, after_imports)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
