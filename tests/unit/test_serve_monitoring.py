"""What a server process monitors: request ids on both protocols, ground truth matched by id into
the live metric (once per id), unmatched feedback handed to the operator once, drift counts per
baseline bin, the monitoring port's two routes behind its token, and the pod's monitoring
ports."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelyard.config import ConfigError, OperatorConfig
from modelyard.monitoring import report, token
from modelyard.monitoring.psi import psi, shares
from modelyard.monitoring.quality import QualitySums
from modelyard.resources.jobs import Owner
from modelyard.resources.serving import ModelRef, build_deployment
from modelyard.workloads.common.modelcard import CategoricalBaseline, NumericBaseline
from modelyard.workloads.serving.app import App, Response
from modelyard.workloads.serving.config import UsageError, parse
from modelyard.workloads.serving.drift import DriftMonitor
from modelyard.workloads.serving.metrics import Metrics
from modelyard.workloads.serving.monitor import MonitorApp
from tests.unit.test_serve_protocol import ROWS, Trained, iris, mixed, regression

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture(scope="module")
def iris_trained() -> Trained:
    return iris()


@pytest.fixture(scope="module")
def petal_trained() -> Trained:
    return regression()


def serving(trained: Trained, **settings: int) -> App:
    app = App(None, Metrics(), 100, **settings)
    app.set_model(trained.model(), 0.0)
    return app


def call(
    app: App | MonitorApp,
    path: str,
    document: Any,
    header: str | None = None,
    authorization: str | None = None,
) -> Response:
    result = app.handle(
        b"POST",
        path.encode(),
        orjson.dumps(document),
        header.encode() if header else None,
        authorization.encode() if authorization is not None else None,
    )
    assert isinstance(result, Response)  # small requests are answered inline
    return result


def v2(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    tensor = {"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}
    return {"inputs": [tensor], **extra}


def echoed(response: Response) -> str:
    """The X-Request-Id the response carries."""
    assert response.status == 200, response.body
    lines = response.headers.decode().split("\r\n")
    (value,) = [line.split(": ", 1)[1] for line in lines if line.startswith("x-request-id: ")]
    return value


def predicted(response: Response) -> list[Any]:
    document = orjson.loads(response.body)
    if "predictions" in document:
        return list(document["predictions"])
    return list(document["outputs"][0]["data"])


def collect(app: App) -> report.ProcessReport:
    answer = call(MonitorApp(app), "/monitoring/collect", None)
    assert answer.status == 200, answer.body
    return report.parse(orjson.loads(answer.body))


# --- request ids ---------------------------------------------------------------------------


def test_v2_takes_the_body_id_then_the_header_then_makes_one(iris_trained: Trained) -> None:
    app = serving(iris_trained)
    path = "/v2/models/iris/infer"
    answer = call(app, path, v2(ROWS, id="order-7"), header="ignored-when-the-body-has-one")
    assert echoed(answer) == "order-7" and orjson.loads(answer.body)["id"] == "order-7"
    answer = call(app, path, v2(ROWS), header="trace-42")
    assert echoed(answer) == "trace-42" and orjson.loads(answer.body)["id"] == "trace-42"
    made = {echoed(call(app, path, v2(ROWS))) for _ in range(50)}
    assert len(made) == 50  # unique, and echoed in the body as well:
    answer = call(app, path, v2(ROWS))
    assert orjson.loads(answer.body)["id"] == echoed(answer)


def test_made_ids_cannot_be_guessed_from_one_another(iris_trained: Trained) -> None:
    """A client that knows its own id must not be able to name (and label first) another's."""
    app = serving(iris_trained)
    path = "/v1/models/iris:predict"
    made = [echoed(call(app, path, {"instances": ROWS})) for _ in range(200)]
    # Nothing shared to count on from one id to the next: each is 96 random bits (24 hex
    # digits), so even their first digits differ among 200 of them.
    assert len({made_id[0] for made_id in made}) > 1
    assert all(len(made_id) == 24 for made_id in made)


def test_v1_takes_the_header_or_makes_one(iris_trained: Trained) -> None:
    app = serving(iris_trained)
    for verb in ("predict", "predict_proba"):
        path = f"/v1/models/iris:{verb}"
        assert echoed(call(app, path, {"instances": ROWS}, header="trace-9")) == "trace-9"
        first = echoed(call(app, path, {"instances": ROWS}))
        assert first and first != echoed(call(app, path, {"instances": ROWS}))


@pytest.mark.parametrize(
    ("value", "problem"),
    [("x" * (report.MAX_ID_LENGTH + 1), "1 to 256 characters"), ("a\tb", "control characters")],
)
def test_bad_client_ids_are_refused_naming_them(
    iris_trained: Trained, value: str, problem: str
) -> None:
    app = serving(iris_trained)
    answers = {
        '"id"': call(app, "/v2/models/iris/infer", v2(ROWS, id=value)),
        "X-Request-Id header": call(app, "/v2/models/iris/infer", v2(ROWS), header=value),
        "X-Request-Id header ": call(app, "/v1/models/iris:predict", {"instances": ROWS}, value),
    }
    for name, answer in answers.items():
        assert answer.status == 400
        message = orjson.loads(answer.body)["error"]
        assert name.strip() in message and problem in message
    # The longest allowed id is taken.
    longest = "x" * report.MAX_ID_LENGTH
    assert echoed(call(app, "/v2/models/iris/infer", v2(ROWS, id=longest))) == longest


# --- feedback ------------------------------------------------------------------------------


def test_feedback_on_both_protocols_scores_the_predictions_once(iris_trained: Trained) -> None:
    app = serving(iris_trained)
    answer = call(app, "/v2/models/iris/infer", v2(IRIS_ROWS, id="a"))
    labels = predicted(answer)
    truth = [labels[0], labels[1], (labels[2] + 1) % 3]  # the last prediction is wrong
    matched = call(app, "/v2/models/iris/feedback", {"id": "a", "truth": truth})
    assert orjson.loads(matched.body) == {"id": "a", "matched": True}

    request_id = echoed(call(app, "/v1/models/iris:predict", {"instances": IRIS_ROWS[:1]}))
    v1 = call(app, "/v1/models/iris:feedback", {"id": request_id, "truth": labels[:1]})
    assert orjson.loads(v1.body) == {"id": request_id, "matched": True}
    assert app.labels is not None
    assert app.labels.sums() == QualitySums(labels=4, correct=3)

    # An id counts once: the second time it is no longer held, like any id of another process.
    again = call(app, "/v2/models/iris/feedback", {"id": "a", "truth": truth})
    assert orjson.loads(again.body) == {"id": "a", "matched": False}
    assert app.labels.sums() == QualitySums(labels=4, correct=3)


def test_probability_only_requests_are_scored_by_their_most_likely_class(
    iris_trained: Trained,
) -> None:
    app = serving(iris_trained)
    document = v2(IRIS_ROWS, id="p", outputs=[{"name": "predict_proba"}])
    call(app, "/v2/models/iris/infer", document)
    labels = iris_trained.pipeline.predict(np.array(IRIS_ROWS)).tolist()
    call(app, "/v2/models/iris/feedback", {"id": "p", "truth": labels})
    assert app.labels is not None and app.labels.sums() == QualitySums(labels=3, correct=3)


