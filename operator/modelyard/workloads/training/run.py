"""`modelyard-worker train`: fit a TrainingJob's estimator on one Dataset version.

Loads the version's snapshot and split, fits the pipeline (after an optional search, or chooses
among spec.candidates: selection.py), evaluates on the held-out split, writes the evaluation
report, and publishes model.joblib + model.json + report/ (payload) then manifest.json.
A run that misses `spec.objective` is still published, so it can be inspected, but exits with
EXIT_OBJECTIVE_NOT_MET and reason ObjectiveNotMet, and the operator does not promote it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow.parquet as pq
import sklearn

from modelyard.api.trainingjob import LEADERBOARD_TOP, Metric, TrainingJobSpec, meets
from modelyard.reasons import Reason
from modelyard.storage import layout, manifests
from modelyard.storage.client import Storage
from modelyard.storage.digest import bytes_digest, file_digest
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common import termination
from modelyard.workloads.common.modelcard import (
    DatasetLineage,
    Feature,
    ModelCard,
    Trial,
    estimator_library_versions,
)
from modelyard.workloads.common.spec import load_spec, parse_uri, storage_config
from modelyard.workloads.common.termination import (
    EXIT_INVALID_DATA,
    EXIT_OBJECTIVE_NOT_MET,
    EXIT_USAGE,
    WorkloadError,
)
from modelyard.workloads.common.timing import log_peak_memory, phase
from modelyard.workloads.training.baseline import feature_baselines
from modelyard.workloads.training.evaluation import (
    check_computable,
    check_metrics,
    check_test_classes,
    evaluate,
    metric_names,
)
from modelyard.workloads.training.features import table_to_matrix
from modelyard.workloads.training.pipeline import engineering_card
from modelyard.workloads.training.report import build_report
from modelyard.workloads.training.selection import Plan, Selected, cpus, plan, select

Array = np.ndarray[Any, Any]

# The report's findings a summary carries at most (EvaluationReport.findings).
FINDINGS_MAX = 16


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="modelyard-worker train")
    env = os.environ.get
    parser.add_argument("--spec", help="TrainingJobSpec file ('-': stdin); default $MODELYARD_SPEC")
    parser.add_argument(
        "--dataset-uri",
        default=env("MODELYARD_DATASET_URI"),
        help="s3:// prefix of the Dataset version to train on",
    )
    parser.add_argument(
        "--dataset-version",
        default=env("MODELYARD_DATASET_VERSION"),
        help="expected version digest; refused when the snapshot differs",
    )
    parser.add_argument("--namespace", default=env("MODELYARD_NAMESPACE", "default"))
    parser.add_argument("--name", default=env("MODELYARD_NAME"), help="TrainingJob name")
    parser.add_argument("--run", default=env("MODELYARD_RUN"), help="run id, e.g. run-1")
    parser.add_argument(
        "--output-uri",
        default=env("MODELYARD_OUTPUT_URI"),
        help="s3:// prefix the operator chose for this run's model "
        "(default: the layout's, from --namespace, --name, --uid and --run)",
    )
    parser.add_argument(
        "--uid", default=env("MODELYARD_UID", "local"), help="the TrainingJob's metadata.uid"
    )
    args = parser.parse_args(argv)

    def body() -> termination.Completed:
        spec = load_spec(TrainingJobSpec, args.spec)
        missing = [
            flag
            for flag, value in (
                ("--dataset-uri", args.dataset_uri),
                ("--name", args.name),
                ("--run", args.run),
            )
            if not value
        ]
        if missing:
            raise WorkloadError(
                Reason.InvalidArguments, f"missing {', '.join(missing)}", EXIT_USAGE
            )
        config = storage_config(None)
        storage = Storage(config)
        dataset_uri = parse_uri("--dataset-uri", args.dataset_uri)
        output = (
            parse_uri("--output-uri", args.output_uri)
            if args.output_uri
            else layout.model_prefix(config.root, args.namespace, args.name, args.uid, args.run)
        )
        return train(
            spec,
            storage,
            dataset_uri,
            args.dataset_version,
            output,
            args.namespace,
            args.name,
            args.run,
        )

    code = termination.run(body)
    log_peak_memory("train")
    return code


def train(
    spec: TrainingJobSpec,
    storage: Storage,
    dataset_uri: S3Uri,
    expected_version: str | None,
    output: S3Uri,
    namespace: str,
    name: str,
    run: str,
) -> termination.Completed:
    started = datetime.now(UTC)
    manifest = manifests.read_manifest(storage, dataset_uri)
    if manifest is None:
        raise WorkloadError(
            Reason.DatasetNotFound, f"spec.datasetRef: no published version at {dataset_uri}"
        )
    if expected_version and manifest["version"] != expected_version:
        raise WorkloadError(
            Reason.DatasetVersionMismatch,
            f"spec.datasetRef.version: {dataset_uri} holds {manifest['version']}, "
            f"expected {expected_version}",
        )
    target = manifest["target"]
    features = [
        Feature(name=c["name"], type=c["type"]) for c in manifest["columns"] if c["name"] != target
    ]
    # Everything the spec can get wrong is refused here, before the data is downloaded.
    chosen = plan(spec, features, target)
    task = chosen.task
    wanted = _check_metrics(spec, chosen)
    names = metric_names(task, [name for _, name in wanted])
    if spec.workers is None:
        fitted = _fit_in_pod(chosen, storage, dataset_uri, manifest, features, wanted, names)
    else:
        # Imported only here: a run without workers never loads Dask.
        from modelyard.workloads.training import engine

        with engine.connected(spec.workers.replicas) as client:
            if spec.workers.data_parallel:
                from modelyard.workloads.training.data_parallel import fit_data_parallel

                fitted = fit_data_parallel(
                    client,
                    chosen,
                    storage,
                    dataset_uri,
                    manifest,
                    features,
                    wanted,
                    names,
                    engine.workers_wanted(spec.workers.replicas),
                )
            else:
                backend = engine.search_backend(client, chosen)
                fitted = _fit_in_pod(
                    chosen, storage, dataset_uri, manifest, features, wanted, names, backend
                )
    selected, metrics = fitted.selected, fitted.metrics
    pipeline, best_params = selected.pipeline, selected.params
    leaderboard = [_entry(trial) for trial in selected.leaderboard if trial.score is not None]
    with phase("train", "report"):
        report = build_report(
            pipeline=pipeline,
            task=task,
            feature_names=[f.name for f in features],
            x_train=fitted.x_train,
            y_train=fitted.y_train,
            x_test=fitted.x_test,
            y_test=fitted.y_test,
            metrics=metrics,
            leaderboard=leaderboard,
            title=f"{namespace}/{name} {run}",
        )

    classes = [_label(c) for c in pipeline.classes_] if task == "classification" else None
    with (
        phase("train", "save and upload"),
        tempfile.TemporaryDirectory(prefix="modelyard-model-") as work,
    ):
        model_path = Path(work) / layout.MODEL_FILE
        joblib.dump(pipeline, model_path, compress=3)
        digest = file_digest(model_path)
        card = ModelCard(
            name=name,
            estimator=selected.estimator,
            params=best_params,
            task=task,
            target=target,
            features=features,
            classes=classes,
            metrics=metrics,
            digest=digest,
            libraries={**_library_versions(), **estimator_library_versions(selected.estimator)},
            baseline=feature_baselines(features, fitted.x_train),
            **engineering_card(pipeline, spec.feature_engineering),
            leaderboard=selected.leaderboard,
            dataset=DatasetLineage(
                namespace=manifest["dataset"]["namespace"],
                name=manifest["dataset"]["name"],
                version=manifest["version"],
                uri=str(dataset_uri),
            ),
            training_job=name,
            run=run,
            created_at=datetime.now(UTC),
        )
        card_bytes = card.model_dump_json(indent=2).encode()
        card_digest = bytes_digest(card_bytes)
        storage.ensure_bucket(output.bucket)
        storage.upload_file(model_path, output.join(layout.MODEL_FILE))
        storage.put_bytes(output.join(layout.MODEL_CARD), card_bytes, "application/json")
        for file, content in report.files.items():
            storage.put_bytes(output.join(layout.REPORT_DIR, file), content, _content_type(file))
        manifests.publish_manifest(
            storage,
            output,
            {
                "digest": digest,
                "cardDigest": card_digest,
                "modelFile": layout.MODEL_FILE,
                "card": layout.MODEL_CARD,
                "createdAt": card.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    summary: dict[str, Any] = {
        "status": "Succeeded",
        "run": run,
        "datasetVersion": manifest["version"],
        "model": {
            "uri": str(output.join(layout.MODEL_FILE)),
            "digest": digest,
            "cardDigest": card_digest,
        },
        "metrics": metrics,
        "params": best_params,
        "estimator": selected.estimator,
        "task": task,
        "trainRows": fitted.train_rows,
        "testRows": fitted.test_rows,
        "startedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if leaderboard:
        summary["leaderboard"] = leaderboard[:LEADERBOARD_TOP]
    page = report.files[layout.REPORT_FILE]
    summary["report"] = {
        "uri": str(output.join(layout.REPORT_DIR, layout.REPORT_FILE)),
        "digest": bytes_digest(page),
        "plots": sorted(file for file in report.files if file.endswith(".png")),
        "findings": report.findings[:FINDINGS_MAX],
    }
    if spec.objective:
        value = metrics.get(spec.objective.metric)
        if value is None or not meets(spec.objective.metric, value, spec.objective.minimum):
            shown = "undefined" if value is None else f"{value:g}"
            summary.update(
                status="Failed",
                reason=Reason.ObjectiveNotMet,
                message=f"{spec.objective.metric} = {shown} misses the objective "
                f"{spec.objective.minimum:g}",
            )
            return termination.Completed(within_limit(summary), exit_code=EXIT_OBJECTIVE_NOT_MET)
    return termination.Completed(within_limit(summary))


@dataclass(frozen=True)
class Fitted:
    """What a fit hands on to the report and the card: the model, its test-split metrics, and
    the rows the report looks at (the whole split in the pod; a bounded sample data-parallel)."""

    selected: Selected
    metrics: dict[str, float]
    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array
    train_rows: int
    test_rows: int


def _fit_in_pod(
    chosen: Plan,
    storage: Storage,
    dataset_uri: S3Uri,
    manifest: dict[str, Any],
    features: list[Feature],
    wanted: list[tuple[str, str]],
    names: list[str],
    backend: str | None = None,
) -> Fitted:
    """Loads the whole snapshot here; the search's fits run here, or on the engine's workers
    through `backend` (engine.search_backend)."""
    task, target = chosen.task, manifest["target"]
    with (
        phase("train", "download and load"),
        tempfile.TemporaryDirectory(prefix="modelyard-train-") as work,
    ):
        data_path = Path(work) / layout.DATA_FILE
        split_path = Path(work) / layout.SPLIT_FILE
        storage.download_file(dataset_uri.join(manifest["files"]["data"]), data_path)
        storage.download_file(dataset_uri.join(manifest["files"]["split"]), split_path)
        table = pq.read_table(data_path)
        test_rows = pq.read_table(split_path).column("test_row").to_numpy()
        x = table_to_matrix(table, features)
        y = table.column(target).to_numpy(zero_copy_only=False)
        del table  # the matrix holds the features now; the table would double the memory
    if task == "regression" and y.dtype.kind not in "iuf":
        raise WorkloadError(
            Reason.TargetNotNumeric,
            f"{chosen.candidates[0].where}.class: a regressor needs a numeric target, "
            f"{target!r} is text",
            EXIT_INVALID_DATA,
        )
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test_rows] = True
    x_train, y_train, x_test, y_test = x[~is_test], y[~is_test], x[is_test], y[is_test]
    if task == "classification":
        check_test_classes(y_test, wanted)

    with phase("train", "fit"):
        selected = select(chosen, x_train, y_train, cpus(), backend)
    with phase("train", "evaluate"):
        metrics = evaluate(selected.pipeline, x_test, y_test, names)
    return Fitted(selected, metrics, x_train, y_train, x_test, y_test, len(y_train), len(y_test))


def _check_metrics(spec: TrainingJobSpec, chosen: Plan) -> list[tuple[str, str]]:
    """The metrics the spec asks for, with the field asking, once each is known to apply to the
    task and to be computable by every candidate (roc_auc needs probabilities)."""
    requested = [Metric(m).value for m in spec.metrics or []]
    check_metrics(chosen.task, requested, "spec.metrics")
    if spec.objective:
        check_metrics(chosen.task, [spec.objective.metric], "spec.objective.metric")
    wanted = [("spec.metrics", name) for name in requested]
    if spec.objective:
        wanted.append(("spec.objective.metric", spec.objective.metric))
    for candidate in chosen.candidates:
        if spec.candidates:
            check_computable(
                candidate.estimator, [(f"{where} ({candidate.where})", n) for where, n in wanted]
            )
        else:
            check_computable(candidate.estimator, wanted)
    return wanted


def _entry(trial: Trial) -> dict[str, Any]:
    """A trial as the summary and status carry it (LeaderboardEntry)."""
    entry: dict[str, Any] = {
        "rank": trial.rank,
        "estimator": trial.estimator,
        "params": trial.params,
        "score": trial.score,
        "fitSeconds": trial.fit_seconds,
    }
    if trial.score_std is not None:
        entry["scoreStd"] = trial.score_std
    return entry


def within_limit(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary within the termination message's limit, shortened where it matters least:
    the leaderboard's tail (the card holds every trial), then the findings' (report.html holds
    them all). termination.encode would drop a whole field instead."""

    def fits(candidate: dict[str, Any]) -> bool:
        return bool(json.loads(termination.encode(candidate)) == candidate)

    trimmed = dict(summary)
    report = dict(trimmed["report"])
    trimmed["report"] = report
    while not fits(trimmed) and len(trimmed.get("leaderboard") or []) > 1:
        trimmed["leaderboard"] = trimmed["leaderboard"][:-1]
    while not fits(trimmed) and report["findings"]:
        report["findings"] = report["findings"][:-1]
    return trimmed


def _content_type(file: str) -> str:
    return "text/html; charset=utf-8" if file.endswith(".html") else "image/png"


def _label(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }
