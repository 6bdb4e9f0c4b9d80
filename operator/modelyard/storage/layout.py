"""The one place that knows where artifacts live in the bucket, and how versions are published.

    <root>/namespaces/<namespace>/                  the namespace's own prefix
        datasets/<name>/<version-hex>/data.parquet  normalized snapshot
                                     /split.parquet test-row indices
                                     /manifest.json written last
        models/<trainingjob>/<uid>/<run>/model.joblib
                                        /model.json    the model card
                                        /report/report.html (+ *.png plots)
                                        /manifest.json written last

Every namespace writes under its own prefix, so a storage policy can scope each namespace's
credentials to it, and the operator can refuse URIs outside it. Model keys carry the
TrainingJob's UID: a TrainingJob deleted and created again under the same name never writes
over the models of the first one, which deployments may still pin by digest. Dataset versions
need no UID: a version is its content's digest, and an existing version is never rewritten.

A version is published by writing its payload first and its manifest last (storage/manifests.py);
a reader that finds no manifest treats the version as absent, so nobody ever sees a half-written
version. This module only computes keys: the operator uses it without an S3 client.
"""

from __future__ import annotations

from modelyard.storage.digest import PREFIX
from modelyard.storage.uri import S3Uri

NAMESPACES = "namespaces"
MANIFEST = "manifest.json"
DATA_FILE = "data.parquet"
SPLIT_FILE = "split.parquet"
MODEL_FILE = "model.joblib"
MODEL_CARD = "model.json"
# A run's evaluation report: report.html and its PNG plots, under the run's model prefix.
REPORT_DIR = "report"
REPORT_FILE = "report.html"
# report.html pins each plot: <meta name="modelyard-plot" content="roc.png sha256:…">, so a
# reader that checked the page against the run's recorded digest can check the plots too.
REPORT_PLOT_PIN = "modelyard-plot"


def namespace_root(root: S3Uri, namespace: str) -> S3Uri:
    """The prefix everything of `namespace` lives under, ending in a slash."""
    prefix = root.join(NAMESPACES, namespace)
    return S3Uri(prefix.bucket, prefix.key + "/")


def datasets_prefix(root: S3Uri, namespace: str, name: str) -> S3Uri:
    """Where a Dataset's versions go; each version is a directory named by its digest."""
    prefix = namespace_root(root, namespace).join("datasets", name)
    return S3Uri(prefix.bucket, prefix.key + "/")


def dataset_version_prefix(datasets: S3Uri, version: str) -> S3Uri:
    return datasets.join(version.removeprefix(PREFIX))


def model_prefix(root: S3Uri, namespace: str, training_job: str, uid: str, run: str) -> S3Uri:
    prefix = namespace_root(root, namespace).join("models", training_job, uid, run)
    return S3Uri(prefix.bucket, prefix.key + "/")


def is_within(uri: S3Uri, prefix: S3Uri) -> bool:
    """Whether `uri` is `prefix` or below it; a prefix without a trailing slash is a directory
    (s3://b/data covers s3://b/data/x, not s3://b/database)."""
    if uri.bucket != prefix.bucket:
        return False
    directory = prefix.key if not prefix.key or prefix.key.endswith("/") else prefix.key + "/"
    return uri.key.startswith(directory) or uri.key == prefix.key
