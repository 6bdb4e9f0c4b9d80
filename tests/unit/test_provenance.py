"""A Job under the operator's name counts only when the operator could have made it: its owner's
UID and the pod template the operator builds."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelyard.api.dataset import DatasetSpec
from modelyard.config import OperatorConfig
from modelyard.controllers.provenance import foreign_job, same_workload
from modelyard.resources.jobs import Owner, build_ingest_job

OWNER = Owner("Dataset", "iris", "ml", "uid-1")


def _job() -> dict[str, Any]:
    spec = DatasetSpec.model_validate({"source": {"builtin": {"name": "iris"}}})
    return build_ingest_job(OWNER, spec, "iris-ingest-x", "s3://b/namespaces/ml/", OperatorConfig())


def _as_stored(job: dict[str, Any]) -> dict[str, Any]:
    """The Job as the API server returns it: a UID, and defaults the operator did not set."""
    stored = copy.deepcopy(job)
    stored["metadata"]["uid"] = "job-uid"
    container = stored["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    container["resources"]["requests"]["cpu"] = "0.1"  # rewritten quantities do not matter
    stored["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    return stored


def test_the_operators_own_job_is_recognised() -> None:
    assert foreign_job(_as_stored(_job()), "uid-1", _job()) is None


def _with_image(job: dict[str, Any]) -> None:
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "evil/forger:1"


def _with_env(job: dict[str, Any]) -> None:
    job["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})


def _with_sidecar(job: dict[str, Any]) -> None:
    containers = job["spec"]["template"]["spec"]["containers"]
    containers.append({**containers[0], "name": "sidecar"})


def _with_init_container(job: dict[str, Any]) -> None:
    job["spec"]["template"]["spec"]["initContainers"] = [{"name": "x", "image": "busybox"}]


def _with_host_path(job: dict[str, Any]) -> None:
    job["spec"]["template"]["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}})


@pytest.mark.parametrize(
    "tamper", [_with_image, _with_env, _with_sidecar, _with_init_container, _with_host_path]
)
def test_a_job_with_another_template_under_our_name_is_foreign(tamper: Any) -> None:
    stored = _as_stored(_job())
    tamper(stored)
    reason = foreign_job(stored, "uid-1", _job())
    assert reason is not None and "pod template" in reason


def test_a_job_owned_by_another_object_is_foreign() -> None:
    stored = _as_stored(_job())
    stored["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-deleted-dataset"
    reason = foreign_job(stored, "uid-1", _job())
    assert reason is not None and "belongs to another object" in reason


def test_a_pod_runs_its_jobs_workload_only_with_the_same_containers() -> None:
    template = _job()["spec"]["template"]["spec"]
    pod = copy.deepcopy(template)
    pod["nodeName"] = "node-1"
    assert same_workload(pod, template)
    pod["containers"][0]["command"] = ["sh", "-c", "echo forged > /dev/termination-log"]
    assert not same_workload(pod, template)
