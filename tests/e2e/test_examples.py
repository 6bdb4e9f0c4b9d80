"""Each scenario in examples/ as its README runs it: data generated and uploaded, manifests applied,
the chain Ready, a prediction answered, and the objective, gate or drift outcome it promises.

CI runs the two cheapest (medical-diagnosis: builtin data, about 25 s; credit-scoring: generated
data, the gate blocking a weaker run and `modelyard wait` failing on it, about 45 s), the data
stage's (production-quality: a PostgreSQL table on the node's bridge address, refreshed on a
schedule, cleaned, with derived features) and the model stage's (model-selection: three candidate
estimators ranked on a leaderboard, the evaluation report fetched with `modelyard report`);
`MODELYARD_EXAMPLES=all` runs every example, `MODELYARD_EXAMPLES=demand-forecasting,…` a few.
predictive-maintenance (drift, retraining, the gate) runs in CI in tests/e2e/test_model_stage.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from tests.conftest import EXAMPLES
from tests.e2e.chain import kubectl, status, wait_until
from tests.e2e.conftest import ServiceProxy
from tests.plugins.kube import POD_CIDR, Cluster
from tests.plugins.postgres import PostgresServer, running_postgres
from tests.plugins.s3 import S3Server

pytestmark = pytest.mark.e2e

IN_CI = {"medical-diagnosis", "credit-scoring", "production-quality", "model-selection"}
SELECTED = os.environ.get("MODELYARD_EXAMPLES", "")


def _selected(name: str) -> pytest.MarkDecorator:
    chosen = (
        {p.parent.name for p in EXAMPLES.glob("*/manifests.yaml")}
        if SELECTED == "all"
        else {n.strip() for n in SELECTED.split(",") if n.strip()} or IN_CI
    )
    return pytest.mark.skipif(
        name not in chosen, reason=f"{name}: set MODELYARD_EXAMPLES=all (or ={name}) to run it"
    )


def _generate(node_s3: S3Server, example: str, *args: str) -> str:
    """The example's generate.py, as its README runs it, against the node's S3 server."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / example / "generate.py"), *args],
        env={**os.environ, **node_s3.env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _modelyard(
    cluster: Cluster,
    namespace: str,
    *args: str,
    exit_code: int = 0,
    env: dict[str, str] | None = None,
) -> str:
    """The `modelyard` command as the README runs it; its output, stdout then stderr."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard.cli",
            *args,
            "-n",
            namespace,
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    output = result.stdout + result.stderr
    print(f"$ modelyard {' '.join(args)}\n{output}(exit {result.returncode})")
    assert result.returncode == exit_code, output
    return output


def _apply_and_wait(cluster: Cluster, namespace: str, example: str, deployment: str) -> None:
    kubectl(cluster, "apply", "-n", namespace, "-f", str(EXAMPLES / example / "manifests.yaml"))
    _modelyard(cluster, namespace, "wait", f"mdep/{deployment}", "--timeout", "10m")
    print(f"$ kubectl get modelyard\n{kubectl(cluster, 'get', '-n', namespace, 'modelyard')}")


def _predict(proxy: ServiceProxy, namespace: str, name: str, body: Any) -> Any:
    response = proxy.post(namespace, name, f"v1/models/{name}:predict", body)
    assert response.status_code == 200, response.text
    print(f"predict → {response.text[:300]}")
    return response.json()


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions") or [] if c["type"] == kind)


@_selected("medical-diagnosis")
def test_medical_diagnosis_serves_a_classifier_that_meets_its_recall_bar(
    kube_node: Cluster, ml_namespace: str, proxy: ServiceProxy, custom: Any
) -> None:
    _apply_and_wait(kube_node, ml_namespace, "medical-diagnosis", "diagnosis")
    biopsies = load_breast_cancer()
    rows = [0, 19]  # a malignant (0) and a benign (1) tumour
    answer = _predict(proxy, ml_namespace, "diagnosis", {"instances": biopsies.data[rows].tolist()})
    assert answer["predictions"] == biopsies.target[rows].tolist() == [0, 1]
    training = status(custom, ml_namespace, "trainingjobs", "tumour-classifier")
    assert training["primaryMetric"]["name"] == "recall_macro"
    assert training["metrics"]["recall_macro"] >= 0.95
    served = status(custom, ml_namespace, "modeldeployments", "diagnosis")
    assert served["model"]["run"] == "run-1"
    assert _condition(served, "Promoted")["reason"] == "Promoted"


@_selected("credit-scoring")
def test_credit_scoring_serves_above_the_roc_auc_gate_and_keeps_it_against_a_weaker_run(
    kube_node: Cluster, ml_namespace: str, proxy: ServiceProxy, custom: Any, node_s3: S3Server
) -> None:
    _generate(node_s3, "credit-scoring")
    _apply_and_wait(kube_node, ml_namespace, "credit-scoring", "fraud")
    payments = [
        {
            "amount": 890.0,
            "hour": 3,
            "account_age_days": 20,
            "distance_km": 140.0,
            "card_present": False,
            "merchant_category": "electronics",
        },
        {
            "amount": 25.5,
            "hour": 12,
            "account_age_days": 2400,
            "distance_km": 2.0,
            "card_present": True,
            "merchant_category": "grocery",
        },
    ]
    assert _predict(proxy, ml_namespace, "fraud", {"instances": payments})["predictions"] == [1, 0]
    training = status(custom, ml_namespace, "trainingjobs", "fraud-detector")
    assert training["metrics"]["roc_auc"] >= 0.85

    # The README's second step: a weaker estimator trains fine but stays behind the gate.
    weaker = {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 2}}
    kubectl(
        kube_node,
        "patch",
        "-n",
        ml_namespace,
        "trainingjob/fraud-detector",
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/estimator", "value": weaker}]),
    )
    promoted = wait_until(
        "the gate to block run-2",
        lambda: next(
            (
                c
                for c in status(custom, ml_namespace, "modeldeployments", "fraud").get("conditions")
                or []
                if c["type"] == "Promoted" and c["reason"] == "PromotionBlocked"
            ),
            None,
        ),
    )
    print(f"Promoted=False {promoted['reason']}: {promoted['message']}")
    # What a CI pipeline sees: exit 1, naming the ModelDeployment and the reason.
    output = _modelyard(
        kube_node, ml_namespace, "wait", "mdep/fraud", "--timeout", "2m", exit_code=1
    )
    assert "PromotionBlocked" in output
    runs = status(custom, ml_namespace, "trainingjobs", "fraud-detector")["runs"]
    assert [(r["id"], r["phase"]) for r in runs] == [("run-1", "Succeeded"), ("run-2", "Succeeded")]
    assert runs[1]["metrics"]["roc_auc"] < 0.85
    served = status(custom, ml_namespace, "modeldeployments", "fraud")
    assert served["model"]["run"] == "run-1"
    assert _condition(served, "Ready")["status"] == "True"


def _short(estimator: str) -> str:
    return estimator.rpartition(".")[2]


@_selected("model-selection")
def test_model_selection_ranks_every_candidate_and_reports_on_the_chosen_model(
    kube_node: Cluster,
    ml_namespace: str,
    proxy: ServiceProxy,
    custom: Any,
    node_s3: S3Server,
    tmp_path: Path,
) -> None:
    _generate(node_s3, "model-selection")
    _apply_and_wait(kube_node, ml_namespace, "model-selection", "churn")
    manifests = yaml.safe_load_all((EXAMPLES / "model-selection" / "manifests.yaml").read_text())
    spec = next(d["spec"] for d in manifests if d["kind"] == "TrainingJob")
    run = status(custom, ml_namespace, "trainingjobs", "churn-model")["runs"][-1]
    leaderboard = run["leaderboard"]
    print("$ kubectl get tj churn-model -o jsonpath='{.status.runs[-1].leaderboard}'")
    print("| rank | estimator | params | mean CV roc_auc | std | fit s |")
    for entry in leaderboard:
        print(
            f"| {entry['rank']} | {_short(entry['estimator'])} | {json.dumps(entry['params'])} "
            f"| {entry['score']:.4f} | {entry.get('scoreStd', 0):.4f} "
            f"| {entry.get('fitSeconds', 0):.2f} |"
        )
    # Five trials in all: every candidate is on the leaderboard, best first.
    assert {_short(e["estimator"]) for e in leaderboard} == {
        _short(c["class"]) for c in spec["candidates"]
    }
    assert [e["rank"] for e in leaderboard] == list(range(1, len(leaderboard) + 1))
    scores = [e["score"] for e in leaderboard]
    assert scores == sorted(scores, reverse=True)
    assert _short(run["estimator"]) == _short(leaderboard[0]["estimator"])
    print(f"{run['id']}: {run['estimator']} {run['params']} → {run['metrics']}")
    assert run["metrics"]["roc_auc"] >= spec["objective"]["minimum"]

    report = run["report"]
    print(f"report: {json.dumps(report, indent=1)}")
    assert report["plots"]
    _modelyard(
        kube_node,
        ml_namespace,
        "report",
        "churn-model",
        "--output",
        str(tmp_path),
        env=node_s3.env(),
    )
    for plot in report["plots"]:
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG"), plot
    assert "<html" in (tmp_path / "report.html").read_text().lower()

    subscribers = [
        # New, month to month, fiber, calling support again and again, paying by e-check.
        {
            "tenure_months": 2,
            "monthly_charges": 95.0,
            "contract": "month-to-month",
            "internet": "fiber",
            "payment_method": "electronic-check",
            "support_calls": 5,
            "data_usage_gb": 80.0,
            "senior": False,
        },
        # Five years in, on a two-year contract, DSL, never calls.
        {
            "tenure_months": 60,
            "monthly_charges": 52.0,
            "contract": "two-year",
            "internet": "dsl",
            "payment_method": "bank-transfer",
            "support_calls": 0,
            "data_usage_gb": 150.0,
            "senior": False,
        },
    ]
    assert _predict(proxy, ml_namespace, "churn", {"instances": subscribers})["predictions"] == [
        1,
        0,
    ]


@_selected("demand-forecasting")
def test_demand_forecasting_serves_a_regressor_within_its_error_gate(
    kube_node: Cluster, ml_namespace: str, proxy: ServiceProxy, custom: Any, node_s3: S3Server
) -> None:
    _generate(node_s3, "demand-forecasting")
    _apply_and_wait(kube_node, ml_namespace, "demand-forecasting", "demand")
    days = [
        {
            "store": "city",
            "day_of_year": 196,
            "day_of_week": 5,
            "month": 7,
            "holiday": False,
            "promotion": True,
            "temperature_c": 24.0,
        },
        {
            "store": "airport",
            "day_of_year": 20,
            "day_of_week": 1,
            "month": 1,
            "holiday": False,
            "promotion": False,
            "temperature_c": 1.5,
        },
    ]
    summer_promotion, winter_tuesday = _predict(proxy, ml_namespace, "demand", {"instances": days})[
        "predictions"
    ]
    assert summer_promotion > 3 * winter_tuesday > 0
    training = status(custom, ml_namespace, "trainingjobs", "demand-forecaster")
    assert training["metrics"]["r2"] >= 0.9
    assert training["metrics"]["mae"] <= 12
    assert status(custom, ml_namespace, "modeldeployments", "demand")["model"]["run"] == "run-1"


@pytest.fixture
def plant_db(kube_node: Cluster) -> Iterator[PostgresServer]:
    """The plant's database: PostgreSQL on the node's bridge address, where pods reach it."""
    assert kube_node.host_ip is not None
    with running_postgres(kube_node.host_ip, clients=POD_CIDR) as server:
        yield server


def _plant_generate(database: PostgresServer, day: int) -> str:
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "production-quality" / "generate.py"),
            "--database-url",
            database.uri(),
            "--day",
            str(day),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    print(f"$ python examples/production-quality/generate.py --day {day}\n{result.stdout}")
    return result.stdout


@_selected("production-quality")
def test_production_quality_cleans_a_database_table_and_retrains_on_a_scheduled_refresh(
    kube_node: Cluster,
    ml_namespace: str,
    proxy: ServiceProxy,
    custom: Any,
    plant_db: PostgresServer,
) -> None:
    _plant_generate(plant_db, 1)
    kubectl(
        kube_node,
        "create",
        "secret",
        "generic",
        "plant-db",
        "-n",
        ml_namespace,
        f"--from-literal=uri={plant_db.uri()}",
    )
    _apply_and_wait(kube_node, ml_namespace, "production-quality", "defects")
    dataset = status(custom, ml_namespace, "datasets", "batches")
    print(f"cleaning: {json.dumps(dataset['cleaning'], indent=1)}")
    counts = {(c["rule"], c["action"]): c["rows"] for c in dataset["cleaning"]}
    # What generate.py put in: 2 % of batches twice, 1 % stuck at 9999 °C, 3 % without a
    # temperature, hand-typed line names and materials in several spellings.
    assert 15 <= counts[("cleaning.dropDuplicates", "dropped")] <= 50
    assert 5 <= counts[("cleaning.columns[temperature_c].outliers", "dropped")] <= 30
    assert 20 <= counts[("cleaning.columns[temperature_c].missing", "filled")] <= 80
    assert counts[("cleaning.columns[line].mapping", "mapped")] > 100
    assert dataset["rows"] < 1500
    lines = next(s for s in dataset["statistics"] if s["name"] == "line")
    assert {c["value"] for c in lines["categories"]} == {"line-a", "line-b", "line-c"}
    assert dataset["nextRefreshTime"] > dataset["lastRefreshTime"]

    training = status(custom, ml_namespace, "trainingjobs", "defect-classifier")
    assert training["metrics"]["roc_auc"] >= 0.8
    batch = {
        "line": " Line A",
        "material": "Alloy",
        "started_at": "2026-12-01T03:10:00",
        "temperature_c": 84.0,
        "pressure_in": 10.0,
        "pressure_out": 13.5,
        "speed_rpm": 120,
        "operator_experience_years": 0.5,
    }
    calm = {**batch, "started_at": "2026-12-01T14:00:00", "temperature_c": 66.0}
    calm |= {"pressure_out": 11.5, "operator_experience_years": 12.0}
    answer = _predict(proxy, ml_namespace, "defects", {"instances": [batch, calm]})
    assert answer["predictions"] == [True, False]

    # A new day of batches: the next scheduled refresh finds a new version, which retrains.
    _plant_generate(plant_db, 2)

    def run_2_served() -> bool:
        served = status(custom, ml_namespace, "modeldeployments", "defects")
        return served.get("phase") == "Ready" and (served.get("model") or {}).get("run") == "run-2"

    wait_until("run-2 served after the scheduled refresh", run_2_served, timeout=600)
    print(f"$ kubectl get modelyard\n{kubectl(kube_node, 'get', '-n', ml_namespace, 'modelyard')}")
    refreshed = status(custom, ml_namespace, "datasets", "batches")
    assert refreshed["version"] != dataset["version"]
    assert refreshed["rows"] > 2 * dataset["rows"] - 100
    events = kubectl(kube_node, "get", "events", "-n", ml_namespace, "-o", "json")
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert "ScheduledRefresh" in reasons
