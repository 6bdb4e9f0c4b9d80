"""Kubernetes access for the controllers: server-side apply, create-if-absent, status patches.

Plain JSON over one urllib3 pool, logged in as kopf logs in (`kopf.ConnectionInfo`), so builders'
plain dicts go to the API server as they are and answers come back as plain dicts. Hand-written
instead of the official client, measured (docs/benchmarks/operator-memory.md): that client is
14 MiB resident once imported (kopf imports it whenever it can, so `modelyard operator` keeps it
out), and its dynamic client wraps every answer in objects only to unwrap them again.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import kopf
import urllib3

from modelyard.api import API_VERSION

FIELD_MANAGER = "modelyard"
USER_AGENT = "modelyard-operator"
# A call to an API server that went away fails and kopf retries the handler, instead of holding
# one of the worker threads forever.
TIMEOUT = urllib3.Timeout(connect=10, read=60)
# A connection that could not be made is tried again (nothing was sent), a request whose answer
# was lost only when it is idempotent (urllib3's default methods: not POST, not PATCH); otherwise
# the caller decides whether to repeat it (transient.py, kopf's handler retries).
RETRIES = urllib3.Retry(total=2, redirect=0, status=0)
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML
Manifest = dict[str, Any]


class ApiError(Exception):
    """The API server refused a call: its HTTP status and, when it said one, its message."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.body = body.decode("utf-8", "replace")
        try:
            said = json.loads(self.body).get("message")
        except (ValueError, AttributeError):
            said = None
        self.message: str | None = str(said) if said else None
        super().__init__(f"{status} {reason}: {self.message or self.body[:500]}")


class Forbidden(ApiError):
    """403: RBAC refused the call."""


class NotFound(ApiError):
    """404: no such object (or namespace)."""


class Conflict(ApiError):
    """409: the object exists already, or changed since the resourceVersion a write carried."""


_BY_STATUS: dict[int, type[ApiError]] = {403: Forbidden, 404: NotFound, 409: Conflict}


class UnknownKind(LookupError):
    """The API server serves no such kind (a CRD not installed, e.g. the Dask operator's)."""


@dataclass(frozen=True)
class _Connection:
    server: str
    headers: dict[str, str]
    pool: urllib3.PoolManager


@dataclass(frozen=True)
class _Resource:
    plural: str
    namespaced: bool


