"""Telecom subscribers, about a fifth of whom cancel, generated from a fixed seed, uploaded to S3.

    python examples/model-selection/generate.py                  # upload to $MODELYARD_S3_ENDPOINT
    python examples/model-selection/generate.py --output-dir .   # or just write the CSV here

Who cancels depends on the contract, on tenure, and on interactions a straight line cannot draw:
fiber customers who keep calling support leave far more often than either alone suggests, and
monthly charges matter most in the first year. Credentials come from the environment as for any
boto3 program (AWS_ACCESS_KEY_ID, …). The same seed always gives the same bytes, so the Dataset's
version is the same on every run.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri

KEY = "examples/model-selection/subscribers.csv"
ROWS = 4000
SEED = 20261205
COLUMNS = (
    "tenure_months",
    "monthly_charges",
    "contract",
    "internet",
    "payment_method",
    "support_calls",
    "data_usage_gb",
    "senior",
    "churned",
)
CONTRACTS = ("month-to-month", "one-year", "two-year")
INTERNET = ("fiber", "dsl", "none")
PAYMENT = ("card", "bank-transfer", "electronic-check", "mailed-check")


def subscribers(rows: int = ROWS, seed: int = SEED) -> bytes:
    rng = np.random.default_rng(seed)
    contract = rng.choice(CONTRACTS, rows, p=[0.55, 0.25, 0.2])
    internet = rng.choice(INTERNET, rows, p=[0.45, 0.35, 0.2])
    payment = rng.choice(PAYMENT, rows, p=[0.25, 0.25, 0.35, 0.15])
    tenure = rng.integers(1, 73, rows)
    base_charge = np.select([internet == "fiber", internet == "dsl"], [75.0, 50.0], 20.0)
    charges = np.round(base_charge + rng.normal(0, 12, rows).clip(-15, 40), 2)
    support_calls = rng.poisson(np.where(internet == "fiber", 1.6, 0.9))
    usage = np.round(np.where(internet == "none", 0.0, rng.gamma(2.0, 60.0, rows)), 1)
    senior = rng.random(rows) < 0.16
    month_to_month = contract == "month-to-month"
    new = tenure < 12
    score = (
        -2.2
        + 1.4 * month_to_month
        - 1.0 * (contract == "two-year")
        # Most leave in their first months; few after two years, whatever else holds.
        + 1.6 * np.exp(-tenure / 6)
        - 0.9 * (tenure > 24)
        # Fiber customers who keep calling support leave; either alone matters little.
        + 2.2 * ((internet == "fiber") & (support_calls >= 3))
        # Price bites in the first year, when nothing yet keeps them.
        + 0.05 * (charges - 60) * new
        + 0.6 * (payment == "electronic-check")
        + 0.4 * senior
        + rng.normal(0, 0.3, rows)
    )
    churned = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(int)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in zip(
        tenure,
        charges,
        contract,
        internet,
        payment,
        support_calls,
        usage,
        senior,
        churned,
        strict=True,
    ):
        writer.writerow([*row[:7], str(row[7]).lower(), row[8]])
    return out.getvalue().encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, help="write the CSV here instead of to S3")
    parser.add_argument("--bucket", default="modelyard", help="bucket the Dataset reads")
    args = parser.parse_args()
    data = subscribers()
    if args.output_dir:
        path = args.output_dir / Path(KEY).name
        path.write_bytes(data)
        print(f"wrote {path}")
        return
    storage = Storage(StorageConfig.from_env())
    storage.ensure_bucket(args.bucket)
    uri = S3Uri(args.bucket, KEY)
    storage.put_bytes(uri, data, "text/csv")
    print(f"uploaded {uri} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
