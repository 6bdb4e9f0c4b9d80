"""The `modelyard` command as a user runs it: version, CRDs, manifest validation, and the cluster
commands' arguments, input files, output and verdicts (tests/integration/test_cli.py runs them
against an API server)."""

import io
import json
import re
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard import __version__
from modelyard.cli import build_parser, inference, lineage, main, predict
from modelyard.cli.errors import UsageError
from modelyard.cli.kubeclient import Kube, Options
from modelyard.cli.output import Cell, Painter, age, colour_wanted, table
from modelyard.cli.refs import parse_ref
from modelyard.cli.wait import Verdict, duration, judge, promotion_lag
from modelyard.controllers.conditions import stalled
from modelyard.exitcodes import EXIT_FAILED, EXIT_USAGE
from tests.conftest import EXAMPLES, REPO


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"modelyard {__version__}"


def test_crds_prints_what_is_checked_in(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    checked_in = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    key = lambda crd: crd["metadata"]["name"]  # noqa: E731
    assert sorted(printed, key=key) == sorted(checked_in, key=key)


def test_crds_output_dir_writes_one_file_per_kind(tmp_path: Path) -> None:
    assert main(["crds", "--output-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "modelyard.dev_datasets.yaml",
        "modelyard.dev_modeldeployments.yaml",
        "modelyard.dev_trainingjobs.yaml",
    ]


def test_validate_accepts_the_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted((EXAMPLES / "quickstart").glob("*.yaml"))]
    assert main(["validate", *files]) == 0
    assert "TrainingJob/iris-classifier valid" in capsys.readouterr().out


def test_validate_names_the_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: modelyard.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\n"
        "spec:\n  model: {trainingJobRef: {name: t}}\n  canary:\n"
        "    model: {trainingJobRef: {name: t2}}\n    trafficPercent: 101\n"
    )
    assert main(["validate", str(bad)]) == 1
    assert "spec.canary.trafficPercent: Input should be less than or equal to 100" in (
        capsys.readouterr().err
    )


# --- the cluster commands: arguments, files and answers, without a cluster -----------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("mdep/iris", "ModelDeployment"),
        ("modeldeployment/iris", "ModelDeployment"),
        ("ModelDeployment/iris", "ModelDeployment"),
        ("modeldeployments.modelyard.dev/iris", "ModelDeployment"),
        ("modeldeployments.v1alpha1.modelyard.dev/iris", "ModelDeployment"),
        ("tj/iris", "TrainingJob"),
        ("trainingjobs/iris", "TrainingJob"),
        ("dset/iris", "Dataset"),
        ("dataset.modelyard.dev/iris", "Dataset"),
    ],
)
def test_resources_are_named_as_kubectl_names_them(text: str, kind: str) -> None:
    ref = parse_ref(text)
    assert (ref.info.kind, ref.name) == (kind, "iris")
    assert str(ref) == f"{kind.lower()}/iris"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["status", "pods/x"],
            "error: unknown resource type 'pods': expected one of dataset (dset), "
            "trainingjob (tj), modeldeployment (mdep)\n",
        ),
        (["lineage", "iris"], "error: expected KIND/NAME such as mdep/iris, got 'iris'\n"),
        (
            ["lineage", "tj/iris"],
            "error: tj/iris: this command takes a modeldeployment, not a trainingjob\n",
        ),
        (
            ["logs", "mdep/iris"],
            "error: mdep/iris: this command takes a trainingjob or dataset, "
            "not a modeldeployment\n",
        ),
        (
            ["logs", "dset/iris", "--run", "2"],
            "error: --run selects a TrainingJob's run; a Dataset has ingestions\n",
        ),
        (
            ["predict", "mdep/iris", "--data", "/no/such/rows.csv"],
            "error: /no/such/rows.csv: cannot read: No such file or directory\n",
        ),
        (
            ["status", "--kubeconfig", "/no/such/config"],
            "error: --kubeconfig /no/such/config: no such file\n",
        ),
    ],
)
def test_a_usage_mistake_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", message)


def test_a_kubeconfig_without_clusters_says_where_to_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "config"
    empty.write_text("")
    monkeypatch.setenv("KUBECONFIG", str(empty))
    assert main(["status"]) == EXIT_FAILED
    error = capsys.readouterr().err
    assert error.startswith(f"error: no cluster to talk to: {empty}:")
    assert error.count("\n") == 1


