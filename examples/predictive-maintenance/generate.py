"""Pump sensor readings labelled with failures within a week, in three versions, from fixed seeds.

    python examples/predictive-maintenance/generate.py --version 1   # upload the first version
    python examples/predictive-maintenance/generate.py --version 2   # replace it with the second
    python examples/predictive-maintenance/generate.py --version 2 --requests 200 > drifted.json
    python examples/predictive-maintenance/generate.py --version 2 --requests 200 --per-line

Version 1 is a winter of readings. Version 2 is the summer after a fleet-wide sensor firmware
update: temperatures run 12 degrees higher and vibration is reported in a new, larger unit, while
failures follow the same physics. A model trained on version 1 sees inputs unlike anything in its
training data: the drift monitoring shows it, and retraining on version 2 fixes it. Version 3 is
version 2's readings with the failure labels of a broken labelling job (shuffled across pumps): a
model trained on it ranks failures no better than chance, and the promotion gate keeps it out.

`--requests N` prints a KServe V1 predict body of N version-`--version` readings instead of
uploading, to send to the served model; with `--per-line`, N bodies of one reading each, a line
each, as pumps report one at a time.

Credentials come from the environment as for any boto3 program (AWS_ACCESS_KEY_ID, …). The same
version always gives the same bytes, so its Dataset version is the same on every run.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from modelyard.storage.uri import S3Uri

KEY = "examples/predictive-maintenance/sensors.csv"
SEEDS = {1: 1001, 2: 2002, 3: 2002}
# Small enough to ingest and train in seconds on a CI machine, large enough for stable scores.
ROWS = 2000
COLUMNS = (
    "pump_model",
    "hours_since_service",
    "temperature_c",
    "vibration",
    "pressure_bar",
    "rpm",
    "failure_within_7d",
)
# What versions 2 and 3 change: the temperature offset and the vibration unit's scale.
TEMPERATURE_SHIFT = {1: 0.0, 2: 12.0, 3: 12.0}
VIBRATION_SCALE = {1: 1.0, 2: 2.5, 3: 2.5}
# Versions whose labels a broken labelling job shuffled across pumps.
MISLABELLED = {3}


def readings(version: int, rows: int = ROWS, seed: int | None = None) -> list[dict[str, Any]]:
    rng = np.random.default_rng(SEEDS[version] if seed is None else seed)
    pump_model = rng.choice(["P100", "P200", "P300"], rows, p=[0.5, 0.3, 0.2])
    hours = rng.integers(0, 4000, rows)
    wear = hours / 4000 + rng.normal(0, 0.1, rows)
    temperature = 55 + 15 * wear + rng.normal(0, 3, rows)
    vibration = 2.0 + 3.0 * wear**2 + rng.normal(0, 0.4, rows)
    pressure = 6.0 - 1.5 * wear + rng.normal(0, 0.3, rows)
    rpm = rng.normal(1450, 40, rows) - 60 * (pump_model == "P300")
    # Failure depends on the true (pre-firmware) physical state, the same in both versions.
    score = -7.5 + 4.0 * wear + 0.9 * (vibration - 2.0) + 0.08 * (temperature - 55)
    failed = rng.random(rows) < 1 / (1 + np.exp(-score))
    if version in MISLABELLED:
        failed = rng.permutation(failed)
    temperature = temperature + TEMPERATURE_SHIFT[version]
    vibration = vibration * VIBRATION_SCALE[version]
    return [
        {
            "pump_model": str(pump_model[i]),
            "hours_since_service": int(hours[i]),
            "temperature_c": round(float(temperature[i]), 1),
            "vibration": round(float(vibration[i]), 2),
            "pressure_bar": round(float(pressure[i]), 2),
            "rpm": round(float(rpm[i])),
            "failure_within_7d": int(failed[i]),
        }
        for i in range(rows)
    ]


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def instances(version: int, count: int) -> list[dict[str, Any]]:
    """Fresh readings (another seed than the Dataset's) without their label."""
    rows = readings(version, count, seed=SEEDS[version] + 1)
    return [{k: v for k, v in row.items() if k != COLUMNS[-1]} for row in rows]


def predict_request(version: int, count: int) -> dict[str, Any]:
    """`count` fresh readings as one KServe V1 predict body."""
    return {"instances": instances(version, count)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, choices=sorted(SEEDS), required=True)
    parser.add_argument("--requests", type=int, metavar="N", help="print a predict body instead")
    parser.add_argument(
        "--per-line",
        action="store_true",
        help="with --requests: N bodies of one reading each, a line each",
    )
    parser.add_argument("--output-dir", type=Path, help="write the CSV here instead of to S3")
    parser.add_argument("--bucket", default="modelyard", help="bucket the Dataset reads")
    args = parser.parse_args()
    if args.requests and args.per_line:
        for instance in instances(args.version, args.requests):
            print(json.dumps({"instances": [instance]}))
        return
    if args.requests:
        json.dump(predict_request(args.version, args.requests), sys.stdout)
        return
    data = to_csv(readings(args.version))
    if args.output_dir:
        path = args.output_dir / Path(KEY).name
        path.write_bytes(data)
        print(f"wrote {path}")
        return
    storage = Storage(StorageConfig.from_env())
    storage.ensure_bucket(args.bucket)
    uri = S3Uri(args.bucket, KEY)
    storage.put_bytes(uri, data, "text/csv")
    print(f"uploaded version {args.version} to {uri} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
