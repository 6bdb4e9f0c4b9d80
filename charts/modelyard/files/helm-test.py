"""`helm test` for a Modelyard release, run by the chart's test pods with the operator image's
Python (the image has no curl). Two checks:

  metrics URL            the operator answers on its metrics Service; the Service sends traffic
                         only to a Ready pod, whose /healthz answered the readiness probe
  predict URL INSTANCES  a KServe V1 request to a model server gets one prediction per instance
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

ATTEMPTS = 5
PAUSE_SECONDS = 3
# Straight to the cluster Service: no proxy from the environment in between.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(request: urllib.request.Request) -> bytes:
    """The body of a 2xx answer. A Service that does not answer yet (a pod just restarted) is
    asked again a few times; an HTTP error is an answer, and fails the test at once."""
    attempt = 1
    while True:
        try:
            with OPENER.open(request, timeout=30) as answer:
                body: bytes = answer.read()
                return body
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            sys.exit(f"{request.full_url}: HTTP {error.code}: {detail}")
        except OSError as error:
            if attempt == ATTEMPTS:
                sys.exit(f"{request.full_url}: no answer after {ATTEMPTS} attempts: {error}")
        attempt += 1
        time.sleep(PAUSE_SECONDS)


def check_metrics(url: str) -> None:
    body = fetch(urllib.request.Request(url)).decode(errors="replace")
    if "modelyard_" not in body:
        sys.exit(f"{url}: answers, but with no modelyard_ metric: not the Modelyard operator")
    print(f"the operator is ready: {url} answers")


def check_predict(url: str, instances: list[object]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps({"instances": instances}).encode(),
        headers={"Content-Type": "application/json"},
    )
    answer = json.loads(fetch(request))
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list) or len(predictions) != len(instances):
        sys.exit(f"{url}: expected {len(instances)} prediction(s), got {json.dumps(answer)}")
    print(f"{url}: {json.dumps(predictions)}")


def main(argv: list[str]) -> None:
    match argv:
        case ["metrics", url]:
            check_metrics(url)
        case ["predict", url, instances]:
            check_predict(url, json.loads(instances))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
