"""A plant's production batches in PostgreSQL, as its line systems write them: messy.

    python examples/production-quality/generate.py --database-url postgresql://…   # day 1
    python examples/production-quality/generate.py --database-url … --day 2        # one more day

Every batch records its line, material, start time, oven temperature, inlet and outlet pressure,
belt speed and the operator's experience, and whether inspection found a defect. Defects are
more likely in a hot oven, at a high pressure ratio, on the night shift and with new operators.
The line systems are not tidy: line names are typed by hand (" Line A", "LA", "line-a"),
material names vary in case, a stuck thermocouple reports 9999 °C, some readings are missing,
and a retried insert wrote some batches twice. The Dataset's cleaning rules repair exactly that.
Each day is generated from a fixed seed, so the same days always give the same rows.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
from adbc_driver_postgresql import dbapi

TABLE = "production_batches"
SEED = 20261205
BATCHES_PER_DAY = 1500
FIRST_DAY = datetime(2026, 11, 2)
# How the line systems spell each line, and how often.
LINE_SPELLINGS = {
    "line-a": ["line-a", " Line A", "LA", "line a "],
    "line-b": ["line-b", "Line B", "LB"],
    "line-c": ["line-c", "LINE-C"],
}
MATERIALS = ["steel", "Steel ", "STEEL", "alloy", "Alloy", "composite"]


def day_of_batches(day: int) -> pa.Table:
    rng = np.random.default_rng(SEED + day)
    n = BATCHES_PER_DAY
    start = FIRST_DAY + timedelta(days=day - 1)
    started_at = [start + timedelta(seconds=int(s)) for s in np.sort(rng.uniform(0, 86400, n))]
    hours = np.array([t.hour for t in started_at])
    line = rng.choice(list(LINE_SPELLINGS), n, p=[0.45, 0.35, 0.2])
    spelled = [str(rng.choice(LINE_SPELLINGS[name])) for name in line]
    material = rng.choice(MATERIALS, n)
    alloy = np.char.lower(np.char.strip(material.astype(str))) == "alloy"
    temperature = rng.normal(72, 6, n) + np.where(line == "line-c", 4.0, 0.0)
    pressure_in = rng.normal(10, 0.8, n)
    pressure_out = pressure_in * rng.normal(1.2, 0.08, n)
    speed = rng.integers(80, 140, n)
    experience = np.round(rng.gamma(2.0, 2.5, n), 1)
    night = hours < 6
    logit = (
        -3.0
        + 0.35 * (temperature - 72)
        + 9.0 * (pressure_out / pressure_in - 1.2)
        + 1.2 * night
        + 0.6 * alloy
        - 0.25 * experience
        + 0.01 * (speed - 110)
    )
    defect = rng.random(n) < 1 / (1 + np.exp(-logit))
    # What the line systems get wrong.
    temperature = np.round(temperature, 2)
    temperature[rng.random(n) < 0.01] = 9999.0  # a stuck thermocouple
    temperature_missing = rng.random(n) < 0.03
    experience_missing = rng.random(n) < 0.02
    batch_id = np.arange(n) + (day - 1) * n + 1
    table = pa.table(
        {
            "batch_id": pa.array(batch_id, pa.int64()),
            "line": pa.array(spelled),
            "material": pa.array(material.astype(str)),
            "started_at": pa.array(started_at, pa.timestamp("us")),
            "temperature_c": pa.array(temperature, mask=temperature_missing),
            "pressure_in": pa.array(np.round(pressure_in, 3)),
            "pressure_out": pa.array(np.round(pressure_out, 3)),
            "speed_rpm": pa.array(speed, pa.int64()),
            "operator_experience_years": pa.array(experience, mask=experience_missing),
            "defect": pa.array(defect),
        }
    )
    retried = np.flatnonzero(rng.random(n) < 0.02)  # a retried insert wrote these twice
    return pa.concat_tables([table, table.take(pa.array(retried))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="postgresql:// URI of the plant's database (default: $DATABASE_URL)",
    )
    parser.add_argument(
        "--day", type=int, default=1, help="add this day's batches; day 1 (re)creates the table"
    )
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or $DATABASE_URL) is required")
    table = day_of_batches(args.day)
    with dbapi.connect(args.database_url) as connection, connection.cursor() as cursor:
        rows = cursor.adbc_ingest(TABLE, table, mode="replace" if args.day == 1 else "append")
        connection.commit()
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        total = cursor.fetchone()
    print(f"day {args.day}: wrote {rows} rows to {TABLE} ({total[0] if total else 0} in all)")


if __name__ == "__main__":
    main()
