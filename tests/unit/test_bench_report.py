"""The benchmarks' README names the machine each section ran on, not the one that assembled it."""

from __future__ import annotations

from tests.bench import report

XEON = ["- CPU: Xeon, 2 logical cores", "- Memory: 23.5 GiB", "- Kernel: Linux 6"]
EPYC = ["- CPU: EPYC, 2 logical cores", "- Memory: 23.5 GiB", "- Kernel: Linux 6"]


def _pages(operator: str) -> dict[str, str | None]:
    pages: dict[str, str | None] = {suite: None for suite, _ in report.SUITES}
    pages["serving"] = "# Model serving\n\nRun on Saturday.\n"
    pages["operator"] = operator
    return pages


def test_a_suite_rerun_elsewhere_names_its_machine_and_leaves_the_others_theirs() -> None:
    first, recorded = report.assemble(_pages("# Operator\n\nfirst run\n"), {}, XEON)
    assert "Xeon" in first.split("## ")[0], "one machine: named once, at the top"
    again, same = report.assemble(_pages("# Operator\n\nfirst run\n"), recorded, EPYC)
    assert again == first and same == recorded, "nothing rerun: nothing relabelled"
    rerun, machines = report.assemble(_pages("# Operator\n\nsecond run\n"), recorded, EPYC)
    serving, operator = rerun.split("## Model serving")[1].split("## Operator")
    assert "Xeon" in serving and "EPYC" not in serving
    assert "EPYC" in operator and "Xeon" not in operator
    assert "The sections ran on different machines" in rerun.split("## ")[0]
    assert machines["serving"]["machine"] == XEON and machines["operator"]["machine"] == EPYC


def test_a_suite_not_run_yet_says_so() -> None:
    readme, machines = report.assemble(_pages("# Operator\n\nrun\n"), {}, XEON)
    assert "Not run yet: `make bench` (or `python -m tests.bench.chain`)." in readme
    assert "chain" not in machines