def test_the_namespace_defaults_to_the_current_contexts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "ml", "context": {"cluster": "c", "user": "u", "namespace": "ml"}},
                    {"name": "plain", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "ml",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert Kube.connect(Options()).namespace == "ml"
    assert Kube.connect(Options(context="plain")).namespace == "default"
    assert Kube.connect(Options(namespace="other")).namespace == "other"
    assert Kube.connect(Options()).host == "https://127.0.0.1:6443"


def test_kubectl_runs_the_same_command_as_a_plugin() -> None:
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["kubectl-modelyard"] == "modelyard.cli:kubectl_plugin"
    assert scripts["modelyard"] == "modelyard.cli:main"
    assert build_parser("kubectl modelyard").format_usage().startswith("usage: kubectl modelyard")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("2.5s", 2.5)]
)
def test_timeouts_read_as_kubectl_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


def test_a_bad_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["wait", "mdep/iris", "--timeout", "soon"])
    assert exit_.value.code == EXIT_USAGE
    assert "'soon' is not a duration such as 90s, 10m or 1h" in capsys.readouterr().err


# --- predict: rows in, one V2 request out ---------------------------------------------------

IRIS_INPUTS = [
    {"name": name, "datatype": "FP64", "shape": [-1]}
    for name in ("sepal_length", "sepal_width", "petal_length", "petal_width")
]


def test_csv_columns_become_typed_feature_inputs_without_the_label() -> None:
    rows = inference.parse(
        "rows.csv",
        "sepal_length,sepal_width,petal_length,petal_width,species\n"
        "5.1,3.5,1.4,0.2,0\n6.7,3.0,,2.3,2\n",
    )
    request = inference.build_request(rows, IRIS_INPUTS, target="species", probabilities=False)
    assert request == {
        "inputs": [
            {"name": "sepal_length", "shape": [2], "datatype": "FP64", "data": [5.1, 6.7]},
            {"name": "sepal_width", "shape": [2], "datatype": "FP64", "data": [3.5, 3.0]},
            {"name": "petal_length", "shape": [2], "datatype": "FP64", "data": [1.4, None]},
            {"name": "petal_width", "shape": [2], "datatype": "FP64", "data": [0.2, 2.3]},
        ]
    }


def test_csv_text_follows_each_features_datatype() -> None:
    inputs = [
        {"name": "age", "datatype": "FP64"},
        {"name": "city", "datatype": "BYTES"},
        {"name": "member", "datatype": "BOOL"},
    ]
    rows = inference.parse("rows.csv", "age,city,member\n61,lima,true\n30,0815,False\n")
    request = inference.build_request(rows, inputs, target=None, probabilities=True)
    assert [tensor["data"] for tensor in request["inputs"]] == [
        [61.0, 30.0],
        ["lima", "0815"],
        [True, False],
    ]
    assert request["parameters"] == {"probabilities": True}


def test_json_lists_are_one_matrix_in_feature_order() -> None:
    for document in ([[5.1, 3.5, 1.4, 0.2]], {"instances": [[5.1, 3.5, 1.4, 0.2]]}):
        rows = inference.parse("rows.json", json.dumps(document))
        assert inference.build_request(rows, IRIS_INPUTS, None, False) == {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "data": [[5.1, 3.5, 1.4, 0.2]],
                }
            ]
        }


