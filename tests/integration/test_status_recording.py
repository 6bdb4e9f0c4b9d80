"""The status recorder the Argo CD health tests rely on (tests/plugins/status_recording.py),
against a real API server: every distinct state in order, only of objects created while it
records and handled by an operator (its finalizer or kopf's bookkeeping on them)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from modelyard.controllers.bookkeeping import BOOKKEEPING, FINALIZER
from modelyard.controllers.conditions import progressing
from tests.plugins.kube import Cluster
from tests.plugins.status_recording import Recorded, Step, recording

pytestmark = pytest.mark.integration

GROUP, VERSION = "modelyard.dev", "v1alpha1"


def _dataset(
    name: str, finalizers: list[str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Dataset",
        "metadata": {"name": name, "finalizers": finalizers, "annotations": annotations or {}},
        "spec": {"source": {"builtin": {"name": "iris"}}},
    }


def _recorded(recorder: Any, name: str, steps: int) -> Recorded:
    deadline = time.monotonic() + 30
    while True:
        found = [o for o in recorder.objects() if o.name == name]
        if found and len(found[0].steps) >= steps:
            recorded: Recorded = found[0]
            return recorded
        assert time.monotonic() < deadline, f"{name}: {found}"
        time.sleep(0.2)


def test_records_each_distinct_state_of_handled_objects_in_order(
    crds: Cluster, namespace: str
) -> None:
    with crds.api_client() as api:
        custom = client.CustomObjectsApi(api)
        dataset = (GROUP, VERSION, namespace, "datasets")
        custom.create_namespaced_custom_object(*dataset, _dataset("before", [FINALIZER]))
        with recording(crds) as recorder:
            custom.create_namespaced_custom_object(*dataset, _dataset("iris", [FINALIZER]))
            custom.create_namespaced_custom_object(*dataset, _dataset("unhandled", []))
            # kopf's bookkeeping annotations on an object it handled without a finalizer.
            bookkeeping = {f"{BOOKKEEPING}/last-handled-configuration": "{}"}
            custom.create_namespaced_custom_object(*dataset, _dataset("annotated", [], bookkeeping))
            # As the operator writes it: the session's own recorder takes it in too, and the
            # checks on recordings hold it to the operator's rules.
            working = {
                "observedGeneration": 1,
                "phase": "Ingesting",
                "conditions": progressing(None, "Ingesting", "ingest Job x is running", 1),
            }
            custom.patch_namespaced_custom_object_status(*dataset, "iris", {"status": working})
            # Only metadata changes: the state the checks read stays the same.
            custom.patch_namespaced_custom_object(
                *dataset, "iris", {"metadata": {"annotations": {"a": "b"}}}
            )
            custom.patch_namespaced_custom_object(
                *dataset, "iris", {"spec": {"split": {"testFraction": 0.3}}}
            )
            custom.patch_namespaced_custom_object_status(*dataset, "unhandled", {"status": working})
            custom.patch_namespaced_custom_object_status(*dataset, "before", {"status": working})
            custom.delete_namespaced_custom_object(*dataset, "iris")
            recorded = _recorded(recorder, "iris", 4)
            time.sleep(1)  # anything else would have arrived by now
            names = {o.name for o in recorder.objects()}
        for name in ("iris", "before"):
            custom.patch_namespaced_custom_object(
                *dataset, name, {"metadata": {"finalizers": None}}
            )
    assert names == {"iris", "annotated"}
    assert (recorded.kind, recorded.namespace) == ("Dataset", namespace)
    assert recorded.steps == [
        Step(1, None),
        Step(1, working),
        Step(2, working),
        # The API server counts the deletion as a change of generation.
        Step(3, working, deleting=True),
    ]
