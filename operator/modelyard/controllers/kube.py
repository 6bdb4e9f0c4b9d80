"""Kubernetes access for the controllers: server-side apply, create-if-absent, status patches.

One dynamic client for everything, so builders' plain dicts go to the API server as they are.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError

from modelyard.api import API_VERSION

FIELD_MANAGER = "modelyard"
# (connect, read) seconds: a call to an API server that went away fails and kopf retries the
# handler, instead of holding one of the worker threads forever.
REQUEST_TIMEOUT = (10, 60)
Manifest = dict[str, Any]


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.dynamic = DynamicClient(api_client)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> Kube:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            # Read $KUBECONFIG now: the client's default is fixed when it is first imported.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
        return cls(client.ApiClient())

    def _resource(self, api_version: str, kind: str) -> Any:
        with self._lock:  # discovery's cache is not thread-safe on first use
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        try:
            found = self._resource(api_version, kind).get(
                name=name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except NotFoundError:
            return None
        return _plain(found)

    def list_objects(
        self, api_version: str, kind: str, namespace: str, selector: str | None = None
    ) -> list[Manifest]:
        found = self._resource(api_version, kind).get(
            namespace=namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
        )
        return [_plain(item) for item in found.items]

    def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply: we own the fields we set, others (HPA replicas…) keep theirs."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        applied = resource.server_side_apply(
            body=manifest,
            namespace=manifest["metadata"]["namespace"],
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            _request_timeout=REQUEST_TIMEOUT,
        )
        return _plain(applied)

    def create(self, manifest: Manifest) -> tuple[Manifest, bool]:
        """Create, or return the one that exists: retries never make a second child."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        namespace = manifest["metadata"]["namespace"]
        try:
            created = resource.create(
                body=manifest, namespace=namespace, _request_timeout=REQUEST_TIMEOUT
            )
            return _plain(created), True
        except ConflictError:
            existing = resource.get(
                name=manifest["metadata"]["name"],
                namespace=namespace,
                _request_timeout=REQUEST_TIMEOUT,
            )
            return _plain(existing), False

    def create_only(self, manifest: Manifest) -> bool:
        """Create, and False when it exists already, without reading it: for Secrets, which the
        operator may create but never read."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        try:
            resource.create(
                body=manifest,
                namespace=manifest["metadata"]["namespace"],
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ConflictError:
            return False
        return True

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        with contextlib.suppress(NotFoundError):
            self._resource(api_version, kind).delete(
                name=name,
                namespace=namespace,
                body={"propagationPolicy": "Background"},
                _request_timeout=REQUEST_TIMEOUT,
            )

    def patch_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: Manifest,
        resource_version: str | None = None,
    ) -> None:
        """Merge-patch our custom resource's status (None deletes a key). With
        `resource_version`, only if nobody changed the object since: ConflictError otherwise."""
        resource = self._resource(API_VERSION, kind)
        body: Manifest = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        with contextlib.suppress(NotFoundError):  # deleted meanwhile: nothing to report on
            resource.status.patch(
                body=body,
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                # Names the operator in managedFields: the mark of an object it handled, now
                # that most carry neither its finalizer nor kopf's annotations.
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT,
            )

    def patch_custom(self, kind: str, namespace: str, name: str, patch: Manifest) -> None:
        """Merge-patch our custom resource (its metadata: status has its own call). With
        metadata.resourceVersion in `patch`, only if nobody changed it since: ConflictError."""
        with contextlib.suppress(NotFoundError):
            self._resource(API_VERSION, kind).patch(
                body=patch,
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT,
            )

    def custom(self, kind: str, namespace: str, name: str) -> Manifest | None:
        return self.get(API_VERSION, kind, namespace, name)

    def customs(self, kind: str, namespace: str) -> list[Manifest]:
        return self.list_objects(API_VERSION, kind, namespace)


def _plain(obj: Any) -> Manifest:
    plain: Manifest = obj.to_dict()
    return plain
