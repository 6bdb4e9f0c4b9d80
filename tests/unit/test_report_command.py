"""`modelyard report` without a cluster: what a run's status may name is checked before anything
is downloaded or written."""

from __future__ import annotations

import pytest

from modelyard.cli.errors import CliError
from modelyard.cli.report import download, pinned_plots


@pytest.mark.parametrize("name", ["../../.bashrc.png", "/etc/cron.d/x.png", "report.html"])
def test_a_plot_name_that_could_write_outside_the_directory_is_refused(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An endpoint nobody listens on: the name must be refused before any request.
    monkeypatch.setenv("MODELYARD_S3_ENDPOINT", "http://127.0.0.1:9")
    report = {
        "uri": "s3://modelyard/namespaces/ml/models/fraud/u/run-1/report/report.html",
        "digest": "sha256:" + "0" * 64,
        "plots": [name],
    }
    with pytest.raises(CliError, match="that is no PNG file name"):
        download(report)


def test_the_pins_of_a_page_are_read_from_its_meta_tags() -> None:
    page = (
        b'<html><head><meta charset="utf-8">'
        b'<meta name="modelyard-plot" content="roc.png sha256:ab">'
        b'<meta name="description" content="x.png sha256:cd"></head></html>'
    )
    assert pinned_plots(page) == {"roc.png": "sha256:ab"}
