"""Three years of daily unit sales for four stores, generated from a fixed seed, uploaded to S3.

    python examples/demand-forecasting/generate.py  # upload to $MODELYARD_S3_ENDPOINT
    python examples/demand-forecasting/generate.py --output-dir .   # or just write the CSV here

Sales follow a yearly season (a summer peak), a weekly rhythm (weekends sell more), promotions,
holidays, the day's temperature and each store's size, plus noise. Credentials come from the
environment as for any boto3 program (AWS_ACCESS_KEY_ID, …). The same seed always gives the same
bytes, so the Dataset's version is the same on every run.
"""

from __future__ import annotations

import argparse
import csv
import io
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri

KEY = "examples/demand-forecasting/sales.csv"
SEED = 20261128
START = date(2023, 1, 1)
DAYS = 3 * 365
STORES = {"north": 120.0, "south": 90.0, "city": 200.0, "airport": 60.0}
HOLIDAYS = {(1, 1), (5, 1), (7, 4), (11, 28), (12, 24), (12, 25), (12, 31)}
WEEKDAY_FACTOR = (0.85, 0.8, 0.85, 0.9, 1.05, 1.35, 1.2)  # Monday … Sunday


def sales(seed: int = SEED) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "store",
            "day_of_year",
            "day_of_week",
            "month",
            "holiday",
            "promotion",
            "temperature_c",
            "units_sold",
        ]
    )
    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        season = np.sin(2 * np.pi * (day.timetuple().tm_yday - 100) / 365)
        temperature = 12 + 10 * season + rng.normal(0, 3)
        holiday = (day.month, day.day) in HOLIDAYS
        for store, size in STORES.items():
            promotion = rng.random() < 0.12
            expected = (
                size
                * (1 + 0.35 * season)
                * WEEKDAY_FACTOR[day.weekday()]
                * (1.4 if promotion else 1.0)
                * (0.5 if holiday else 1.0)
                * (1 + 0.01 * (temperature - 12))
            )
            units = max(0, round(expected + rng.normal(0, 0.08 * size)))
            writer.writerow(
                [
                    store,
                    day.timetuple().tm_yday,
                    day.weekday(),
                    day.month,
                    str(holiday).lower(),
                    str(promotion).lower(),
                    f"{temperature:.1f}",
                    units,
                ]
            )
    return out.getvalue().encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, help="write the CSV here instead of to S3")
    parser.add_argument("--bucket", default="modelyard", help="bucket the Dataset reads")
    args = parser.parse_args()
    data = sales()
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