def test_regressors_sum_absolute_and_squared_errors(petal_trained: Trained) -> None:
    app = serving(petal_trained)
    rows = [row[:3] for row in IRIS_ROWS]
    values = predicted(call(app, "/v1/models/petal:predict", {"instances": rows}, "r"))
    truth = [values[0] + 0.5, values[1] - 2.0, values[2]]
    answer = call(app, "/v1/models/petal:feedback", {"id": "r", "truth": truth})
    assert orjson.loads(answer.body)["matched"] is True
    assert app.labels is not None
    sums = app.labels.sums()
    assert (sums.labels, sums.correct) == (3, 0)
    assert sums.sum_abs_error == pytest.approx(2.5)
    assert sums.sum_squared_error == pytest.approx(4.25)

    families = {
        family.name: family
        for family in text_string_to_metric_families(app.metrics.render().decode())
    }
    (mae,) = families["modelyard_server_live_mae"].samples
    (rmse,) = families["modelyard_server_live_rmse"].samples
    assert mae.value == pytest.approx(2.5 / 3) and rmse.value == pytest.approx((4.25 / 3) ** 0.5)
    assert mae.labels["model"] == "petal" and mae.labels["worker"] == app.metrics.worker
    assert "modelyard_server_live_accuracy" not in str(families)


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"id": "b", "truth": [0, 1]}, "\"truth\" has 2 values but request 'b' had 3 rows"),
        ({"id": "b", "truth": [0, 7, 1]}, '"truth[1]": 7 is not one of the model\'s classes'),
        ({"id": "b", "truth": [0, True, 1]}, '"truth[1]": True is not one of'),
        ({"id": "b", "truth": []}, '"truth" must be a non-empty list'),
        ({"id": "b"}, '"truth" must be a non-empty list'),
        ({"truth": [0, 1, 2]}, '"id" must be a string'),
        ({"id": "b\n", "truth": [0, 1, 2]}, '"id": a request id may not hold control'),
    ],
)
def test_bad_feedback_is_refused_naming_the_field(
    iris_trained: Trained, document: dict[str, Any], named: str
) -> None:
    app = serving(iris_trained)
    call(app, "/v2/models/iris/infer", v2(IRIS_ROWS, id="b"))
    answer = call(app, "/v2/models/iris/feedback", document)
    assert answer.status == 400
    assert named in orjson.loads(answer.body)["error"]
    assert app.labels is not None and app.labels.sums().labels == 0
    # Refused feedback is not held for the operator either.
    assert collect(app).unmatched == []


def test_regression_truth_must_be_numbers(petal_trained: Trained) -> None:
    app = serving(petal_trained)
    answer = call(app, "/v2/models/petal/feedback", {"id": "z", "truth": [1.5, "2.0"]})
    assert answer.status == 400
    assert "\"truth[1]\": '2.0' is not a finite number" in orjson.loads(answer.body)["error"]


def test_a_truth_too_far_from_its_prediction_is_refused(petal_trained: Trained) -> None:
    """1e200 is a finite number, but its squared error is not: summed, it would make the
    process's report unreadable to the operator, which would then lose its drift counts too."""
    app = serving(petal_trained)
    rows = [row[:3] for row in IRIS_ROWS[:2]]
    values = predicted(call(app, "/v1/models/petal:predict", {"instances": rows}, "far"))
    answer = call(app, "/v1/models/petal:feedback", {"id": "far", "truth": [values[0], 1e200]})
    assert answer.status == 400
    assert '"truth[1]": 1e+200 is ' in orjson.loads(answer.body)["error"]
    # Refused, not counted: the prediction is still held for the genuine truth.
    answer = call(app, "/v1/models/petal:feedback", {"id": "far", "truth": values})
    assert orjson.loads(answer.body)["matched"] is True

    # Relayed by the operator, such feedback is dropped, and the report stays readable.
    call(app, "/v1/models/petal:predict", {"instances": rows}, "relayed")
    relayed = {"feedback": [{"id": "relayed", "truth": [1e200, -1e200]}]}
    answer = call(MonitorApp(app), "/monitoring/feedback", relayed)
    assert orjson.loads(answer.body) == {"matched": 0}
    sums = collect(app).quality  # report.parse refuses a non-finite sum
    assert sums.labels == 2 and sums.sum_squared_error == pytest.approx(0.0)


def test_class_labels_compare_as_the_card_lists_them() -> None:
    app = serving(mixed())  # classes "no" and "yes"
    row = {"age": 61.0, "city": "lima", "member": False}
    (label,) = predicted(call(app, "/v1/models/churn:predict", {"instances": [row]}, "m"))
    wrong = "yes" if label == "no" else "no"
    refused = call(app, "/v1/models/churn:feedback", {"id": "m", "truth": [1]})
    assert refused.status == 400 and "['no', 'yes']" in orjson.loads(refused.body)["error"]
    call(app, "/v1/models/churn:feedback", {"id": "m", "truth": [wrong]})
    assert app.labels is not None and app.labels.sums() == QualitySums(labels=1, correct=0)


