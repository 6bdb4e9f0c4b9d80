"""docs/benchmarks/chain.md from the milestones of quickstart runs: the goal judged on their median,
where the time goes shown for the median run."""

from __future__ import annotations

import math
import statistics
from typing import Any

GOAL_SECONDS = 10.0
FIRST_PREDICTION = "first prediction"

# Each phase: what it is, and the milestones it runs between.
PHASES: list[tuple[str, str, str]] = [
    ("operator: Dataset to its ingest Job", "Dataset created", "ingest Job created"),
    ("Job to ingest pod", "ingest Job created", "ingest pod created"),
    (
        "ingest pod start (schedule, sandbox, image)",
        "ingest pod created",
        "ingest container started",
    ),
    (
        "ingestion (imports, read, write to S3)",
        "ingest container started",
        "ingest container finished",
    ),
    (
        "operator: ingest container exited to Dataset Ready",
        "ingest container finished",
        "Dataset Ready",
    ),
    ("operator: Dataset Ready to the training Job", "Dataset Ready", "train Job created"),
    ("Job to training pod", "train Job created", "train pod created"),
    ("training pod start", "train pod created", "train container started"),
    (
        "training (imports, read, fit, write the model)",
        "train container started",
        "train container finished",
    ),
    (
        "operator: training container exited to TrainingJob Ready",
        "train container finished",
        "TrainingJob Ready",
    ),
    (
        "operator: TrainingJob Ready to the server Deployment",
        "TrainingJob Ready",
        "server Deployment created",
    ),
    ("Deployment to server pod", "server Deployment created", "server pod created"),
    ("server pod start", "server pod created", "server container started"),
    (
        "server start (imports, model fetch, verify, load) and readiness probe",
        "server container started",
        "server pod ready",
    ),
    ("pod ready to the first answer through the Service", "server pod ready", FIRST_PREDICTION),
]


# What a workload logs of its own process, in the order shown: batch workloads as they exit
# (modelyard.workloads.__main__), the server once its model is loaded (serving/runtime.py).
PROCESS = [
    ("process", "from exec to exit"),
    ("start_up", "interpreter start-up"),
    ("imports", "imports of the workload's modules"),
    ("work", "the work, of which:"),
    ("ready", "from exec to ready to answer (imports, bind, then the model)"),
    ("load", "- model fetch, verify and load"),
]
WORKLOADS = [("ingest", "ingest"), ("train", "training"), ("server", "server (first ready)")]

# A round: {"milestones": {name: seconds after the apply}, "workloads": {workload: {phase:
# seconds}}}, the latter from what the ingest and training processes logged.
Round = dict[str, dict[str, Any]]


def median_round(rounds: list[Round]) -> Round:
    """The round whose first prediction is the median (the lower middle one of an even count)."""
    ordered = sorted(
        rounds, key=lambda round_: round_["milestones"].get(FIRST_PREDICTION, math.inf)
    )
    return ordered[(len(ordered) - 1) // 2]


def markdown(rounds: list[Round], started: str, command: str) -> str:
    median = median_round(rounds)
    milestones: dict[str, float] = median["milestones"]
    total = milestones.get(FIRST_PREDICTION)
    verdict = (
        "not measured" if total is None else ("met" if total <= GOAL_SECONDS else "**missed**")
    )
    totals = sorted(
        r["milestones"][FIRST_PREDICTION] for r in rounds if FIRST_PREDICTION in r["milestones"]
    )
    spread = ", ".join(f"{seconds:.1f}" for seconds in totals)
    lines = [
        "# Whole chain: the quickstart from `kubectl apply` to the first prediction",
        "",
        f"Run {started} with `{command}` (`make bench`): `examples/quickstart` applied to a",
        "fresh namespace of the warm local cluster (images on the node, operator installed by",
        "the chart), the first prediction polled through the API server's service proxy every",
        "50 ms. Milestones are when this client saw them on watches (the API's own timestamps",
        f"have whole seconds). {len(rounds)} round(s), each in a namespace of its own; the goal",
        "is judged on their median, and the tables below show the median round.",
        "",
        "| goal | figure | verdict |",
        "| --- | --- | --- |",
        f"| apply to first prediction ≤ {GOAL_SECONDS:.0f} s, median | "
        f"{'-' if total is None else f'{total:.1f} s'} | {verdict} |",
        "",
        f"Every round's first prediction, in seconds after the apply: {spread or '-'}.",
        "",
        "## Where the time goes (the median round)",
        "",
        "| phase | seconds | share |",
        "| --- | --- | --- |",
    ]
    for label, begin, end in PHASES:
        if begin in milestones and end in milestones:
            seconds = milestones[end] - milestones[begin]
            share = f"{seconds / total:.0%}" if total else "-"
            lines.append(f"| {label} | {seconds:.2f} | {share} |")
        else:
            lines.append(f"| {label} | not seen | |")
    lines += _inside(median.get("workloads") or {}, rounds)
    lines += [
        "",
        "Phases can overlap or leave gaps (the next starts when it sees the last one's end on",
        "its own watch). Container starts and ends are seen when the kubelet reports them, which",
        "it does on its one-second relist: workload phases come in whole seconds. The operator",
        "records a workload's result when its container exits 0, not when the Job controller",
        "marks the Job Complete (`<stage> Job complete` below, one to two seconds later). The",
        "milestones themselves:",
        "",
        "| milestone | seconds after apply |",
        "| --- | --- |",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in milestones.items()),
        "",
    ]
    return "\n".join(lines)


def _inside(workloads: dict[str, dict[str, float]], rounds: list[Round]) -> list[str]:
    """The ingest and training processes' own account of their time: the median round's, and
    the median over every round."""
    if not workloads:
        return []
    lines = [
        "",
        "Inside the workload containers, as each process logged its own time (seconds; the",
        "container's start and end above are seen on the kubelet's relist, up to a second late):",
        "",
        "| workload | part | median round | median of all rounds |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in WORKLOADS:
        seconds = workloads.get(key) or {}
        phases = [name for name in seconds if name not in dict(PROCESS)]
        for name, what in [*PROCESS, *((phase, f"- {phase}") for phase in phases)]:
            if name not in seconds:
                continue
            every = [
                r["workloads"][key][name]
                for r in rounds
                if name in ((r.get("workloads") or {}).get(key) or {})
            ]
            lines.append(
                f"| {label} | {what} | {seconds[name]:.2f} | {statistics.median(every):.2f} |"
            )
    return lines
