"""What the canary's weighted router costs: the same predictions straight to a model server and
through nginx with the configuration the operator generates, on loopback.

    .venv/bin/python -m tests.bench.serving.router [--seconds 10] [--connections 8]

Two model servers (the main and the canary track, different models), nginx in front with a 10 %
canary weight (Debian's nginx-light, installed on first use, as the router image runs it), and
wrk's closed loop against each. Prints one JSON line: p50/p99 and throughput direct and routed,
and the share of routed answers that came from the canary (counted over 1,000 requests).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelyard.resources.router import nginx_config
from modelyard.workloads.common.modelcard import Feature
from tests.bench.serving.load import closed_loop
from tests.plugins.operator import free_port
from tests.plugins.s3 import running_s3_server
from tests.serving import Served, bucket_on, start
from tests.unit.test_serve_protocol import IRIS_FEATURES, iris, train

CANARY_PERCENT = 10
ROW = [5.1, 3.5, 1.4, 0.2]


def nginx() -> str:
    found = shutil.which("nginx")
    if found is None:
        print("installing nginx-light (Debian) ...", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "nginx-light"],
            check=True,
            capture_output=True,
        )
        found = shutil.which("nginx")
    assert found is not None
    return found


def running_router(directory: Path, stable: Served, canary: Served) -> subprocess.Popen[bytes]:
    port = free_port()
    config = nginx_config(f"127.0.0.1:{stable.port}", f"127.0.0.1:{canary.port}", CANARY_PERCENT)
    (directory / "nginx.conf").write_text(config.replace("listen 8080;", f"listen {port};"))
    process = subprocess.Popen(
        [nginx(), "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.DEVNULL,
    )
    process.port = port  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("nginx did not start")


def canary_share(url: str, canary_version: str, requests_count: int = 1000) -> float:
    session = requests.Session()
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    hits = 0
    for _ in range(requests_count):
        answer = session.post(f"{url}/v2/models/iris/infer", json=body, timeout=10).json()
        hits += answer["model_version"] == canary_version
    return hits / requests_count


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.serving.router")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="modelyard-router-") as temporary,
        running_s3_server("127.0.0.1", Path(temporary) / "moto.log") as s3,
        bucket_on(s3) as bucket,
    ):
        work = Path(temporary)
        main_model = iris()
        x, y = load_iris(return_X_y=True)
        features = [Feature(name=name, type="float") for name in IRIS_FEATURES]
        canary_model = train("iris", features, x, y, LogisticRegression(C=0.01, max_iter=500))
        stable = start(bucket.env, bucket.publish(main_model), work)
        canary = start(bucket.env, bucket.publish(canary_model), work)
        router = running_router(work, stable, canary)
        body = work / "body.json"
        body.write_text(json.dumps({"instances": [ROW]}))
        try:
            routed_url = f"http://127.0.0.1:{router.port}"  # type: ignore[attr-defined]
            path = "/v1/models/iris:predict"
            direct = closed_loop(stable.url + path, body, args.connections, args.seconds, None)
            routed = closed_loop(routed_url + path, body, args.connections, args.seconds, None)
            share = canary_share(routed_url, canary_model.card.digest[7:19])
        finally:
            router.terminate()
            router.wait(timeout=10)
            stable.stop()
            canary.stop()
    print(
        json.dumps(
            {
                "command": "python -m tests.bench.serving.router " + " ".join(sys.argv[1:]),
                "connections": args.connections,
                "direct": asdict(direct),
                "routed": asdict(routed),
                "canary_percent": CANARY_PERCENT,
                "canary_share": share,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
