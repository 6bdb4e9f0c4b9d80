"""Entry point: `python -m tests.bench.chain [--quick]` (five rounds; one with --quick).

Runs tests/e2e/test_chain_budget.py on the local cluster (images built and the chart installed
by the e2e fixtures, as `make test-e2e` does), then writes docs/benchmarks/chain.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.chain.report import markdown
from tests.conftest import REPO

DOCS = REPO / "docs" / "benchmarks"
ROUNDS = 5


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.chain")
    parser.add_argument("--quick", action="store_true", help="accepted for make bench-quick")
    parser.add_argument("--output", type=Path, default=DOCS, help="where chain.md goes")
    parser.add_argument(
        "--report-only", action="store_true", help="write chain.md again from chain.json"
    )
    args = parser.parse_args()
    raw = args.output / "chain.json"
    if args.report_only:
        run = json.loads(raw.read_text())
        (args.output / "chain.md").write_text(
            markdown(run["rounds"], run["started"], run["command"])
        )
        return 0
    with tempfile.TemporaryDirectory() as directory:
        milestones_file = Path(directory) / "milestones.json"
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        subprocess.run(
            [
                *(sys.executable, "-m", "pytest", "tests/e2e/test_chain_budget.py"),
                *("-m", "bench", "-p", "no:cacheprovider", "-q"),
            ],
            check=True,
            cwd=REPO,
            env={
                **os.environ,
                "MODELYARD_CHAIN_BUDGET_OUTPUT": str(milestones_file),
                "MODELYARD_CHAIN_BUDGET_ROUNDS": "1" if args.quick else str(ROUNDS),
            },
        )
        rounds = [json.loads(line) for line in milestones_file.read_text().splitlines()]
    args.output.mkdir(parents=True, exist_ok=True)
    command = "python -m tests.bench.chain" + (" --quick" if args.quick else "")
    raw.write_text(json.dumps({"started": started, "command": command, "rounds": rounds}, indent=1))
    (args.output / "chain.md").write_text(markdown(rounds, started, command))
    print(f"wrote {args.output / 'chain.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
