"""Monitoring across real server processes, as the operator gathers it: one server with two
workers and a second server as a second replica, each process answering on its own monitoring
port behind the deployment's token. Summed drift counts cover every row sent, feedback that
lands on a process without the prediction is counted exactly once after being relayed to the
others, and no one without the token gets anything from a monitoring port."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from sklearn.datasets import load_iris

from modelyard.monitoring import report, token
from modelyard.monitoring.psi import psi, shares
from modelyard.monitoring.quality import QualitySums
from modelyard.workloads.common.modelcard import NumericBaseline
from tests.plugins.s3 import S3Server
from tests.serving import Bucket, Served, bucket_on, start
from tests.unit.test_serve_protocol import Trained, iris

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> Iterator[Bucket]:
    with bucket_on(s3_server) as bucket:
        yield bucket


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-monitoring")


@pytest.fixture(scope="module")
def iris_model() -> Trained:
    return iris()


@pytest.fixture(scope="module")
def replicas(bucket: Bucket, workdir: Path, iris_model: Trained) -> Iterator[list[Served]]:
    """Two "replicas" of one model: a server with two workers, and a single-process one, with
    the token the operator gives the pods of one ModelDeployment."""
    uri = bucket.publish(iris_model)
    secret = token.for_deployment("d1a0c5e2-uid")
    servers = [
        start(bucket.env, uri, workdir, "--workers", "2", monitor_token=secret),
        start(bucket.env, uri, workdir, monitor_token=secret),
    ]
    for served in servers:
        assert served.process.poll() is None, served.log()
    yield servers
    for served in servers:
        assert served.stop() == 0, served.log()


def monitoring_urls(replicas: list[Served]) -> list[str]:
    return [url for served in replicas for url in served.monitor_urls()]


def operator_headers(replicas: list[Served]) -> dict[str, str]:
    return replicas[0].monitor_headers()


def collect_all(replicas: list[Served]) -> list[report.ProcessReport]:
    """What the operator does each interval: ask every process, parse its answer."""
    answers = []
    for url in monitoring_urls(replicas):
        answer = requests.post(
            f"{url}/monitoring/collect", headers=operator_headers(replicas), timeout=10
        )
        assert answer.status_code == 200, answer.text
        answers.append(report.parse(answer.json()))
    return answers


def fresh_post(url: str, document: dict[str, Any], **headers: str) -> requests.Response:
    """On a new connection, so that the kernel picks the worker anew each time."""
    return requests.post(url, json=document, headers={"Connection": "close", **headers}, timeout=10)


def hand_counts(rows: np.ndarray, baseline: NumericBaseline, column: int) -> list[int]:
    """Rows per bin, counted by comparing with the edges one by one (drift.py's rule)."""
    counts = [0] * len(baseline.proportions)
    for value in rows[:, column]:
        counts[sum(1 for edge in baseline.edges if edge <= value)] += 1
    return counts


def test_summed_drift_counts_cover_every_row_sent(
    replicas: list[Served], iris_model: Trained
) -> None:
    x, _ = load_iris(return_X_y=True)
    sent = x.copy()
    sent[:, 2] += 1.5  # petal length drifts; the rest looks like training
    before = collect_all(replicas)
    for start_row in range(0, len(sent), 5):
        batch = sent[start_row : start_row + 5].tolist()
        for served in replicas[:1] if start_row % 10 else replicas[1:]:
            answer = fresh_post(f"{served.url}/v1/models/iris:predict", {"instances": batch})
            assert answer.status_code == 200, answer.text

    processes = collect_all(replicas)
    assert len({process.worker for process in processes}) == 3  # three processes answered
    assert {process.model for process in processes} == {iris_model.card.digest}
    # Within the drift window (1000 rows a process) nothing was pushed out: what came in since
    # the last collect is the difference.
    assert sum(p.rows for p in processes) - sum(p.rows for p in before) == len(sent)
    for f, baseline in enumerate(iris_model.card.baseline):
        assert isinstance(baseline, NumericBaseline)
        summed = np.sum([p.features[f].counts for p in processes], axis=0) - np.sum(
            [p.features[f].counts for p in before], axis=0
        )
        assert summed.tolist() == hand_counts(sent, baseline, f)
        assert all(p.features[f].expected == baseline.proportions for p in processes)
        expected_psi = psi(baseline.proportions, shares(hand_counts(sent, baseline, f)))
        assert psi(baseline.proportions, shares(summed.tolist())) == pytest.approx(expected_psi)
        if baseline.feature == "petal_length":
            assert expected_psi > 0.25  # the shift shows


def test_feedback_is_counted_once_after_the_operator_relays_it(
    replicas: list[Served], iris_model: Trained
) -> None:
    two_workers, single = replicas
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    tensor = {"name": "x", "shape": [3, 4], "datatype": "FP64", "data": rows}
    v2 = fresh_post(
        f"{two_workers.url}/v2/models/iris/infer", {"id": "order-1", "inputs": [tensor]}
    )
    assert v2.headers["x-request-id"] == "order-1" and v2.json()["id"] == "order-1"
    v1 = fresh_post(
        f"{two_workers.url}/v1/models/iris:predict", {"instances": rows}, **{"X-Request-Id": "t-2"}
    )
    assert v1.headers["x-request-id"] == "t-2"
    made = fresh_post(f"{single.url}/v1/models/iris:predict", {"instances": rows[:1]})
    made_id = made.headers["x-request-id"]
    assert made_id and made_id not in ("order-1", "t-2")
    labels = v1.json()["predictions"]
    assert v2.json()["outputs"][0]["data"] == labels  # the same model on the same rows
    wrong = [(labels[0] + 1) % 3]
    collect_all(replicas)  # start from nothing held

    # Feedback on the serving ports: the two-worker server's kernel picks a worker, which may
    # or may not hold the prediction; the single server never holds order-1 or t-2.
    answers = [
        fresh_post(
            f"{two_workers.url}/v2/models/iris/feedback", {"id": "order-1", "truth": labels}
        ),
        fresh_post(f"{single.url}/v1/models/iris:feedback", {"id": "t-2", "truth": labels}),
        fresh_post(f"{single.url}/v1/models/iris:feedback", {"id": made_id, "truth": wrong}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    outcomes = [answer.json() for answer in answers]
    assert outcomes[1] == {"id": "t-2", "matched": False}
    assert outcomes[2] == {"id": made_id, "matched": True}

    # The operator's round: collect, then relay each process's unmatched feedback to the others.
    urls = monitoring_urls(replicas)
    processes = collect_all(replicas)
    unmatched = {"order-1": 0 if outcomes[0]["matched"] else 1, "t-2": 1}
    assert sorted(f.id for p in processes for f in p.unmatched) == sorted(
        key for key, count in unmatched.items() if count
    )
    relayed_matches = 0
    for url, process in zip(urls, processes, strict=True):
        if not process.unmatched:
            continue
        document = {"feedback": [{"id": f.id, "truth": f.truth} for f in process.unmatched]}
        for other in urls:
            if other != url:
                answer = requests.post(
                    f"{other}/monitoring/feedback",
                    json=document,
                    headers=operator_headers(replicas),
                    timeout=10,
                )
                assert answer.status_code == 200, answer.text
                relayed_matches += answer.json()["matched"]
    assert relayed_matches == sum(unmatched.values())

    processes = collect_all(replicas)
    assert all(not process.unmatched for process in processes)
    total = sum((process.quality for process in processes), start=QualitySums())
    # Every labelled row exactly once: 3 + 3 right, the made-id row wrong.
    assert total == QualitySums(labels=7, correct=6)

    # A second feedback for an id is no longer matched, and relaying it matches nothing.
    again = fresh_post(f"{single.url}/v1/models/iris:feedback", {"id": made_id, "truth": wrong})
    assert again.json() == {"id": made_id, "matched": False}
    relay = {"feedback": [{"id": made_id, "truth": wrong}]}
    for url in urls:
        answer = requests.post(
            f"{url}/monitoring/feedback", json=relay, headers=operator_headers(replicas), timeout=10
        )
        assert answer.json() == {"matched": 0}


def test_without_the_token_a_monitoring_port_gives_nothing_and_takes_nothing(
    replicas: list[Served],
) -> None:
    """Another pod of the cluster can reach the ports, but can neither drain the feedback a
    process holds (other clients' ids and labels) nor relay labels of its own."""
    single = replicas[1]
    collect_all(replicas)  # start from nothing held
    answer = fresh_post(f"{single.url}/v1/models/iris:feedback", {"id": "held-1", "truth": [1]})
    assert answer.json() == {"id": "held-1", "matched": False}  # held for the operator
    relay = {"feedback": [{"id": "held-1", "truth": [2]}]}
    strangers: list[dict[str, str]] = [
        {},
        {"Authorization": token.header_value(token.for_deployment("another-deployment"))},
        {"Authorization": f"Basic {single.monitor_token}"},
    ]
    cases: list[tuple[str, dict[str, Any] | None]] = [("collect", None), ("feedback", relay)]
    for url in monitoring_urls(replicas):
        for headers in strangers:
            for path, document in cases:
                answer = requests.post(
                    f"{url}/monitoring/{path}", json=document, headers=headers, timeout=10
                )
                assert answer.status_code == 401, answer.text
                assert answer.headers["www-authenticate"].startswith("Bearer")
    # The operator still gets what the process held.
    processes = collect_all(replicas)
    assert [f for p in processes for f in p.unmatched] == [report.Feedback("held-1", [1])]


def test_a_taken_monitoring_port_ends_the_server_with_bind_failed(
    bucket: Bucket, workdir: Path, iris_model: Trained
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        served = start(bucket.env, bucket.publish(iris_model), workdir, "--monitor-port", str(port))
        code = served.process.wait(timeout=60)
    message = json.loads(served.termination_log.read_text())
    assert code != 0
    assert message["reason"] == "BindFailed"
    assert f"127.0.0.1:{port} (monitoring port of worker 0)" in message["message"]