class Kube:
    """`login` returns where the API server is and how to authenticate to it; it is called again
    when the server answers 401 (a service account token rotated on disk). `connections` is how
    many the pool keeps open: one per thread that calls (kopf's worker threads)."""

    def __init__(self, login: Callable[[], kopf.ConnectionInfo], connections: int) -> None:
        self._login = login
        self._connections = connections
        self._connection = self._connect()
        # Filled from discovery, one group version at a time; a kind not found is looked up
        # again on its next use (its CRD may be installed meanwhile).
        self._resources: dict[tuple[str, str], _Resource] = {}
        self._relogin = threading.Lock()

    def _connect(self) -> _Connection:
        info = self._login()
        https = info.server.startswith("https:")
        pool = urllib3.PoolManager(
            maxsize=self._connections,
            timeout=TIMEOUT,
            retries=RETRIES,
            ssl_context=info.as_ssl_context() if https else None,
        )
        headers = {"Accept": "application/json, */*", "User-Agent": USER_AGENT}  # */*: logs
        headers.update(info.as_http_headers())
        return _Connection(info.server.rstrip("/"), headers, pool)

    def _call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Manifest | None = None,
        content_type: str = "application/json",
    ) -> urllib3.BaseHTTPResponse:
        payload = None if body is None else json.dumps(body).encode()
        suffix = f"?{urlencode(query)}" if query else ""
        for attempt in range(2):
            connection = self._connection
            headers = connection.headers
            if payload is not None:
                headers = {**headers, "Content-Type": content_type}
            response = connection.pool.request(
                method, connection.server + path + suffix, body=payload, headers=headers
            )
            if response.status != 401 or attempt:
                break
            with self._relogin:
                if self._connection is connection:  # not renewed by another thread meanwhile
                    self._connection = self._connect()
        if response.status >= 400:
            error = _BY_STATUS.get(response.status, ApiError)
            raise error(response.status, response.reason or "", response.data)
        return response

    def _json(self, method: str, path: str, **call: Any) -> Manifest:
        answer: Manifest = json.loads(self._call(method, path, **call).data)
        return answer

    def _resource(self, api_version: str, kind: str) -> _Resource:
        known = self._resources.get((api_version, kind))
        if known is not None:
            return known
        try:
            listing = self._json("GET", _group_path(api_version))
        except NotFound as error:
            raise UnknownKind(f"the API server serves no {api_version}") from error
        for resource in listing.get("resources") or []:
            if "/" not in resource["name"]:  # not a subresource
                self._resources[(api_version, resource["kind"])] = _Resource(
                    resource["name"], bool(resource["namespaced"])
                )
        known = self._resources.get((api_version, kind))
        if known is None:
            raise UnknownKind(f"the API server serves no {kind} in {api_version}")
        return known

    def _path(self, api_version: str, kind: str, namespace: str, name: str = "") -> str:
        resource = self._resource(api_version, kind)
        path = _group_path(api_version)
        if resource.namespaced:
            path += f"/namespaces/{quote(namespace, safe='')}"
        path += f"/{resource.plural}"
        return f"{path}/{quote(name, safe='')}" if name else path

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        try:
            return self._json("GET", self._path(api_version, kind, namespace, name))
        except NotFound:
            return None

    def list_objects(
        self, api_version: str, kind: str, namespace: str, selector: str | None = None
    ) -> list[Manifest]:
        query = {"labelSelector": selector} if selector else None
        found = self._json("GET", self._path(api_version, kind, namespace), query=query)
        return list(found.get("items") or [])

    def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply: we own the fields we set, others (HPA replicas…) keep theirs."""
        path = self._path(
            manifest["apiVersion"],
            manifest["kind"],
            manifest["metadata"]["namespace"],
            manifest["metadata"]["name"],
        )
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        return self._json("PATCH", path, query=query, body=manifest, content_type=APPLY_PATCH)

    def create(self, manifest: Manifest) -> tuple[Manifest, bool]:
        """Create, or return the one that exists: retries never make a second child."""
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        namespace = manifest["metadata"]["namespace"]
        try:
            return self._json("POST", self._path(api_version, kind, namespace), body=manifest), True
        except Conflict:
            path = self._path(api_version, kind, namespace, manifest["metadata"]["name"])
            return self._json("GET", path), False

    def create_only(self, manifest: Manifest) -> bool:
        """Create, and False when it exists already, without reading it: for Secrets, which the
        operator may create but never read."""
        path = self._path(
            manifest["apiVersion"], manifest["kind"], manifest["metadata"]["namespace"]
        )
        try:
            self._call("POST", path, body=manifest)
        except Conflict:
            return False
        return True

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        path = self._path(api_version, kind, namespace, name)
        with contextlib.suppress(NotFound):
            self._call("DELETE", path, body={"propagationPolicy": "Background"})

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Manifest
    ) -> None:
        """Merge-patch an object (None deletes a key); NotFound when it is gone."""
        path = self._path(api_version, kind, namespace, name)
        query = {"fieldManager": FIELD_MANAGER}
        self._call("PATCH", path, query=query, body=patch, content_type=MERGE_PATCH)

    def patch_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: Manifest,
        resource_version: str | None = None,
    ) -> None:
        """Merge-patch our custom resource's status (None deletes a key). With
        `resource_version`, only if nobody changed the object since: Conflict otherwise."""
        body: Manifest = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        path = self._path(API_VERSION, kind, namespace, name) + "/status"
        # Names the operator in managedFields: the mark of an object it handled, now that most
        # carry neither its finalizer nor kopf's annotations.
        query = {"fieldManager": FIELD_MANAGER}
        with contextlib.suppress(NotFound):  # deleted meanwhile: nothing to report on
            self._call("PATCH", path, query=query, body=body, content_type=MERGE_PATCH)

    def patch_custom(self, kind: str, namespace: str, name: str, patch: Manifest) -> None:
        """Merge-patch our custom resource (its metadata: status has its own call). With
        metadata.resourceVersion in `patch`, only if nobody changed it since: Conflict."""
        with contextlib.suppress(NotFound):
            self.patch(API_VERSION, kind, namespace, name, patch)

    def custom(self, kind: str, namespace: str, name: str) -> Manifest | None:
        return self.get(API_VERSION, kind, namespace, name)

    def customs(self, kind: str, namespace: str) -> list[Manifest]:
        return self.list_objects(API_VERSION, kind, namespace)

    def pod_log(
        self, namespace: str, name: str, container: str, tail_lines: int, limit_bytes: int
    ) -> str:
        """The last `tail_lines` lines the container printed, at most `limit_bytes` of them."""
        path = self._path("v1", "Pod", namespace, name) + "/log"
        query = {
            "container": container,
            "tailLines": str(tail_lines),
            "limitBytes": str(limit_bytes),
        }
        return self._call("GET", path, query=query).data.decode("utf-8", "replace")


def _group_path(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
