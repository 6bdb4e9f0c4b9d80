"""Status writes that cannot lose an update, against the real API server: a handler holding an
older copy of a Dataset (a Job's late event) fails instead of overwriting a newer ingestion."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from modelyard.config import OperatorConfig
from modelyard.controllers import dataset
from modelyard.controllers.context import Context
from modelyard.controllers.fresh import on_fresh
from modelyard.controllers.kube import Conflict, Kube
from tests.chaos.objects import Objects
from tests.chaos.objects import dataset as dataset_manifest
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.integration


def _job(name: str, uid: str, owner_uid: str, namespace: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": uid,
            "namespace": namespace,
            "labels": {"modelyard.dev/dataset": "iris"},
            "ownerReferences": [{"kind": "Dataset", "uid": owner_uid, "controller": True}],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "ingest", "env": []}]}}},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "JobFailed"}]},
    }


def test_a_late_result_cannot_overwrite_a_newer_ingestion(crds: Cluster, namespace: str) -> None:
    with crds.api_client() as api:
        objects = Objects(api, namespace)
        objects.create(dataset_manifest("iris"))
        custom = client.CustomObjectsApi(api)
        kind = ("modelyard.dev", "v1alpha1", namespace, "datasets", "iris")
        custom.patch_namespaced_custom_object_status(
            *kind, {"status": {"phase": "Ingesting", "ingestJob": "job-1", "ingestJobUid": "u1"}}
        )
        stale = objects.get("Dataset", "iris")
        assert stale is not None
        # Meanwhile a refresh started a newer ingestion.
        custom.patch_namespaced_custom_object_status(
            *kind, {"status": {"phase": "Ingesting", "ingestJob": "job-2", "ingestJobUid": "u2"}}
        )
        context = Context(Kube(crds.credentials, 1), OperatorConfig())
        job_1 = _job("job-1", "u1", stale["metadata"]["uid"], namespace)
        with pytest.raises(Conflict):
            dataset._record_job(context, stale, job_1, succeeded=False)
        # Read again, the late Job is seen for what it is: superseded, nothing to record.
        recorded = on_fresh(
            context,
            "Dataset",
            namespace,
            "iris",
            lambda body: dataset._record_job(context, body, job_1, succeeded=False),
        )
        assert recorded is False
        status = (objects.get("Dataset", "iris") or {})["status"]
        assert (status["phase"], status["ingestJob"]) == ("Ingesting", "job-2")
