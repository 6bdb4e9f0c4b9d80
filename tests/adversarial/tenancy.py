"""A tenant of the shared cluster: a namespace, and a data scientist who may use only it."""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelyard.api import GROUP, VERSION
from tests.chaos.objects import Objects
from tests.conftest import PLURALS
from tests.kubelet import pods, wait_for
from tests.plugins.kube import Cluster
from tests.plugins.s3 import S3Server
from tests.process_kubelet import run_job

# The Secret a default install names in every workload namespace (storage.credentialsSecret).
SECRET = "modelyard-s3"


@dataclass
class Tenant:
    namespace: str
    user: str
    cluster: Cluster
    #: Calls made as the tenant's user: the API server applies that user's RBAC.
    api: client.ApiClient
    #: Calls made as the cluster admin: for looking at what happened, never for attacking.
    admin: client.ApiClient

    @classmethod
    def create(cls, cluster: Cluster, namespace: str, user: str, s3: S3Server) -> Tenant:
        admin = cluster.api_client()
        core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
        core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(
                    name=namespace,
                    labels={"pod-security.kubernetes.io/enforce": "restricted"},
                )
            )
        )
        credentials = s3.env()
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=SECRET),
                data={
                    key: base64.b64encode(credentials[key].encode()).decode()
                    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                },
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "data-scientist"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "edit",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )
        as_user = cluster.api_client()
        as_user.set_default_header("Impersonate-User", user)
        tenant = cls(namespace, user, cluster, as_user, admin)
        wait_for(
            f"{user} may create TrainingJobs in {namespace}",
            lambda: tenant.may("create", "trainingjobs", GROUP),
        )
        wait_for(
            f"the default service account in {namespace}",
            lambda: _exists(lambda: core.read_namespaced_service_account("default", namespace)),
        )
        return tenant

    def may(self, verb: str, resource: str, group: str = "", subresource: str = "") -> bool:
        """What the API server says this tenant's user may do in its namespace."""
        review = client.AuthorizationV1Api(self.admin).create_subject_access_review(
            {
                "spec": {
                    "user": self.user,
                    "groups": ["system:authenticated"],
                    "resourceAttributes": {
                        "namespace": self.namespace,
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                        "subresource": subresource,
                    },
                }
            }
        )
        return bool(review.status.allowed)

    @property
    def objects(self) -> Objects:
        """The tenant's own hands."""
        return Objects(self.api, self.namespace)

    @property
    def seen(self) -> Objects:
        """What an admin sees in the tenant's namespace."""
        return Objects(self.admin, self.namespace)

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return (self.seen.get(kind, name) or {}).get("status") or {}

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any] | None:
        conditions = self.status(kind, name).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), None)

    def wait_condition(
        self, kind: str, name: str, type_: str, value: str, reason: str | None = None
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            found = self.condition(kind, name, type_)
            if found and found["status"] == value and reason in (None, found["reason"]):
                return found
            return None

        return wait_for(f"{kind} {self.namespace}/{name} {type_}={value} {reason or ''}", probe)

    def events(self, name: str) -> list[client.CoreV1Event]:
        items = client.CoreV1Api(self.admin).list_namespaced_event(self.namespace).items
        return [e for e in items if e.involved_object.name == name]

    def patch(self, kind: str, name: str, body: dict[str, Any], status: bool = False) -> None:
        custom = client.CustomObjectsApi(self.api)
        plural = PLURALS[kind]
        if status:
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, plural, name, body
            )
        else:
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, body
            )

    def jobs(self, selector: str = "") -> list[client.V1Job]:
        batch = client.BatchV1Api(self.admin)
        return list(batch.list_namespaced_job(self.namespace, label_selector=selector).items)

    def pods(self, selector: str) -> list[client.V1Pod]:
        return pods(client.CoreV1Api(self.admin), self.namespace, selector)

    def run(self, selector: str) -> int:
        """The kubelet runs the workload of the pending pod matching `selector`, for real."""
        return run_job(client.CoreV1Api(self.admin), self.namespace, selector)

    def train_iris(self, name: str = "iris") -> dict[str, Any]:
        """A Dataset of the builtin iris data and a TrainingJob on it, ingested and trained for
        real; the TrainingJob's status."""
        self.objects.create(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Dataset",
                "metadata": {"name": name},
                "spec": {"source": {"builtin": {"name": "iris"}}},
            }
        )
        assert self.run(f"modelyard.dev/dataset={name}") == 0
        self.wait_condition("Dataset", name, "Ready", "True")
        self.objects.create(training_job(name))
        assert self.run(f"modelyard.dev/trainingjob={name}") == 0
        self.wait_condition("TrainingJob", name, "Ready", "True")
        return self.status("TrainingJob", name)

    def delete(self) -> None:
        with contextlib.suppress(ApiException):
            client.CoreV1Api(self.admin).delete_namespace(self.namespace)
        self.api.close()
        self.admin.close()


def training_job(name: str, dataset: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "datasetRef": {"name": dataset or name},
            "estimator": {
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 500},
            },
            **spec,
        },
    }


def model_deployment(name: str, model: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": model, **spec},
    }


def refused(call: Any) -> int:
    """The HTTP status the API server refused `call` with (0 when it did not)."""
    try:
        call()
    except ApiException as error:
        return int(error.status)
    return 0


def _exists(read: Any) -> bool:
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
