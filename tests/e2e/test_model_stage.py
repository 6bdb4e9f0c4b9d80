"""The model stage on the local node, as examples/predictive-maintenance/README.md runs it: the
operator gathers input drift from the model servers, turns Drifted True when the inputs shift,
and the TrainingJob (retrainOn: [DatasetChange, Drift]) refreshes its Dataset and retrains. A run
that passes the promotion gate takes over serving without a single failed request; one that does
not is recorded and the model already served keeps serving.

A client thread sends one sensor reading per request at a steady rate from before the drift to
after the switch (or the block) and counts every failed request. The times it takes are printed
(`FIGURE …` lines), never asserted: they depend on the machine.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES
from tests.e2e.chain import kubectl, status, wait_until
from tests.e2e.conftest import ServiceProxy
from tests.e2e.test_examples import _apply_and_wait, _condition, _generate
from tests.plugins.kube import Cluster
from tests.plugins.s3 import S3Server

pytestmark = pytest.mark.e2e

EXAMPLE = "predictive-maintenance"
DEPLOYMENT, TRAINING_JOB, DATASET = "pumps", "failure-predictor", "sensors"
# Readings per second the client sends, one per request.
RATE = 10
SERVING = next(
    d["spec"]
    for d in yaml.safe_load_all((EXAMPLES / EXAMPLE / "manifests.yaml").read_text())
    if d["kind"] == "ModelDeployment"
)
MIN_ROWS = SERVING["monitoring"]["drift"]["minRows"]
THRESHOLD = SERVING["monitoring"]["drift"]["threshold"]
GATE = SERVING["promotion"]["minimum"]
# The features version 2's sensor firmware changed, and those it left alone.
SHIFTED = ("temperature_c", "vibration")
STEADY = ("pressure_bar", "rpm", "hours_since_service", "pump_model")


class Traffic:
    """Pumps reporting: one reading per predict request at a steady rate, from a thread of its
    own, through the API server's service proxy; every failed request is kept."""

    def __init__(self, cluster: Cluster, namespace: str, bodies: list[dict[str, Any]]) -> None:
        self.proxy = ServiceProxy(cluster)
        self.namespace = namespace
        self.bodies = bodies
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def switch(self, bodies: list[dict[str, Any]]) -> None:
        """Send these readings from the next request on."""
        self.bodies = bodies

    def _run(self) -> None:
        path = f"v1/models/{DEPLOYMENT}:predict"
        next_at = time.monotonic()
        while not self._stop.is_set():
            body = self.bodies[self.sent % len(self.bodies)]
            try:
                response = self.proxy.post(self.namespace, DEPLOYMENT, path, body)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
            except Exception as error:  # every failure counts, whatever it is
                self.failures.append(repr(error))
            self.sent += 1
            next_at += 1 / RATE
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.proxy.session.close()


def _readings(node_s3: S3Server, version: int, count: int) -> list[dict[str, Any]]:
    """Fresh readings of a version, one predict body each, as the README makes them."""
    out = _generate(
        node_s3, EXAMPLE, "--version", str(version), "--requests", str(count), "--per-line"
    )
    return [json.loads(line) for line in out.splitlines()]


def _events(cluster: Cluster, namespace: str, reason: str, name: str) -> list[dict[str, Any]]:
    items = json.loads(kubectl(cluster, "get", "events", "-n", namespace, "-o", "json"))["items"]
    return [e for e in items if e["reason"] == reason and e["involvedObject"]["name"] == name]


def _event(cluster: Cluster, namespace: str, reason: str, *names: str) -> dict[str, Any]:
    """The first `reason` Event on any of the named objects, once there is one."""
    event: dict[str, Any] = wait_until(
        f"a {reason} Event on {' or '.join(names)}",
        lambda: next(
            (e for name in names for e in _events(cluster, namespace, reason, name)), None
        ),
        timeout=120,
    )
    involved = event["involvedObject"]
    print(f"Event {event['type']} {reason} on {involved['kind']}/{involved['name']}: ", end="")
    print(event["message"])
    return event


def _drifted(custom: Any, namespace: str) -> dict[str, Any] | None:
    served = status(custom, namespace, "modeldeployments", DEPLOYMENT)
    return next((c for c in served.get("conditions") or [] if c["type"] == "Drifted"), None)


def _wait_drifted(custom: Any, namespace: str, state: str, what: str) -> float:
    """Seconds until the Drifted condition reads `state`, polled every half second."""
    started = time.monotonic()
    deadline = started + 300
    while (condition := _drifted(custom, namespace)) is None or condition["status"] != state:
        assert time.monotonic() < deadline, f"Drifted never turned {state} ({what}): {condition}"
        time.sleep(0.5)
    print(f"Drifted={state} {condition['reason']}: {condition['message']}")
    return time.monotonic() - started


