"""`modelyard-worker train`: fit a TrainingJob's estimator on one Dataset version.

Loads the version's snapshot and split, fits the pipeline (after an optional search), evaluates
on the held-out split, and publishes model.joblib + model.json (payload) then manifest.json.
A run that misses `spec.objective` is still published, so it can be inspected, but exits with
EXIT_OBJECTIVE_NOT_MET and reason ObjectiveNotMet, and the operator does not promote it.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow.parquet as pq
import sklearn
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from modelyard.api.trainingjob import Metric, TrainingJobSpec, meets, search_candidates
from modelyard.config import OperatorConfig
from modelyard.reasons import Reason
from modelyard.storage import layout, manifests
from modelyard.storage.client import Storage
from modelyard.storage.digest import bytes_digest, file_digest
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common import termination
from modelyard.workloads.common.modelcard import DatasetLineage, Feature, ModelCard
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
    SCORERS,
    check_computable,
    check_metrics,
    check_test_classes,
    evaluate,
    metric_names,
)
from modelyard.workloads.training.features import table_to_matrix
from modelyard.workloads.training.pipeline import (
    ESTIMATOR_STEP,
    build_estimator,
    build_pipeline,
    engineering_card,
    task_of,
)

# The operator passes its own limit; run by hand, the operator's default applies.
DEFAULT_MAX_SEARCH_TRIALS = OperatorConfig.max_search_trials


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
    estimator = build_estimator(spec.estimator.class_, spec.estimator.params)
    task = task_of(estimator)
    requested = [Metric(m).value for m in spec.metrics or []]
    check_metrics(task, requested, "spec.metrics")
    if spec.objective:
        check_metrics(task, [spec.objective.metric], "spec.objective.metric")
    wanted = [("spec.metrics", name) for name in requested]
    if spec.objective:
        wanted.append(("spec.objective.metric", spec.objective.metric))
    check_computable(estimator, wanted)
    names = metric_names(task, [name for _, name in wanted])

    target = manifest["target"]
    features = [
        Feature(name=c["name"], type=c["type"]) for c in manifest["columns"] if c["name"] != target
    ]
    # Everything the spec can get wrong is refused here, before the data is downloaded.
    pipeline = build_pipeline(features, estimator, spec.feature_engineering, target)
    search = _search(spec, pipeline, task) if spec.search else None
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
            f"spec.estimator.class: a regressor needs a numeric target, {target!r} is text",
            EXIT_INVALID_DATA,
        )
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test_rows] = True
    x_train, y_train, x_test, y_test = x[~is_test], y[~is_test], x[is_test], y[is_test]
    if task == "classification":
        check_test_classes(y_test, wanted)

    with phase("train", "fit"):
        fitted, best_params = _fit(spec, pipeline, search, x_train, y_train)
    with phase("train", "evaluate"):
        metrics = evaluate(fitted, x_test, y_test, names)

    classes = [_label(c) for c in fitted.classes_] if task == "classification" else None
    with (
        phase("train", "save and upload"),
        tempfile.TemporaryDirectory(prefix="modelyard-model-") as work,
    ):
        model_path = Path(work) / layout.MODEL_FILE
        joblib.dump(fitted, model_path, compress=3)
        digest = file_digest(model_path)
        card = ModelCard(
            name=name,
            estimator=spec.estimator.class_,
            params=best_params,
            task=task,
            target=target,
            features=features,
            classes=classes,
            metrics=metrics,
            digest=digest,
            libraries=_library_versions(),
            baseline=feature_baselines(features, x_train),
            **engineering_card(pipeline, spec.feature_engineering),
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
        "task": task,
        "trainRows": len(y_train),
        "testRows": len(y_test),
        "startedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
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
            return termination.Completed(summary, exit_code=EXIT_OBJECTIVE_NOT_MET)
    return termination.Completed(summary)


def _fit(
    spec: TrainingJobSpec, pipeline: Pipeline, search: Any, x: Any, y: Any
) -> tuple[Pipeline, dict[str, Any]]:
    try:
        if search is None:
            pipeline.fit(x, y)
            return pipeline, dict(spec.estimator.params or {})
        search.fit(x, y)
    except InvalidParameterError as error:
        raise WorkloadError(
            Reason.InvalidParams, f"spec.estimator.params: {error}", EXIT_USAGE
        ) from None
    except ValueError as error:
        raise WorkloadError(Reason.TrainingFailed, str(error), EXIT_INVALID_DATA) from None
    prefix = f"{ESTIMATOR_STEP}__"
    best = {key.removeprefix(prefix): value for key, value in search.best_params_.items()}
    best_estimator: Pipeline = search.best_estimator_
    return best_estimator, {**(spec.estimator.params or {}), **_plain(best)}


def _search(spec: TrainingJobSpec, pipeline: Pipeline, task: str) -> Any:
    assert spec.search is not None
    grid: dict[str, list[Any]] = {}
    for key, values in spec.search.params.items():
        if not isinstance(values, list) or not values:
            raise WorkloadError(
                Reason.InvalidSearch,
                f"spec.search.params.{key}: expected a non-empty list of candidate values",
                EXIT_USAGE,
            )
        grid[f"{ESTIMATOR_STEP}__{key}"] = values
    metric = (
        spec.objective.metric
        if spec.objective
        else (Metric.ACCURACY if task == "classification" else Metric.R2)
    )
    scoring = SCORERS[Metric(metric)]
    limit = int(os.environ.get("MODELYARD_MAX_SEARCH_TRIALS") or DEFAULT_MAX_SEARCH_TRIALS)
    candidates = search_candidates(spec.search)
    if candidates > limit:
        raise WorkloadError(
            Reason.SearchTooLarge,
            f"spec.search: {candidates} candidates, more than the {limit} allowed",
            EXIT_USAGE,
        )
    if spec.search.strategy == "grid":
        return GridSearchCV(pipeline, grid, cv=spec.search.cv, scoring=scoring, n_jobs=1)
    return RandomizedSearchCV(
        pipeline,
        grid,
        n_iter=spec.search.max_trials,
        cv=spec.search.cv,
        scoring=scoring,
        random_state=0,
        n_jobs=1,
    )


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars → Python, so params serialize into JSON status."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}


def _label(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }
