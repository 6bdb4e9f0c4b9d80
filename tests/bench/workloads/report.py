"""docs/benchmarks/workloads.md and .png from the measured rounds (medians over rounds)."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tests.bench.workloads.ingest import IngestRound
from tests.bench.workloads.sql import SqlRound
from tests.bench.workloads.training import STARTUP_ROWS, TrainRound

OUT = Path(__file__).resolve().parents[3] / "docs" / "benchmarks"
MIB = 1 << 20
INGEST_THROUGHPUT_GOAL = 0.5  # of pyarrow's
INGEST_RSS_GOAL = 0.25  # of the file size
TRAIN_RATIO_GOAL = 1.2  # of the plain script, after our fixed start-up

T = TypeVar("T")


def median(items: Sequence[T], value: Callable[[T], float]) -> float:
    return statistics.median(value(item) for item in items)


def ingest_figures(rounds: list[IngestRound], csv: Path) -> dict[str, float]:
    size = csv.stat().st_size
    ours = median(rounds, lambda r: r.ours.seconds)
    peer = median(rounds, lambda r: r.peer.seconds)
    # The peer writes a local file; ours also uploads to S3. Without that phase, like for like.
    local = median(rounds, lambda r: r.ours.seconds - r.phases.get("upload", 0.0))
    return {
        "ours_local_s": local,
        "local_ratio": median(
            rounds, lambda r: r.peer.seconds / (r.ours.seconds - r.phases.get("upload", 0.0))
        ),
        "size_mib": size / MIB,
        "rows": rounds[0].rows,
        "ours_s": ours,
        "peer_s": peer,
        "ratio": median(rounds, lambda r: r.peer.seconds / r.ours.seconds),
        "ours_mib_s": size / MIB / ours,
        "peer_mib_s": size / MIB / peer,
        "ours_rss_mib": median(rounds, lambda r: r.ours.peak_rss_bytes) / MIB,
        "peer_rss_mib": median(rounds, lambda r: r.peer.peak_rss_bytes) / MIB,
        "rss_share": median(rounds, lambda r: r.ours.peak_rss_bytes) / size,
    }


def print_ingest(rounds: list[IngestRound], csv: Path) -> None:
    figures = ingest_figures(rounds, csv)
    print(", ".join(f"{key}={value:.3g}" for key, value in figures.items()), file=sys.stderr)
    for index, item in enumerate(rounds):
        print(f"round {index}: ours phases {item.phases}", file=sys.stderr)


def _goal(met: bool) -> str:
    return "met" if met else "**missed**"


def _ingest_section(rounds: list[IngestRound], csv: Path) -> list[str]:
    f = ingest_figures(rounds, csv)
    phases = sorted({name for item in rounds for name in item.phases})
    lines = [
        "## Ingest",
        "",
        f"One seeded CSV of {f['size_mib']:.0f} MiB ({f['rows']:.0f} rows: 12 float columns, "
        "one 4-valued text column, a 3-class label). Ours: `modelyard-worker ingest` reading it "
        "over HTTP from loopback and publishing the normalized snapshot to S3 (read, type, "
        "validate, content digest, statistics, seeded split, Parquet zstd, upload, manifest). "
        "Peer: `pyarrow.csv.read_csv` + `pyarrow.parquet.write_table(compression='zstd')` from "
        "and to local disk. Medians of the interleaved rounds; peak RSS is the child's own VmHWM "
        "(logged by our worker, sampled from /proc for the peer).",
        "",
        "| | ours | pyarrow | goal |",
        "| --- | ---: | ---: | --- |",
        f"| wall time | {f['ours_s']:.1f} s | {f['peer_s']:.1f} s | |",
        f"| throughput | {f['ours_mib_s']:.0f} MiB/s | {f['peer_mib_s']:.0f} MiB/s | "
        f"ours ≥ {INGEST_THROUGHPUT_GOAL}x pyarrow: {f['ratio']:.2f}x — "
        f"{_goal(f['ratio'] >= INGEST_THROUGHPUT_GOAL)} |",
        f"| without the S3 upload | {f['ours_local_s']:.1f} s | {f['peer_s']:.1f} s | "
        f"like for like (the peer uploads nothing): {f['local_ratio']:.2f}x — "
        f"{_goal(f['local_ratio'] >= INGEST_THROUGHPUT_GOAL)} |",
        f"| peak RSS | {f['ours_rss_mib']:.0f} MiB | {f['peer_rss_mib']:.0f} MiB | "
        f"ours ≤ {INGEST_RSS_GOAL:.0%} of the file: {f['rss_share']:.1%} — "
        f"{_goal(f['rss_share'] <= INGEST_RSS_GOAL)} |",
        "",
        "Where our time goes (the worker's own phase log, median seconds):",
        "",
        "| phase | seconds |",
        "| --- | ---: |",
    ]
    for name in phases:
        seconds = statistics.median(r.phases[name] for r in rounds if name in r.phases)
        lines.append(f"| {name} | {seconds:.1f} |")
    return [*lines, ""]


def sql_figures(rounds: list[SqlRound]) -> dict[str, float]:
    return {
        "rows": rounds[0].rows,
        "table_mib": rounds[0].table_bytes / MIB,
        "ours_s": median(rounds, lambda r: r.ours.seconds),
        "peer_s": median(rounds, lambda r: r.peer.seconds),
        "ours_local_s": median(rounds, lambda r: r.ours.seconds - r.phases.get("upload", 0.0)),
        "time_ratio": median(rounds, lambda r: r.ours.seconds / r.peer.seconds),
        "ours_rss_mib": median(rounds, lambda r: r.ours.peak_rss_bytes) / MIB,
        "peer_rss_mib": median(rounds, lambda r: r.peer.peak_rss_bytes) / MIB,
    }


def print_sql(rounds: list[SqlRound]) -> None:
    figures = sql_figures(rounds)
    print("sql: " + ", ".join(f"{k}={v:.3g}" for k, v in figures.items()), file=sys.stderr)


def _sql_section(rounds: list[SqlRound]) -> list[str]:
    if not rounds:
        return []
    f = sql_figures(rounds)
    return [
        "## Ingest from PostgreSQL",
        "",
        f"A seeded table of {f['rows']:,.0f} rows ({f['table_mib']:.0f} MiB in PostgreSQL: an "
        "id, 12 float columns, one 4-valued text column, a 3-class label), generated "
        "server-side by Debian's PostgreSQL on loopback. Ours: `modelyard-worker ingest` of "
        "a `sql` source (`SELECT * ... ORDER BY id` streamed in 4 MiB batches through ADBC, "
        "then the same pipeline as the CSV: digest, statistics, split, Parquet, upload). Peer: "
        "the same query through the same driver's `cursor.fetch_arrow_table()`, which holds "
        "the whole result in memory and does nothing else. Each in its own process; medians of "
        "the interleaved rounds; peak RSS is the child's own VmHWM.",
        "",
        "| | ours | ADBC fetch_arrow_table | ours ÷ ADBC |",
        "| --- | ---: | ---: | ---: |",
        f"| wall time | {f['ours_s']:.1f} s | {f['peer_s']:.1f} s | {f['time_ratio']:.2f}x |",
        f"| without the S3 upload | {f['ours_local_s']:.1f} s | {f['peer_s']:.1f} s | "
        f"{f['ours_local_s'] / f['peer_s']:.2f}x |",
        f"| peak RSS | {f['ours_rss_mib']:.0f} MiB | {f['peer_rss_mib']:.0f} MiB | "
        f"{f['ours_rss_mib'] / f['peer_rss_mib']:.2f}x |",
        "",
    ]


def _train_groups(rounds: list[TrainRound]) -> dict[tuple[str, int], list[TrainRound]]:
    groups: dict[tuple[str, int], list[TrainRound]] = {}
    for item in rounds:
        groups.setdefault((item.estimator, item.rows), []).append(item)
    return groups


def _startup(rounds: list[TrainRound], estimator: str) -> float:
    """Our fixed cost beyond the plain script's: the difference at STARTUP_ROWS."""
    tiny = [r for r in rounds if r.estimator == estimator and r.rows == STARTUP_ROWS]
    return median(tiny, lambda r: r.ours.seconds - r.peer.seconds)