def test_only_the_most_recent_predictions_are_remembered(iris_trained: Trained) -> None:
    app = serving(iris_trained, remember_rows=5)
    for request_id in ("one", "two", "three"):  # 3 rows each: "one" is forgotten for "three"
        call(app, "/v2/models/iris/infer", v2(IRIS_ROWS, id=request_id))
    assert app.labels is not None and app.labels.remembered_rows == 3
    outcomes = {
        request_id: orjson.loads(
            call(app, "/v2/models/iris/feedback", {"id": request_id, "truth": [0, 0, 0]}).body
        )["matched"]
        for request_id in ("one", "two", "three")
    }
    assert outcomes == {"one": False, "two": False, "three": True}


def test_the_live_window_keeps_the_last_labelled_rows(iris_trained: Trained) -> None:
    app = serving(iris_trained, feedback_window=4)
    labels = predicted(call(app, "/v2/models/iris/infer", v2(IRIS_ROWS, id="w1")))
    wrong = [(label + 1) % 3 for label in labels]
    call(app, "/v2/models/iris/feedback", {"id": "w1", "truth": wrong})
    call(app, "/v2/models/iris/infer", v2(IRIS_ROWS, id="w2"))
    call(app, "/v2/models/iris/feedback", {"id": "w2", "truth": labels})
    # Of the 6 labelled rows the window holds the last 4: one wrong, three right.
    assert app.labels is not None and app.labels.sums() == QualitySums(labels=4, correct=3)


def test_feedback_metrics_count_labels_by_outcome(iris_trained: Trained) -> None:
    app = serving(iris_trained)
    labels = predicted(call(app, "/v2/models/iris/infer", v2(IRIS_ROWS, id="k")))
    call(app, "/v2/models/iris/feedback", {"id": "k", "truth": labels})
    call(app, "/v2/models/iris/feedback", {"id": "elsewhere", "truth": [0, 1]})
    families = {
        family.name: family
        for family in text_string_to_metric_families(app.metrics.render().decode())
    }
    counted = {
        sample.labels["outcome"]: sample.value
        for sample in families["modelyard_server_feedback_labels"].samples
        if sample.name.endswith("_total")
    }
    assert counted == {"matched": 3.0, "unmatched": 2.0}
    (accuracy,) = families["modelyard_server_live_accuracy"].samples
    assert accuracy.value == 1.0 and accuracy.labels["model"] == "iris"


def test_no_live_metric_before_the_first_label(iris_trained: Trained) -> None:
    app = serving(iris_trained)
    families = {
        family.name: family
        for family in text_string_to_metric_families(app.metrics.render().decode())
    }
    assert families["modelyard_server_live_accuracy"].samples == []


# --- the monitoring port -------------------------------------------------------------------


def test_collect_reports_the_process_and_hands_unmatched_feedback_over_once(
    iris_trained: Trained,
) -> None:
    app = serving(iris_trained)
    labels = predicted(call(app, "/v2/models/iris/infer", v2(IRIS_ROWS, id="here")))
    call(app, "/v2/models/iris/feedback", {"id": "here", "truth": labels})
    call(app, "/v2/models/iris/feedback", {"id": "other-process", "truth": [2, 1]})

    first = collect(app)
    assert first.model == iris_trained.card.digest
    assert first.task == "classification" and first.worker == app.metrics.worker
    assert first.rows == 3
    assert [f.name for f in first.features] == [b.feature for b in iris_trained.card.baseline]
    assert all(sum(f.counts) == 3 for f in first.features)
    assert first.quality == QualitySums(labels=3, correct=3)
    assert first.unmatched == [report.Feedback("other-process", [2, 1])]
    second = collect(app)
    assert second.unmatched == [] and second.quality == first.quality


