"""Card transactions as a fraud team's feature table holds them (the transaction, the card's
recent history, the merchant, the device), about 2 % of them fraudulent, generated from a fixed
seed and uploaded to S3 as Parquet files: more rows than one Dask worker of the example holds in
memory.

    python examples/transaction-fraud/generate.py                # to $MODELYARD_S3_ENDPOINT
    python examples/transaction-fraud/generate.py --rows 200000  # a smaller copy
    python examples/transaction-fraud/generate.py --output-dir . # or write the files here

Fraud is rare and shows in combinations: a large amount at night, far from home, on a young
account, a burst of transactions or declines on a card not present, a merchant with a fraud
history, a new device. Credentials come from the environment as for any boto3 program
(AWS_ACCESS_KEY_ID, …). The same seed always gives the same bytes, so the Dataset's version is
the same on every run.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri

PREFIX = "examples/transaction-fraud/"
ROWS = 11_000_000
# Rows per file: the source is a prefix of several files, as exports of this size usually are.
ROWS_PER_FILE = 500_000
SEED = 20261205
# Merchant category codes (ISO 18245): grocery, fuel, airlines, electronics, restaurants,
# pharmacies, miscellaneous retail.
MERCHANT_CODES = (5411, 5541, 4511, 5732, 5812, 5912, 5999)
ELECTRONICS = 5732


def transactions(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)

    def counts(mean: float) -> np.ndarray:
        return rng.poisson(mean, rows)

    def money(mean: float, sigma: float) -> np.ndarray:
        return np.round(rng.lognormal(mean, sigma, rows), 2)

    amount = money(3.4, 1.1)
    amount_mean_7d = money(3.4, 0.6)
    credit_limit = np.round(rng.choice([500.0, 1000.0, 2500.0, 5000.0, 10000.0], rows), 0)
    balance = np.round(credit_limit * rng.beta(2, 5, rows), 2)
    hour = rng.integers(0, 24, rows)
    distance = np.round(rng.gamma(1.2, 12.0, rows), 1)
    ip_distance = np.round(distance * rng.lognormal(0, 0.5, rows), 1)
    account_age = rng.integers(1, 3650, rows)
    recent_1h, recent_24h = counts(0.2), counts(1.5)
    declines = counts(0.1)
    card_present = rng.random(rows) < 0.7
    online = ~card_present & (rng.random(rows) < 0.8)
    foreign = rng.random(rows) < 0.06
    merchant = rng.choice(np.asarray(MERCHANT_CODES), rows)
    merchant_fraud_rate = np.round(rng.beta(1, 60, rows), 4)
    device_age = rng.integers(0, 1500, rows)
    night = (hour < 6) | (hour >= 23)
    score = (
        -6.3
        + 2.5 * night * (amount > 200)
        + 2.0 * (distance > 80)
        + 2.5 * (account_age < 60)
        + 0.8 * np.maximum(recent_24h - 3, 0) * ~card_present
        + 1.2 * declines
        + 1.5 * foreign
        + 1.0 * (merchant == ELECTRONICS)
        + 40.0 * merchant_fraud_rate
        + 1.5 * (device_age < 7) * online
        + 1.2 * (amount > 3 * amount_mean_7d)
        + rng.normal(0, 0.4, rows)
    )
    fraud = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(np.int64)
    return pa.table(
        {
            "amount": amount,
            "hour": hour,
            "day_of_week": rng.integers(0, 7, rows),
            "distance_km": distance,
            "account_age_days": account_age,
            "card_age_days": np.minimum(account_age, rng.integers(1, 1500, rows)),
            "transactions_1h": recent_1h,
            "transactions_24h": recent_24h,
            "transactions_7d": recent_24h + counts(8.0),
            "amount_mean_7d": amount_mean_7d,
            "amount_std_7d": money(2.8, 0.7),
            "amount_max_30d": np.maximum(amount, money(4.8, 0.8)),
            "amount_to_mean_7d": np.round(amount / amount_mean_7d, 3),
            "distinct_merchants_7d": counts(4.0),
            "distinct_countries_30d": 1 + counts(0.3) + foreign,
            "minutes_since_last": np.round(rng.exponential(600.0, rows), 1),
            "declines_24h": declines,
            "chargebacks_365d": counts(0.05),
            "credit_limit": credit_limit,
            "balance": balance,
            "utilization": np.round(balance / credit_limit, 4),
            "merchant_code": merchant,
            "merchant_fraud_rate_30d": merchant_fraud_rate,
            "merchant_age_days": rng.integers(30, 7300, rows),
            "device_age_days": device_age,
            "ip_distance_km": ip_distance,
            "card_present": card_present,
            "online": online,
            "foreign": foreign,
            "recurring": card_present & (rng.random(rows) < 0.1),
            "fraud": fraud,
        }
    )


def parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows in all (default {ROWS})")
    parser.add_argument("--output-dir", type=Path, help="write the files here instead of to S3")
    parser.add_argument("--bucket", default="modelyard", help="bucket the Dataset reads")
    args = parser.parse_args()
    storage = None
    if not args.output_dir:
        storage = Storage(StorageConfig.from_env())
        storage.ensure_bucket(args.bucket)
    size = 0
    files = range(0, args.rows, ROWS_PER_FILE)
    written: set[str] = set()
    for number, start in enumerate(files):
        table = transactions(min(ROWS_PER_FILE, args.rows - start), SEED + number)
        size += table.nbytes
        name = f"part-{number:03d}.parquet"
        if args.output_dir:
            (args.output_dir / name).write_bytes(parquet(table))
        else:
            assert storage is not None
            uri = S3Uri(args.bucket, PREFIX + name)
            storage.put_bytes(uri, parquet(table), "application/vnd.apache.parquet")
            written.add(uri.key)
    if storage is not None:
        # Files of an earlier, larger run would join the Dataset's source: the prefix is the data.
        for stale in storage.list(S3Uri(args.bucket, PREFIX)):
            if stale.key not in written:
                storage.client.delete_object(Bucket=stale.bucket, Key=stale.key)
    where = args.output_dir or f"s3://{args.bucket}/{PREFIX}"
    print(
        f"wrote {args.rows} rows in {len(files)} files to {where}: {size / 2**20:.0f} MiB in memory"
    )


if __name__ == "__main__":
    main()
