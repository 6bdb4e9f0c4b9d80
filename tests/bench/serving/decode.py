"""Decoding a request into its matrix: the general path (orjson, then numpy) against simdjson
reading the matrix from the text (serving/numeric_json.py), by body size. Sets
numeric_json.MIN_BODY, the size below which the general path is taken directly.

    python -m tests.bench.serving.decode
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from modelyard.workloads.serving import numeric_json, protocol
from modelyard.workloads.serving.model import Model
from tests.bench.serving.models import build_models
from tests.bench.serving.servers import v1_body, v2_body

ROWS = (1, 4, 16, 64, 1000)
ROUNDS = 7


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelyard-decode-") as temporary:
        models = build_models(Path(temporary), ["lr", "hgb"])
    print(
        "| model | rows | protocol | body bytes | general µs | simdjson µs | general ÷ simdjson |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for bench_model in models:
        model = bench_model.trained.model()
        for rows in ROWS:
            matrix = bench_model.rows(rows)
            for name, body, decode in (
                ("V1", v1_body(matrix), _v1(model)),
                ("V2", v2_body(matrix), _v2(model)),
            ):
                general = _best(decode, body, min_body=len(body) + 1)
                fast = _best(decode, body, min_body=0)
                print(
                    f"| {bench_model.label} | {rows} | {name} | {len(body):,} | "
                    f"{general * 1e6:.1f} | {fast * 1e6:.1f} | {general / fast:.2f}x |"
                )


def _v1(model: Model) -> Callable[[bytes], object]:
    return lambda body: protocol.decode_v1(model, body, proba_verb=False)


def _v2(model: Model) -> Callable[[bytes], object]:
    return lambda body: protocol.decode_v2(model, body)


def _best(decode: Callable[[bytes], object], body: bytes, min_body: int) -> float:
    """Seconds per decode, the best of ROUNDS rounds of about 0.1 s each."""
    kept = numeric_json.MIN_BODY
    numeric_json.MIN_BODY = min_body
    try:
        calls = max(1, int(0.1 / _once(decode, body)))
        best = float("inf")
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(calls):
                decode(body)
            best = min(best, (time.perf_counter() - started) / calls)
        return best
    finally:
        numeric_json.MIN_BODY = kept


def _once(decode: Callable[[bytes], object], body: bytes) -> float:
    started = time.perf_counter()
    decode(body)
    return max(time.perf_counter() - started, 1e-6)


if __name__ == "__main__":
    main()