def test_relayed_feedback_counts_what_the_process_holds_and_drops_the_rest(
    iris_trained: Trained,
) -> None:
    app = serving(iris_trained)
    labels = predicted(call(app, "/v2/models/iris/infer", v2(IRIS_ROWS, id="mine")))
    monitor = MonitorApp(app)
    relayed = {
        "feedback": [
            {"id": "mine", "truth": labels},
            {"id": "not-mine", "truth": [0]},
            {"id": "mine", "truth": labels},  # counted once
        ]
    }
    answer = call(monitor, "/monitoring/feedback", relayed)
    assert orjson.loads(answer.body) == {"matched": 1}
    assert app.labels is not None and app.labels.sums() == QualitySums(labels=3, correct=3)
    assert collect(app).unmatched == []  # relayed feedback is never held again


def test_relayed_feedback_envelope_is_checked(iris_trained: Trained) -> None:
    monitor = MonitorApp(serving(iris_trained))
    for document, named in [
        ({"feedback": {}}, '{"feedback": [{"id"'),
        ({"feedback": [{"truth": [0]}]}, '"feedback[0].id" must be a string'),
        ({"feedback": [{"id": "x" * 300, "truth": [0]}]}, '"feedback[0].id": a request id'),
    ]:
        answer = call(monitor, "/monitoring/feedback", document)
        assert answer.status == 400 and named in orjson.loads(answer.body)["error"]


def test_a_monitoring_port_with_a_token_answers_only_its_bearer(iris_trained: Trained) -> None:
    """Any pod that reaches the port could otherwise drain a server's held feedback (other
    clients' ids and labels) or inject labels of its own."""
    app = serving(iris_trained)
    call(app, "/v2/models/iris/feedback", {"id": "elsewhere", "truth": [2]})  # held for relay
    secret = token.for_deployment("uid-3")
    monitor = MonitorApp(app, secret)
    bearer = token.header_value(secret)
    for authorization in (None, "", f"Bearer {token.for_deployment('uid-4')}", secret, "Bearer"):
        for path, document in [
            ("/monitoring/collect", None),
            ("/monitoring/feedback", {"feedback": [{"id": "x", "truth": [0]}]}),
            ("/anything", None),
        ]:
            answer = call(monitor, path, document, authorization=authorization)
            assert answer.status == 401, (authorization, path)
            assert b"www-authenticate: Bearer" in answer.headers
            assert "Authorization: Bearer <token>" in orjson.loads(answer.body)["error"]
    # Nothing was handed over to them: the operator, with the token, still gets the feedback.
    answer = call(monitor, "/monitoring/collect", None, authorization=bearer)
    assert answer.status == 200
    assert report.parse(orjson.loads(answer.body)).unmatched == [report.Feedback("elsewhere", [2])]
    answer = call(monitor, "/monitoring/feedback", {"feedback": []}, authorization=bearer)
    assert orjson.loads(answer.body) == {"matched": 0}


def test_the_monitor_token_comes_from_the_environment_only() -> None:
    model = ["--model-uri", "s3://models/a/model.joblib"]
    assert parse(model, env={}).monitor_token is None
    assert parse(model, env={token.ENV: ""}).monitor_token is None
    assert parse(model, env={token.ENV: "abc"}).monitor_token == "abc"


def test_each_port_serves_only_its_own_routes(iris_trained: Trained) -> None:
    app = serving(iris_trained)
    monitor = MonitorApp(app)
    for path in ("/monitoring/collect", "/monitoring/feedback"):
        assert call(app, path, {"feedback": []}).status == 404
        assert monitor.handle(b"GET", path.encode(), b"").status == 405
    for path in ("/v2/models/iris/infer", "/metrics", "/v2/health/ready"):
        assert monitor.handle(b"POST", path.encode(), b"{}").status == 404


def test_collect_answers_503_while_the_model_loads() -> None:
    monitor = MonitorApp(App(None, Metrics(), 100))
    assert call(monitor, "/monitoring/collect", None).status == 503


# --- drift counts --------------------------------------------------------------------------


def test_drift_counts_per_baseline_bin_match_a_hand_count() -> None:
    numeric = NumericBaseline(feature="n", edges=[0.0, 1.0], proportions=[0.25, 0.5, 0.25])
    categorical = CategoricalBaseline(
        feature="c", categories=["x", "y"], proportions=[0.5, 0.3, 0.2]
    )
    monitor = DriftMonitor(["n", "c"], [numeric, categorical], 6, object)
    # -1 < 0: bin 0; 0 <= 0.0, 0.5 < 1: bin 1; 1.0 and 7: bin 2 (edges[i-1] <= v < edges[i]).
    # NaN / None are left out; "z" is unseen: the "other" bin.
    rows = [[-1.0, "x"], [0.0, "x"], [0.5, "y"], [1.0, "z"], [7.0, None], [float("nan"), "x"]]
    monitor.observe(np.array([[9.0, "y"]] * 3, dtype=object))  # pushed out of the window
    monitor.observe(np.array(rows, dtype=object))
    n, c = monitor.counts()
    assert (n.name, n.counts, n.expected) == ("n", [1, 2, 2], [0.25, 0.5, 0.25])
    assert (c.name, c.counts, c.expected) == ("c", [3, 1, 1], [0.5, 0.3, 0.2])
    # /metrics scores the same counts with the operator's function.
    scores = monitor.scores()
    assert scores == {
        "n": psi([0.25, 0.5, 0.25], shares([1, 2, 2])),
        "c": psi([0.5, 0.3, 0.2], shares([3, 1, 1])),
    }


# --- settings and the pod ------------------------------------------------------------------


def test_monitor_port_setting_and_its_refusals() -> None:
    model = ["--model-uri", "s3://models/a/model.joblib"]
    assert parse(model, env={}).monitor_port == 9090
    config = parse([*model, "--workers", "3"], env={"MODELYARD_MONITOR_PORT": "9500"})
    assert [config.monitor_port_of(i) for i in range(3)] == [9500, 9501, 9502]
    with pytest.raises(UsageError, match="include the serving --port 9501"):
        parse([*model, "--workers", "3", "--port", "9501", "--monitor-port", "9500"], env={})
    with pytest.raises(UsageError, match="--monitor-port 65535: with 2 worker"):
        parse([*model, "--workers", "2", "--monitor-port", "65535"], env={})


def test_server_pods_declare_one_monitoring_port_per_worker() -> None:
    from tests.unit.test_resources import _serving_spec, _validate

    owner = Owner("ModelDeployment", "iris", "ml", "uid-3")
    model = ModelRef("s3://m/model.joblib", "sha256:" + "ab" * 32, None)
    for workers in (1, 3):
        config = dataclasses.replace(OperatorConfig(), server_workers=workers)
        deployment = build_deployment(owner, _serving_spec(), "main", model, 1, config)
        _validate(deployment)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["ports"][1:] == [
            {"name": f"monitor-{i}", "containerPort": 9090 + i, "protocol": "TCP"}
            for i in range(workers)
        ]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["MODELYARD_MONITOR_PORT"] == "9090"
        # The token the operator derives from the same uid when it asks these servers.
        assert env[token.ENV] == token.for_deployment("uid-3")
        assert env.get("MODELYARD_WORKERS") == (str(workers) if workers > 1 else None)


def test_operator_setting_for_server_workers() -> None:
    assert OperatorConfig.from_env({"MODELYARD_SERVER_WORKERS": "4"}).server_workers == 4
    with pytest.raises(ConfigError, match="MODELYARD_SERVER_WORKERS=0"):
        OperatorConfig.from_env({"MODELYARD_SERVER_WORKERS": "0"})


def test_counted_predictions_do_not_pile_up_in_memory(iris_trained: Trained) -> None:
    app = serving(iris_trained, remember_rows=6)
    for i in range(50):
        labels = predicted(call(app, "/v2/models/iris/infer", v2(IRIS_ROWS, id=f"q{i}")))
        call(app, "/v2/models/iris/feedback", {"id": f"q{i}", "truth": labels})
    assert app.labels is not None and app.labels.remembered_rows == 0
    # The eviction order holds what was counted until it reaches its end, no more than the rows.
    assert len(app.labels._order) <= 6
