"""Card transactions with rare fraud (about 3 %), generated from a fixed seed, uploaded to S3.

    python examples/credit-scoring/generate.py                  # upload to $MODELYARD_S3_ENDPOINT
    python examples/credit-scoring/generate.py --output-dir .   # or just write the CSV here

Credentials come from the environment as for any boto3 program (AWS_ACCESS_KEY_ID, …).
The same seed always gives the same bytes, so the Dataset's version is the same on every run.
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

KEY = "examples/credit-scoring/transactions.csv"
ROWS = 10000
SEED = 20261128
CATEGORIES = ("grocery", "fuel", "restaurant", "electronics", "travel", "online")
# Fraud is likelier where cards are used far from home, at night, for resellable goods.
CATEGORY_RISK = {
    "grocery": -1.0,
    "fuel": -0.5,
    "restaurant": -0.5,
    "electronics": 1.2,
    "travel": 0.8,
    "online": 1.0,
}


def transactions(rows: int = ROWS, seed: int = SEED) -> bytes:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3.6, 1.0, rows), 2)
    hour = rng.integers(0, 24, rows)
    account_age_days = rng.integers(1, 3650, rows)
    distance_km = np.round(rng.exponential(15.0, rows), 1)
    card_present = rng.random(rows) < 0.6
    category = rng.choice(CATEGORIES, rows, p=[0.3, 0.15, 0.2, 0.1, 0.1, 0.15])
    night = (hour < 6).astype(float)
    score = (
        -4.5
        + 1.2 * np.log1p(amount / 100)
        + 2.0 * night
        + 0.04 * np.minimum(distance_km, 150)
        - 0.0008 * account_age_days
        - 1.8 * card_present
        + 1.5 * np.vectorize(CATEGORY_RISK.get)(category)
        + rng.normal(0, 0.3, rows)
    )
    fraud = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(int)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "amount",
            "hour",
            "account_age_days",
            "distance_km",
            "card_present",
            "merchant_category",
            "fraud",
        ]
    )
    for row in zip(
        amount, hour, account_age_days, distance_km, card_present, category, fraud, strict=True
    ):
        writer.writerow(
            [f"{row[0]:.2f}", row[1], row[2], f"{row[3]:.1f}", str(row[4]).lower(), row[5], row[6]]
        )
    return out.getvalue().encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, help="write the CSV here instead of to S3")
    parser.add_argument("--bucket", default="modelyard", help="bucket the Dataset reads")
    args = parser.parse_args()
    data = transactions()
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
