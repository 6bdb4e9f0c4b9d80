"""Which Datasets and TrainingJobs need the finalizer: kopf adds it, and keeps it, only while its
deletion handler's `when` holds, from kopf's indexes as they reach the filter."""

from __future__ import annotations

from modelyard.controllers import protection
from modelyard.controllers.indexes import MODELDEPLOYMENTS_BY_TRAININGJOB, TRAININGJOBS_BY_DATASET

INDEXES = {
    TRAININGJOBS_BY_DATASET: {("ns", "iris"): ["iris-classifier", "iris-2"], ("ns", "other"): []},
    MODELDEPLOYMENTS_BY_TRAININGJOB: {("ns", "iris-classifier"): ["iris"]},
}


def test_a_trainingjob_a_modeldeployment_serves_from_needs_it() -> None:
    assert protection._training_job_in_use("ns", "iris-classifier", **INDEXES)
    assert not protection._training_job_in_use("ns", "iris-2", **INDEXES)
    assert not protection._training_job_in_use("elsewhere", "iris-classifier", **INDEXES)


def test_a_dataset_needs_it_through_a_trainingjob_in_use() -> None:
    assert protection._dataset_in_use("ns", "iris", **INDEXES)
    assert not protection._dataset_in_use("ns", "other", **INDEXES)
    assert not protection._dataset_in_use("ns", "unknown", **INDEXES)


def test_the_deletion_handlers_filter_on_it() -> None:
    """Without the filter kopf would put the finalizer on every object again."""
    from kopf._core.intents.registries import get_default_registry

    filters = {
        handler.fn.__name__: handler.when
        for handler in get_default_registry()._changing._handlers
        if handler.fn.__module__ == protection.__name__ and handler.requires_finalizer
    }
    assert filters == {
        "trainingjob_deleting": protection._training_job_in_use,
        "dataset_deleting": protection._dataset_in_use,
    }