def test_json_objects_are_one_input_per_key_and_a_missing_key_is_a_missing_value() -> None:
    rows = inference.parse("rows.json", '[{"a": 1, "b": "x"}, {"a": 2}]')
    request = inference.build_request(
        rows, [{"name": "a", "datatype": "FP64"}, {"name": "b", "datatype": "BYTES"}], None, False
    )
    assert request["inputs"] == [
        {"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]},
        {"name": "b", "shape": [2], "datatype": "BYTES", "data": ["x", None]},
    ]


def test_a_v2_request_is_sent_as_it_is() -> None:
    v2 = {"id": "r1", "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1]}]}
    rows = inference.parse("-", json.dumps(v2))
    assert inference.build_request(rows, IRIS_INPUTS, None, False) == v2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "rows.csv: empty: expected CSV with a header row, or JSON rows"),
        ("a,b\n", "rows.csv: expected a header row of feature names and at least one row"),
        ("a,b\n1,2\n3\n", "rows.csv: line 3 has 1 values but the header has 2"),
        ("[1, 2", "rows.csv: not valid JSON: Expecting ',' delimiter: line 1 column 6 (char 5)"),
        ("[[1], {}]", "rows.csv: rows must be all objects or all lists, not a mix"),
        ("{}", "rows.csv: expected a non-empty list of rows"),
    ],
)
def test_a_bad_file_names_the_problem(content: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        inference.parse("rows.csv", content)
    assert error.value.message.startswith(message)


def test_a_csv_value_that_is_not_a_number_names_its_column() -> None:
    rows = inference.parse("rows.csv", "sepal_length\nwide\n")
    with pytest.raises(UsageError, match="sepal_length: 'wide' is not a number"):
        inference.build_request(rows, IRIS_INPUTS, None, False)


def test_the_answer_gives_one_prediction_and_probability_row_per_input_row() -> None:
    answer = {
        "model_name": "iris",
        "model_version": "4b07854fd1f1",
        "outputs": [
            {"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 2]},
            {
                "name": "predict_proba",
                "shape": [2, 3],
                "datatype": "FP64",
                "data": [0.9, 0.1, 0.0, 0.0, 0.2, 0.8],
                "parameters": {"classes": [0, 1, 2]},
            },
        ],
    }
    result = inference.read_answer(answer)
    assert result.to_dict() == {
        "model": "iris",
        "version": "4b07854fd1f1",
        "predictions": [0, 2],
        "probabilities": [[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]],
        "classes": [0, 1, 2],
    }
    assert predict.render(result, Painter(False)).splitlines() == [
        "ROW   PREDICTION   P(0)    P(1)    P(2)",
        "1     0            0.900   0.100   0.000",
        "2     2            0.000   0.200   0.800",
    ]


# --- output ----------------------------------------------------------------------------------


def test_colour_does_not_shift_the_columns() -> None:
    rows = [["dataset/iris", Cell("Ready", "green")], ["trainingjob/t", Cell("Failed", "red")]]
    plain = table(["RESOURCE", "PHASE"], rows, Painter(False))
    coloured = table(["RESOURCE", "PHASE"], rows, Painter(True))
    assert re.sub(r"\033\[[0-9;]*m", "", coloured) == plain
    assert "\033[32mReady\033[0m" in coloured


def test_colour_only_at_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert colour_wanted(Terminal())
    assert not colour_wanted(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_wanted(Terminal())


@pytest.mark.parametrize(
    ("seconds", "shown"), [(5, "5s"), (119, "119s"), (600, "10m"), (7200, "2h"), (3 * 86400, "3d")]
)
def test_ages_are_as_short_as_kubectls(seconds: int, shown: str) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert age((now - timedelta(seconds=seconds)).isoformat(), now) == shown


# --- wait: one link's verdict ----------------------------------------------------------------


def _object(kind: str, status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "x", "generation": generation}, "status": status}


def _stalled_status(reason: str, message: str) -> dict[str, Any]:
    """What the operator writes when it stops on a problem (controllers/conditions.stalled)."""
    conditions = stalled(None, reason, message, 1)
    return {"phase": "Failed", "conditions": conditions}


def _ready(status: str, reason: str, message: str = "", generation: int = 1) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


@pytest.mark.parametrize(
    ("obj", "upstream_ready", "verdict"),
    [
        (None, True, Verdict("waiting", "NotFound", "does not exist yet")),
        (_object("Dataset", None), True, Verdict("waiting", "Pending")),
        (
            _object(
                "Dataset", {"phase": "Ingesting", "conditions": [_ready("False", "Ingesting")]}
            ),
            True,
            Verdict("waiting", "Ingesting"),
        ),
        (
            _object(
                "TrainingJob",
                {
                    "phase": "Failed",
                    "conditions": [_ready("False", "ObjectiveNotMet", "run-1: low")],
                },
            ),
            False,
            Verdict("failed", "ObjectiveNotMet", "run-1: low"),
        ),
        (
            _object(
                "ModelDeployment",
                {"phase": "Ready", "conditions": [_ready("True", "Serving")]},
                generation=2,
            ),
            True,
            Verdict("waiting", "Stale", "the operator has not acted on generation 2"),
        ),
        (
            _object("ModelDeployment", _stalled_status("PromotionBlocked", "gate")),
            False,
            Verdict("waiting", "PromotionBlocked", "gate"),
        ),
        (
            _object("ModelDeployment", _stalled_status("PromotionBlocked", "gate")),
            True,
            Verdict("failed", "PromotionBlocked", "gate"),
        ),
        (
            _object(
                "Dataset",
                {
                    "phase": "Ingesting",
                    "conditions": [
                        _ready("False", "CreateContainerConfigError", 'secret "s3" not found'),
                        {
                            "type": "Stalled",
                            "status": "True",
                            "reason": "CreateContainerConfigError",
                            "message": 'secret "s3" not found',
                        },
                    ],
                },
            ),
            True,
            Verdict("failed", "CreateContainerConfigError", 'secret "s3" not found'),
        ),
        (
            _object(
                "ModelDeployment",
                {
                    "phase": "Ready",
                    "url": "http://m",
                    "conditions": [
                        _ready("True", "Serving"),
                        {"type": "Promoted", "status": "False", "reason": "PromotionBlocked"},
                    ],
                },
            ),
            True,
            Verdict("failed", "PromotionBlocked", ""),
        ),
        (
            _object(
                "ModelDeployment",
                {"phase": "Ready", "url": "http://m", "conditions": [_ready("True", "Serving")]},
            ),
            True,
            Verdict("ready", "Serving", "http://m"),
        ),
    ],
)
def test_a_links_verdict_comes_from_its_status(
    obj: dict[str, Any] | None, upstream_ready: bool, verdict: Verdict
) -> None:
    assert judge(obj, upstream_ready) == verdict


def _training_job(*runs: tuple[str, str]) -> dict[str, Any]:
    return {
        "kind": "TrainingJob",
        "status": {"runs": [{"id": i, "phase": p, "model": {"uri": "s3://m"}} for i, p in runs]},
    }


def _deployment(served: str, ref: dict[str, str], promoted: str = "True") -> dict[str, Any]:
    return {
        "kind": "ModelDeployment",
        "spec": {"model": {"trainingJobRef": ref}},
        "status": {
            "model": {"run": served},
            "conditions": [{"type": "Promoted", "status": promoted, "reason": "x"}],
        },
    }


@pytest.mark.parametrize(
    ("deployment", "training_job", "lagging"),
    [
        # A newer run succeeded and the deployment has not picked it up yet: not done.
        (
            _deployment("run-1", {"name": "tj"}),
            _training_job(("run-1", "Succeeded"), ("run-2", "Succeeded")),
            True,
        ),
        (
            _deployment("run-2", {"name": "tj"}),
            _training_job(("run-1", "Succeeded"), ("run-2", "Succeeded")),
            False,
        ),
        # A run still training, or failed, is not what the deployment should serve.
        (
            _deployment("run-1", {"name": "tj"}),
            _training_job(("run-1", "Succeeded"), ("run-2", "Failed")),
            False,
        ),
        # The gate refused the newer run: a verdict (PromotionBlocked), not a lag.
        (
            _deployment("run-1", {"name": "tj"}, "False"),
            _training_job(("run-1", "Succeeded"), ("run-2", "Succeeded")),
            False,
        ),
        # Pinned to a run: that run is what it should serve.
        (
            _deployment("run-1", {"name": "tj", "run": "run-1"}),
            _training_job(("run-1", "Succeeded"), ("run-2", "Succeeded")),
            False,
        ),
        (
            _deployment("run-1", {"name": "tj", "run": "run-2"}),
            _training_job(("run-1", "Succeeded"), ("run-2", "Succeeded")),
            True,
        ),
    ],
)
def test_wait_is_not_done_while_the_deployment_serves_an_older_run(
    deployment: dict[str, Any], training_job: dict[str, Any], lagging: bool
) -> None:
    assert bool(promotion_lag(deployment, training_job)) is lagging


def test_lineage_of_a_model_given_by_uri_starts_at_the_model() -> None:
    document = {
        "dataset": None,
        "trainingRun": None,
        "model": {"uri": "s3://b/m/model.joblib", "digest": "sha256:ab", "libraries": "unknown"},
        "deployment": {
            "name": "m",
            "phase": "Ready",
            "reason": "Serving",
            "url": "http://m.ns.svc.cluster.local",
            "replicas": 1,
            "readyReplicas": 1,
            "canary": None,
        },
    }
    assert lineage.render(document, Painter(False)).splitlines() == [
        "model  s3://b/m/model.joblib",
        "│   digest     sha256:ab",
        "│   libraries  (unknown)",
        "└── modeldeployment/m  Ready (Serving)",
        "        url       http://m.ns.svc.cluster.local",
        "        replicas  1/1 ready",
        "        canary    none",
    ]
