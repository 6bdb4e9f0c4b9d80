"""The controllers' Kubernetes client (controllers/kube.py) against the real API server: what each
call does when the object exists, is missing, changed meanwhile, or may not be touched, and how it
logs in again when its token is refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kubernetes import client

from modelyard.api import API_VERSION
from modelyard.controllers.kube import ApiError, Conflict, Forbidden, Kube, NotFound, UnknownKind
from tests.chaos.objects import dataset
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.integration


def _config_map(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "a"}},
        "data": data,
    }


@pytest.fixture
def ours(crds: Cluster) -> Kube:
    return Kube(crds.credentials, 2)


@pytest.fixture
def core(crds: Cluster) -> Iterator[client.CoreV1Api]:
    with crds.api_client() as api:
        yield client.CoreV1Api(api)


def test_create_makes_one_object_however_often_it_is_called(ours: Kube, namespace: str) -> None:
    first, created = ours.create(_config_map(namespace, "settings", {"a": "1"}))
    again, created_again = ours.create(_config_map(namespace, "settings", {"a": "2"}))
    assert (created, created_again) == (True, False)
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert again["data"] == {"a": "1"}  # the existing one, not replaced
    assert ours.create_only(_config_map(namespace, "settings", {"a": "3"})) is False
    assert ours.create_only(_config_map(namespace, "other", {"a": "3"})) is True


def test_apply_keeps_the_fields_another_manager_set(
    ours: Kube, core: client.CoreV1Api, namespace: str
) -> None:
    ours.apply(_config_map(namespace, "settings", {"a": "1"}))
    core.patch_namespaced_config_map("settings", namespace, {"data": {"b": "theirs"}})
    applied = ours.apply(_config_map(namespace, "settings", {"a": "2"}))
    assert applied["data"] == {"a": "2", "b": "theirs"}
    managers = {entry["manager"] for entry in applied["metadata"]["managedFields"]}
    assert "modelyard" in managers


def test_missing_objects_read_as_none_and_delete_as_done(ours: Kube, namespace: str) -> None:
    assert ours.get("v1", "ConfigMap", namespace, "absent") is None
    assert ours.custom("Dataset", namespace, "absent") is None
    ours.delete("v1", "ConfigMap", namespace, "absent")
    ours.patch_status("Dataset", namespace, "absent", {"phase": "Ready"})
    with pytest.raises(NotFound):
        ours.patch(API_VERSION, "Dataset", namespace, "absent", {"metadata": {"labels": {}}})


def test_list_filters_by_label_and_delete_removes(ours: Kube, namespace: str) -> None:
    ours.create(_config_map(namespace, "ours", {}))
    theirs = _config_map(namespace, "theirs", {})
    theirs["metadata"]["labels"] = {"team": "b"}
    ours.create(theirs)
    listed = ours.list_objects("v1", "ConfigMap", namespace, "team=a")
    assert [item["metadata"]["name"] for item in listed] == ["ours"]
    ours.delete("v1", "ConfigMap", namespace, "ours")
    remaining = ours.list_objects("v1", "ConfigMap", namespace, "team")
    assert [item["metadata"]["name"] for item in remaining] == ["theirs"]


def test_a_status_write_from_a_stale_copy_conflicts(ours: Kube, namespace: str) -> None:
    manifest = dataset("iris")
    manifest["metadata"]["namespace"] = namespace
    made, _ = ours.create(manifest)
    version = made["metadata"]["resourceVersion"]
    ours.patch_status("Dataset", namespace, "iris", {"phase": "Ingesting"}, version)
    with pytest.raises(Conflict):
        ours.patch_status("Dataset", namespace, "iris", {"phase": "Failed"}, version)
    ours.patch_status("Dataset", namespace, "iris", {"message": None})
    body = ours.custom("Dataset", namespace, "iris")
    assert body is not None
    assert body["status"]["phase"] == "Ingesting"
    assert [item["metadata"]["name"] for item in ours.customs("Dataset", namespace)] == ["iris"]


def test_a_kind_the_server_does_not_serve_is_unknown(ours: Kube, namespace: str) -> None:
    with pytest.raises(UnknownKind):
        ours.get("nothing.modelyard.dev/v1", "Thing", namespace, "a")
    with pytest.raises(UnknownKind):
        ours.list_objects("v1", "Thing", namespace)


def test_a_refused_call_carries_the_api_servers_words(
    crds: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    nobody = Kube(lambda: _with_token(crds.credentials(), token), 1)
    with pytest.raises(Forbidden) as refused:
        nobody.create(_config_map(namespace, "settings", {}))
    assert refused.value.status == 403
    assert refused.value.message is not None
    assert 'cannot create resource "configmaps"' in refused.value.message
    assert "nobody" in refused.value.message


def test_a_refused_token_is_read_again(crds: Cluster, namespace: str) -> None:
    """A service account token rotated on disk: the next login's token is used."""
    logins: list[kopf.ConnectionInfo] = []

    def login() -> kopf.ConnectionInfo:
        info = crds.credentials()
        logins.append(info if logins else _with_token(info, "not-a-token"))
        return logins[-1]

    kube = Kube(login, 1)
    assert kube.get("v1", "ConfigMap", namespace, "absent") is None
    assert len(logins) == 2


def test_a_token_refused_after_logging_in_again_is_an_error(crds: Cluster, namespace: str) -> None:
    kube = Kube(lambda: _with_token(crds.credentials(), "not-a-token"), 1)
    with pytest.raises(ApiError) as refused:
        kube.get("v1", "ConfigMap", namespace, "absent")
    assert refused.value.status == 401


def test_a_pod_not_yet_scheduled_has_an_empty_log_and_a_missing_one_none(
    ours: Kube, namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "waiting", "namespace": namespace},
        "spec": {
            "nodeSelector": {"modelyard.dev/no-such-node": "true"},
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "train",
                    "image": "modelyard/trainer:0.1.0",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    ours.create(pod)
    assert ours.pod_log(namespace, "waiting", "train", 20, 1024) == ""
    with pytest.raises(NotFound):
        ours.pod_log(namespace, "absent", "train", 20, 1024)


def _with_token(info: kopf.ConnectionInfo, token: str) -> kopf.ConnectionInfo:
    """The same server, authenticated by `token` alone."""
    return dataclasses.replace(
        info,
        token=token,
        scheme="Bearer",
        certificate_path=None,
        certificate_data=None,
        private_key_path=None,
        private_key_data=None,
        username=None,
        password=None,
    )
