"""Declared cleaning through `modelyard-worker ingest` against a real S3-compatible server: the
version's rows, the counts in the summary and the manifest, and the rules as part of the
version."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from modelyard.storage.client import Storage
from modelyard.storage.uri import S3Uri
from tests.integration.test_operator import Api
from tests.kubelet import finish_job, ingest_summary, wait_for
from tests.plugins.kube import Cluster
from tests.plugins.operator import Operator
from tests.workers import Worker

pytestmark = pytest.mark.integration

NASTY = 'a"; DROP TABLE t; --'
MESSY_CSV = f"""city,price,rooms,"{NASTY.replace('"', '""')}",label
 NYC ,100.5,2,x ,yes
new york,120,3, y,no
Boston,,2,z,yes
boston ,95,,z,no
NYC,100000,4,x,yes
 NYC ,100.5,2,x ,yes
Chicago,80,1,w,
""".encode()
LABELLED_CSV = MESSY_CSV.removesuffix(b"Chicago,80,1,w,\n")
RULES: dict[str, Any] = {
    "dropDuplicates": True,
    "columns": [
        {"name": "city", "trim": True, "case": "lower", "mapping": {"nyc": "new york"}},
        {
            "name": "price",
            "outliers": {"method": "bounds", "max": 1000, "action": "drop"},
            "missing": {"strategy": "median"},
        },
        {"name": "rooms", "missing": {"strategy": "mode"}},
        {"name": NASTY, "trim": True},
        {"name": "label", "missing": {"strategy": "drop"}},
    ],
}
# The version of MESSY_CSV without cleaning, as ingest computed it before cleaning existed
# (commit 11af8d5): versions written then must keep their names.
VERSION_WITHOUT_CLEANING = "sha256:323f6f4c850a7f6eba0dd54cf22b3bcb42ac09ea431f0d4c42acfa780b0046c6"


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> Worker:
    return Worker(tmp_path, monkeypatch)


@pytest.fixture
def source(storage: Storage, bucket_root: S3Uri) -> str:
    uri = bucket_root.join("cleaning/messy.csv")
    storage.put_bytes(uri, MESSY_CSV)
    return str(uri)


def _spec(uri: str, cleaning: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"s3": {"uri": uri}},
        "target": "label",
        "split": {"testFraction": 0.25, "stratify": False},
    }
    if cleaning is not None:
        spec["cleaning"] = cleaning
    return spec


def test_messy_csv_is_cleaned_counted_and_published(
    worker: Worker, storage: Storage, source: str
) -> None:
    result = worker.ingest(_spec(source, RULES))
    assert result.exit_code == 0, result.message
    prefix = S3Uri.parse(result.message["uri"])
    data = pq.read_table(io.BytesIO(storage.get_bytes(prefix.join("data.parquet"))))
    # price: 100000 dropped, then the median of what is left (80, 95, 100.5, 100.5, 120) fills
    # Boston's; rooms: the mode 2; Chicago has no label; the second " NYC " row is a duplicate.
    assert data.to_pydict() == {
        "city": ["new york", "new york", "boston", "boston"],
        "price": [100.5, 120.0, 100.5, 95.0],
        "rooms": [2, 3, 2, 2],
        NASTY: ["x", "y", "z", "z"],
        "label": ["yes", "no", "yes", "no"],
    }
    counts = [
        {"rule": "cleaning.columns[city].trim", "action": "trimmed", "rows": 3},
        {"rule": "cleaning.columns[city].case", "action": "folded", "rows": 5},
        {"rule": "cleaning.columns[city].mapping", "action": "mapped", "rows": 3},
        {"rule": "cleaning.columns[price].outliers", "action": "dropped", "rows": 1},
        {"rule": "cleaning.columns[price].missing", "action": "filled", "rows": 1},
        {"rule": "cleaning.columns[rooms].missing", "action": "filled", "rows": 1},
        {"rule": f"cleaning.columns[{NASTY}].trim", "action": "trimmed", "rows": 3},
        {"rule": "cleaning.columns[label].missing", "action": "dropped", "rows": 1},
        {"rule": "cleaning.dropDuplicates", "action": "dropped", "rows": 1},
    ]
    assert result.message["cleaning"] == counts
    assert (result.message["rows"], result.message["sourceRows"]) == (4, 7)
    manifest = storage.get_json(prefix.join("manifest.json"))
    assert manifest["cleaning"] == counts
    assert (manifest["rows"], manifest["sourceRows"]) == (4, 7)
    assert manifest["statistics"][1]["name"] == "price"

    again = worker.ingest(_spec(source, RULES))
    assert again.message["version"] == result.message["version"]
    assert again.message["reused"] is True
    assert again.message["cleaning"] == counts


def test_rules_are_part_of_the_version(worker: Worker, storage: Storage, source: str) -> None:
    label = {"name": "label", "missing": {"strategy": "drop"}}
    # A bound no price crosses: the same rows come out either way, only the rules differ.
    bound = {"name": "price", "outliers": {"method": "bounds", "max": 1e6, "action": "drop"}}
    plain = worker.ingest(_spec(source, {"columns": [label]}))
    bounded = worker.ingest(_spec(source, {"columns": [label, bound]}))
    assert plain.exit_code == bounded.exit_code == 0, (plain.message, bounded.message)

    def rows(result: Any) -> dict[str, list[Any]]:
        prefix = S3Uri.parse(result.message["uri"])
        return pq.read_table(io.BytesIO(storage.get_bytes(prefix.join("data.parquet")))).to_pydict()

    assert rows(plain) == rows(bounded)
    assert bounded.message["version"] != plain.message["version"]


def test_validation_runs_on_cleaned_rows(worker: Worker, source: str) -> None:
    spec = _spec(source, RULES)
    spec["schema"] = {"columns": [{"name": "price", "max": 1000, "nullable": False}]}
    assert worker.ingest(spec).exit_code == 0
    # Without cleaning the same expectations fail on the raw rows, and so does the empty label.
    spec.pop("cleaning")
    failed = worker.ingest(spec)
    assert failed.exit_code != 0
    assert failed.message["reason"] == "ValidationFailed"
    assert "column 'price'" in failed.message["message"]


def test_an_unlabelled_row_still_fails_unless_a_rule_handles_it(
    worker: Worker, source: str
) -> None:
    rules = {"columns": [{"name": "city", "trim": True}]}
    failed = worker.ingest(_spec(source, rules))
    assert failed.message["reason"] == "ValidationFailed"
    assert failed.message["message"].startswith("spec.target: column 'label' has empty values")


def test_without_cleaning_the_version_is_unchanged(
    worker: Worker, storage: Storage, bucket_root: S3Uri
) -> None:
    uri = bucket_root.join("cleaning/labelled.csv")
    storage.put_bytes(uri, LABELLED_CSV)
    result = worker.ingest(_spec(str(uri)))
    assert result.exit_code == 0, result.message
    assert result.message["version"] == VERSION_WITHOUT_CLEANING
    assert "cleaning" not in result.message


@pytest.mark.parametrize(
    ("rules", "reason", "field"),
    [
        (
            {"columns": [{"name": "prize", "missing": {"strategy": "drop"}}]},
            "SchemaMismatch",
            "spec.cleaning.columns[prize]",
        ),
        (
            {"columns": [{"name": "city", "missing": {"strategy": "median"}}]},
            "CleaningNotApplicable",
            "spec.cleaning.columns[city].missing.strategy",
        ),
        (
            {"columns": [{"name": "rooms", "missing": {"strategy": "constant", "value": "two"}}]},
            "CleaningNotApplicable",
            "spec.cleaning.columns[rooms].missing.value",
        ),
        (
            {
                "columns": [
                    {"name": "label", "outliers": {"method": "bounds", "max": 1, "action": "clip"}}
                ]
            },
            "CleaningNotApplicable",
            "spec.cleaning.columns[label].outliers",
        ),
    ],
)
def test_rules_that_do_not_fit_the_data_are_refused_by_name(
    worker: Worker, source: str, rules: dict[str, Any], reason: str, field: str
) -> None:
    failed = worker.ingest(_spec(source, rules))
    assert failed.exit_code != 0
    assert failed.message["reason"] == reason
    assert failed.message["message"].startswith(field)


def test_rules_that_drop_every_row_say_so(worker: Worker, source: str) -> None:
    price = {
        "name": "price",
        "outliers": {"method": "bounds", "max": 1, "action": "drop"},
        "missing": {"strategy": "drop"},
    }
    rules = {"columns": [price]}
    failed = worker.ingest(_spec(source, rules))
    assert failed.message["reason"] == "EmptyData"
    assert failed.message["message"].startswith("spec.cleaning: the rules dropped all 7 rows")


def test_the_operator_records_the_counts_in_status(
    crds: Cluster, namespace: str, operator: Operator
) -> None:
    api = Api(crds, namespace)
    rules = {"columns": [{"name": "sepal length (cm)", "missing": {"strategy": "median"}}]}
    api.create(
        {
            "apiVersion": "modelyard.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "iris"},
            "spec": {"source": {"builtin": {"name": "iris"}}, "cleaning": rules},
        }
    )
    counts = [
        {"rule": "cleaning.columns[sepal length (cm)].missing", "action": "filled", "rows": 0}
    ]
    job = api.wait_job("modelyard.dev/dataset=iris")
    summary = {**ingest_summary("sha256:" + "1" * 64), "cleaning": counts, "sourceRows": 150}
    finish_job(api.core, api.namespace, job.metadata.name, summary)
    api.wait_condition("Dataset", "iris", "Ready", "True", "Ingested")
    assert api.status("Dataset", "iris")["cleaning"] == counts

    # Cleaning dropped: the next version is recorded without counts.
    api.patch("Dataset", "iris", {"spec": {"cleaning": None}})
    job = api.wait_job("modelyard.dev/dataset=iris", besides={job.metadata.name})
    finish_job(api.core, api.namespace, job.metadata.name, ingest_summary("sha256:" + "2" * 64))
    status = wait_for(
        "the second version recorded",
        lambda: (lambda s: s if s.get("version") == "sha256:" + "2" * 64 else None)(
            api.status("Dataset", "iris")
        ),
    )
    assert "cleaning" not in status
    api.client.close()
