"""A semantic error only reconcile can see (the referenced Dataset does not exist) ends in a
stable condition: the same reason and transition time after the operator is killed and back."""

from __future__ import annotations

import pytest

from tests.chaos.conftest import OperatorFactory
from tests.chaos.objects import Objects, ready, training_job
from tests.kubelet import wait_for
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.chaos


def test_missing_dataset_is_a_stable_reason_across_a_kill(
    crds: Cluster, namespace: str, operator_process: OperatorFactory
) -> None:
    objects = Objects(crds.api_client(), namespace)
    operator = operator_process()
    operator.start()
    objects.create(training_job("orphan", "absent"))
    before = wait_for(
        "Ready=False DatasetNotFound",
        lambda: (lambda c: c if c and c["reason"] == "DatasetNotFound" else None)(
            ready(objects.get("TrainingJob", "orphan") or {})
        ),
    )
    operator.kill()
    restarted_at = len(operator.logs())
    operator.start()
    wait_for(
        "the restarted operator's reconcile",
        lambda: (
            "/orphan] Handler 'trainingjob_changed' succeeded" in operator.logs()[restarted_at:]
        ),
    )
    body = objects.get("TrainingJob", "orphan") or {}
    assert ready(body) == before, "same reason, message and transition time"
    assert body["status"]["phase"] == "Pending"
    assert "Dataset absent does not exist" in before["message"]
    assert not objects.jobs()
