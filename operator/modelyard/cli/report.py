"""`modelyard report TRAININGJOB [--run N]`: download a training run's evaluation report
(report.html and its PNG plots) from S3 into a directory, and print the run's findings.

The run's status records report.html's sha256; a page with other bytes is refused, and so is a
plot whose sha256 differs from the one the verified page pins (layout.REPORT_PLOT_PIN).
S3 is read with the caller's own configuration: MODELYARD_S3_ENDPOINT (or AWS_ENDPOINT_URL) and
the AWS credentials of the environment, as `modelyard lineage` reads model cards.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import webbrowser
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from modelyard.api.trainingjob import TrainingJob
from modelyard.cli.errors import CliError, UsageError
from modelyard.cli.kubeclient import Kube, Options
from modelyard.cli.lineage import CARD_ENDPOINT_VARIABLES
from modelyard.cli.output import Painter
from modelyard.cli.refs import Ref, parse_ref
from modelyard.storage.digest import bytes_digest
from modelyard.storage.layout import REPORT_FILE, REPORT_PLOT_PIN
from modelyard.storage.uri import InvalidUri, S3Uri

CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE")
S3_HELP = (
    "set MODELYARD_S3_ENDPOINT (or AWS_ENDPOINT_URL) to the S3 endpoint and AWS_ACCESS_KEY_ID "
    "and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to credentials that may read it"
)
# A plot is a plain file name: nothing from a status may write outside the output directory.
PLOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.png")


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "report",
        parents=parents,
        help="download a training run's evaluation report (plots, findings) from S3",
    )
    parser.add_argument("trainingjob", metavar="TRAININGJOB", help="NAME or tj/NAME")
    parser.add_argument(
        "--run", help="run number or id, e.g. 3 or run-3 (default: the latest successful run)"
    )
    parser.add_argument(
        "--output",
        metavar="DIR",
        help="directory to write report.html and the plots to "
        "(default: ./<trainingjob>-<run>-report/)",
    )
    parser.add_argument("--open", action="store_true", help="open report.html in the browser")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ref = _training_job_ref(args.trainingjob)
    wanted = _run_id(args.run) if args.run else None
    kube = Kube.connect(Options.from_args(args))
    try:
        obj = kube.get(ref)
    finally:
        kube.close()
    chosen = select_run(ref, obj.get("status") or {}, wanted)
    report = report_of(ref, chosen)
    files = download(report)
    directory = Path(args.output or f"{ref.name}-{chosen['id']}-report")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (directory / name).write_bytes(data)
    except OSError as error:
        raise CliError(f"cannot write the report to {directory}: {error.strerror}") from None
    page = directory / REPORT_FILE
    painter = Painter.for_stream(sys.stdout)
    plots = len(files) - 1
    print(f"{ref} {chosen['id']}: report saved to {page} ({plots} plot{'' if plots == 1 else 's'})")
    findings = report.get("findings") or []
    if findings:
        print(painter.paint(f"{len(findings)} finding(s):", "yellow"))
        for finding in findings:
            reason, message = _printable(finding["reason"]), _printable(finding["message"])
            print(f"  {painter.paint(reason, 'yellow')}: {message}")
    else:
        print("No findings: no class imbalance, overfitting or single-feature leakage seen.")
    if args.open:
        webbrowser.open(page.resolve().as_uri())
    return 0


def _printable(text: str) -> str:
    """Status text without control characters: a terminal must not take it for escapes."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _training_job_ref(text: str) -> Ref:
    if "/" in text:
        return parse_ref(text, TrainingJob.info.kind)
    return Ref(TrainingJob.info, text)


def _run_id(text: str) -> str:
    run_id = f"run-{text}" if text.isdigit() else text
    if not re.fullmatch(r"run-[0-9]+", run_id):
        raise UsageError(f"--run: expected a run number or id such as 3 or run-3, got {text!r}")
    return run_id


def select_run(ref: Ref, status: dict[str, Any], wanted: str | None) -> dict[str, Any]:
    """The run asked for, else the latest successful one."""
    runs: list[dict[str, Any]] = status.get("runs") or []
    ids = ", ".join(r["id"] for r in runs) or "none"
    run_id = wanted or status.get("latestRun")
    if run_id is None:
        raise CliError(
            f"{ref} has no successful run yet ({status.get('phase') or 'Pending'}; runs: {ids}); "
            "name one with --run"
        )
    found = next((r for r in runs if r.get("id") == run_id), None)
    if found is None:
        raise CliError(f"{ref} has no run {run_id} (it has {ids})")
    return found


def report_of(ref: Ref, run: dict[str, Any]) -> dict[str, Any]:
    """The run's report, or why it has none."""
    report: dict[str, Any] | None = run.get("report")
    if report:
        return report
    phase = run.get("phase") or "Pending"
    if phase in ("Pending", "Running"):
        why = f"it is still {phase.lower()}"
    elif phase == "Failed":
        cause = ": ".join(p for p in (run.get("reason"), run.get("message")) if p)
        why = f"it failed ({cause})" if cause else "it failed"
    else:
        why = "it was trained before runs had evaluation reports; train again for one"
    raise CliError(f"{ref} {run['id']} has no evaluation report: {why}")


def download(report: dict[str, Any]) -> dict[str, bytes]:
    """report.html and each plot the run lists, every one checked against its digest."""
    if not any(os.environ.get(v) for v in (*CARD_ENDPOINT_VARIABLES, *CREDENTIAL_VARIABLES)):
        raise CliError(f"the report is in S3, which is not configured here: {S3_HELP}")
    try:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        from modelyard.storage.client import ObjectNotFound, Storage, StorageUnavailable
        from modelyard.storage.config import StorageConfig
    except ImportError:
        raise CliError("reading the report needs boto3: pip install 'modelyard[train]'") from None
    recorded = report.get("digest")
    try:
        page_uri = S3Uri.parse(report["uri"])
    except InvalidUri as error:
        raise CliError(f"the run's report.uri: {error}") from None
    if not recorded:
        raise CliError(f"{page_uri}: the run recorded no digest of it, so it cannot be checked")
    plots: list[str] = report.get("plots") or []
    for name in plots:
        if not PLOT_NAME.fullmatch(name):
            raise CliError(f"{page_uri}: the run lists a plot {name!r} that is no PNG file name")
    storage = Storage(StorageConfig.from_env())

    def fetch(uri: S3Uri) -> bytes:
        try:
            return storage.get_bytes(uri)
        except ObjectNotFound:
            raise CliError(f"{uri} not found in S3 (was it deleted?)") from None
        except NoCredentialsError:
            raise CliError(f"no S3 credentials to read {uri}: {S3_HELP}") from None
        except (BotoCoreError, ClientError, StorageUnavailable) as error:
            raise CliError(f"cannot read {uri}: {error}") from None

    page = fetch(page_uri)
    if bytes_digest(page) != recorded:
        raise CliError(
            f"{page_uri} is not the report the run recorded: its sha256 is "
            f"{bytes_digest(page)}, the run recorded {recorded}; refusing it"
        )
    pinned = pinned_plots(page)
    files = {REPORT_FILE: page}
    directory = page_uri.key.rsplit("/", 1)[0]
    for name in plots:
        uri = S3Uri(page_uri.bucket, f"{directory}/{name}")
        if name not in pinned:
            raise CliError(f"{uri}: report.html does not pin this plot; refusing it")
        data = fetch(uri)
        if bytes_digest(data) != pinned[name]:
            raise CliError(f"{uri} is not the plot report.html pins ({pinned[name]}); refusing it")
        files[name] = data
    return files


class _PlotPins(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.pins: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and values.get("name") == REPORT_PLOT_PIN:
            name, _, digest = (values.get("content") or "").partition(" ")
            self.pins[name] = digest


def pinned_plots(page: bytes) -> dict[str, str]:
    """File name → sha256 of the plots a report.html pins."""
    parser = _PlotPins()
    parser.feed(page.decode("utf-8", errors="replace"))
    parser.close()
    return parser.pins