def _train_section(rounds: list[TrainRound]) -> list[str]:
    if not rounds:
        return []
    lines = [
        "## Training",
        "",
        "Ours: `modelyard-worker train` on the Dataset version ingested from the CSV (download "
        "snapshot and split, impute + scale + one-hot pipeline, fit, evaluate on the held-out "
        "split, model card, joblib upload, manifest). Peer: a plain script (`plain_sklearn.py`) "
        "that reads the CSV with pyarrow, splits, fits a scale + one-hot pipeline with the same "
        f"estimator and computes the same three metrics. The {STARTUP_ROWS}-row rows measure "
        "fixed start-up: ours minus the plain script's time there is our fixed start-up, and "
        f"the goal is ours ≤ {TRAIN_RATIO_GOAL}x plain + that start-up.",
        "",
        "| estimator | rows | ours | plain | ratio | fixed start-up | goal |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (estimator, rows), group in _train_groups(rounds).items():
        ours = median(group, lambda r: r.ours.seconds)
        peer = median(group, lambda r: r.peer.seconds)
        startup = _startup(rounds, estimator)
        met = ours <= TRAIN_RATIO_GOAL * peer + startup
        goal = "(start-up)" if rows == STARTUP_ROWS else _goal(met)
        lines.append(
            f"| {estimator.rpartition('.')[2]} | {rows:,} | {ours:.1f} s | {peer:.1f} s | "
            f"{ours / peer:.2f}x | {startup:.1f} s | {goal} |"
        )
    return [*lines, ""]


def _chart(path: Path, ingest: dict[str, float], rounds: list[TrainRound]) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(["ours", "pyarrow"], [ingest["ours_mib_s"], ingest["peer_mib_s"]], color=["C0", "C1"])
    left.set_title(f"Ingest of a {ingest['size_mib']:.0f} MiB CSV")
    left.set_ylabel("MiB/s (higher is better)")
    groups = _train_groups(rounds)
    labels = [f"{e.rpartition('.')[2][:14]}\n{rows:,}" for e, rows in groups]
    positions = range(len(labels))
    ours = [median(g, lambda r: r.ours.seconds) for g in groups.values()]
    peer = [median(g, lambda r: r.peer.seconds) for g in groups.values()]
    right.bar([p - 0.2 for p in positions], ours, width=0.4, label="ours", color="C0")
    right.bar([p + 0.2 for p in positions], peer, width=0.4, label="plain sklearn", color="C1")
    right.set_xticks(list(positions), labels, fontsize=7)
    right.set_ylabel("seconds (lower is better)")
    right.set_title("Training wall time")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(
    out: Path,
    *,
    command: str,
    when: datetime,
    csv: Path,
    s3: str,
    ingest_rounds: list[IngestRound],
    train_rounds: list[TrainRound],
    sql_rounds: list[SqlRound],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Workloads: ingest and training",
        "",
        f"`{command}` at {when:%Y-%m-%d %H:%M} UTC, {len(ingest_rounds)} interleaved rounds, "
        f"S3: {s3}. Reproduce with `make bench` (full: 2 GiB CSV) or `make bench-quick`.",
        "",
        "![ingest and training](workloads.png)",
        "",
        *_ingest_section(ingest_rounds, csv),
        *_sql_section(sql_rounds),
        *_train_section(train_rounds),
    ]
    notes = Path(__file__).with_name("NOTES.md")
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    (out / "workloads.md").write_text("\n".join(lines))
    _chart(out / "workloads.png", ingest_figures(ingest_rounds, csv), train_rounds)
    print(f"wrote {out / 'workloads.md'} and workloads.png", file=sys.stderr)