def _monitoring(custom: Any, namespace: str) -> dict[str, Any]:
    monitoring: dict[str, Any] = (
        status(custom, namespace, "modeldeployments", DEPLOYMENT).get("monitoring") or {}
    )
    return monitoring


def _psi(monitoring: dict[str, Any]) -> dict[str, float]:
    return {f["name"]: f["psi"] for f in (monitoring.get("drift") or {}).get("features") or []}


def _automatic_retrain(custom: Any, namespace: str) -> dict[str, Any]:
    """status.lastAutomaticRetrain once it names the run it started."""

    def started() -> dict[str, Any] | None:
        training = status(custom, namespace, "trainingjobs", TRAINING_JOB)
        retrain: dict[str, Any] | None = training.get("lastAutomaticRetrain")
        return retrain if retrain and retrain.get("run") else None

    retrain: dict[str, Any] = wait_until("the automatic retrain to start a run", started)
    print(f"lastAutomaticRetrain: {json.dumps(retrain)}")
    return retrain


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


@pytest.fixture
def traffic_figures() -> Iterator[dict[str, float]]:
    """Figures a test measures, printed at its end whatever its outcome."""
    figures: dict[str, float] = {}
    yield figures
    for name, value in figures.items():
        print(f"FIGURE {name}: {value:.1f}")


def test_drift_retrains_on_refreshed_data_and_the_new_model_serves_without_a_failed_request(
    kube_node: Cluster,
    ml_namespace: str,
    custom: Any,
    node_s3: S3Server,
    traffic_figures: dict[str, float],
) -> None:
    _generate(node_s3, EXAMPLE, "--version", "1")
    _apply_and_wait(kube_node, ml_namespace, EXAMPLE, DEPLOYMENT)
    first_version = status(custom, ml_namespace, "datasets", DATASET)["version"]
    familiar, drifting = _readings(node_s3, 1, 300), _readings(node_s3, 2, 1000)

    with Traffic(kube_node, ml_namespace, familiar) as traffic:
        # Readings like the training data: judged, and not drifted.
        wait_until(
            "the servers to have seen minRows readings",
            lambda: (
                (_monitoring(custom, ml_namespace).get("drift") or {}).get("rows", 0) >= MIN_ROWS
            ),
            timeout=120,
        )
        _wait_drifted(custom, ml_namespace, "False", "familiar readings")
        familiar_psi = _psi(_monitoring(custom, ml_namespace))
        print(f"PSI, version-1 readings on run-1: {familiar_psi}")
        assert max(familiar_psi.values()) < THRESHOLD

        # The firmware update: the source holds version 2, and pumps report in the new units.
        _generate(node_s3, EXAMPLE, "--version", "2")
        sent_before = traffic.sent
        traffic.switch(drifting)
        traffic_figures["seconds from drifting traffic to Drifted"] = _wait_drifted(
            custom, ml_namespace, "True", "version-2 readings"
        )
        traffic_figures["drifting requests before Drifted"] = traffic.sent - sent_before
        traffic_figures["requests per second"] = RATE
        monitoring = _monitoring(custom, ml_namespace)
        print(f"status.monitoring: {json.dumps(monitoring)}")
        psi = _psi(monitoring)
        # Drifted turns True in the gathering where drifted readings first outweigh the familiar
        # ones in the servers' windows: one shifted feature is past the threshold then, the other
        # may still be just below it (CI50: 0.28 and 0.24 against 0.25). Both rank above every
        # steady feature, which stays below.
        assert max(psi[feature] for feature in SHIFTED) > THRESHOLD, psi
        assert min(psi[feature] for feature in SHIFTED) > max(psi[f] for f in STEADY), psi
        assert all(psi[feature] < THRESHOLD for feature in STEADY), psi
        assert monitoring["drift"]["maxPsi"] == max(psi.values())
        _event(kube_node, ml_namespace, "DriftDetected", DEPLOYMENT)

        triggered = _event(kube_node, ml_namespace, "RetrainTriggered", TRAINING_JOB, DEPLOYMENT)
        assert any(feature in triggered["message"] for feature in SHIFTED)
        retrain = _automatic_retrain(custom, ml_namespace)
        assert retrain["trigger"] == "Drift"
        assert retrain["modelDeployment"] == DEPLOYMENT
        new_run = retrain["run"]
        assert new_run != "run-1"
        observed_trigger = time.monotonic()

        def new_run_served() -> dict[str, Any] | None:
            served = status(custom, ml_namespace, "modeldeployments", DEPLOYMENT)
            model = served.get("model") or {}
            ready = served.get("phase") == "Ready" and model.get("run") == new_run
            return served if ready else None

        served = wait_until(f"{new_run} served", new_run_served)
        traffic_figures["seconds from seeing the trigger to the new model serving"] = (
            time.monotonic() - observed_trigger
        )
        traffic_figures["seconds from requestedAt to servedSince (operator clocks)"] = (
            _seconds_between(retrain["requestedAt"], served["servedSince"])
        )
        # The new model's baseline is version 2: the same readings are familiar to it.
        _wait_drifted(custom, ml_namespace, "False", f"version-2 readings on {new_run}")
        after_psi = _psi(_monitoring(custom, ml_namespace))
        print(f"PSI, version-2 readings on {new_run}: {after_psi}")
        # The old server has drained by now; a few more requests on the new one alone.
        time.sleep(5)

    print(f"$ kubectl get modelyard\n{kubectl(kube_node, 'get', '-n', ml_namespace, 'modelyard')}")
    print(f"requests sent: {traffic.sent}, failed: {len(traffic.failures)}")
    assert traffic.failures == []
    assert traffic.sent > RATE * 10

    dataset = status(custom, ml_namespace, "datasets", DATASET)
    assert dataset["version"] != first_version
    assert served["model"]["datasetVersion"] == dataset["version"]
    assert served["history"][0]["model"]["run"] == "run-1"
    training = status(custom, ml_namespace, "trainingjobs", TRAINING_JOB)
    run = next(r for r in training["runs"] if r["id"] == new_run)
    print(f"{new_run}: cause {run.get('cause')!r}, metrics {run['metrics']}")
    assert run["datasetVersion"] == dataset["version"]
    assert any(feature in (run.get("cause") or "") for feature in SHIFTED)
    assert run["metrics"]["roc_auc"] >= GATE


def test_a_retrained_model_that_fails_the_gate_is_recorded_and_the_old_one_keeps_serving(
    kube_node: Cluster,
    ml_namespace: str,
    custom: Any,
    node_s3: S3Server,
    traffic_figures: dict[str, float],
) -> None:
    _generate(node_s3, EXAMPLE, "--version", "1")
    _apply_and_wait(kube_node, ml_namespace, EXAMPLE, DEPLOYMENT)
    before = status(custom, ml_namespace, "modeldeployments", DEPLOYMENT)["model"]
    # The new readings come with the labels of a broken labelling job.
    _generate(node_s3, EXAMPLE, "--version", "3")

    with Traffic(kube_node, ml_namespace, _readings(node_s3, 2, 1000)) as traffic:
        # From the first request: minRows readings arrive first.
        traffic_figures["seconds from the first (drifting) request to Drifted"] = _wait_drifted(
            custom, ml_namespace, "True", "version-2 readings"
        )
        retrain = _automatic_retrain(custom, ml_namespace)
        assert retrain["trigger"] == "Drift"
        new_run = retrain["run"]
        observed_trigger = time.monotonic()

        def run_finished() -> dict[str, Any] | None:
            runs = status(custom, ml_namespace, "trainingjobs", TRAINING_JOB).get("runs") or []
            run = next((r for r in runs if r["id"] == new_run), None)
            return run if run and run["phase"] in ("Succeeded", "Failed") else None

        run = wait_until(f"{new_run} to finish", run_finished)
        print(f"{new_run}: {run['phase']}, cause {run.get('cause')!r}, metrics {run['metrics']}")
        assert run["phase"] == "Succeeded"
        # Trained on the refreshed (mislabelled) version: no better than chance at ranking.
        assert run["datasetVersion"] != before["datasetVersion"]
        assert run["metrics"]["roc_auc"] < GATE

        def blocked() -> dict[str, Any] | None:
            served = status(custom, ml_namespace, "modeldeployments", DEPLOYMENT)
            promoted = next(
                (c for c in served.get("conditions") or [] if c["type"] == "Promoted"), None
            )
            return promoted if promoted and promoted["reason"] == "PromotionBlocked" else None

        promoted = wait_until(f"the gate to block {new_run}", blocked)
        traffic_figures["seconds from seeing the trigger to the gate's verdict"] = (
            time.monotonic() - observed_trigger
        )
        print(f"Promoted={promoted['status']} {promoted['reason']}: {promoted['message']}")
        assert new_run in promoted["message"]
        _event(kube_node, ml_namespace, "PromotionBlocked", DEPLOYMENT)
        # Requests keep being answered by the model that was already serving.
        time.sleep(10)

    print(f"$ kubectl get modelyard\n{kubectl(kube_node, 'get', '-n', ml_namespace, 'modelyard')}")
    print(f"requests sent: {traffic.sent}, failed: {len(traffic.failures)}")
    assert traffic.failures == []
    served = status(custom, ml_namespace, "modeldeployments", DEPLOYMENT)
    assert served["model"] == before
    assert _condition(served, "Ready")["status"] == "True"
    assert _condition(served, "Drifted")["status"] == "True"
    runs = status(custom, ml_namespace, "trainingjobs", TRAINING_JOB)["runs"]
    # One automatic retrain: the cooldown keeps a lasting drift from retraining in a loop.
    assert [r["id"] for r in runs] == ["run-1", new_run]
