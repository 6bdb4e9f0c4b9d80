"""The command's connection to the cluster, found as kubectl finds it (--kubeconfig, $KUBECONFIG,
~/.kube/config, then the pod's service account), and API errors turned into one actionable line.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from modelyard.api import GROUP, VERSION
from modelyard.api.common import KindInfo
from modelyard.cli.errors import CliError, NotFound, UsageError
from modelyard.cli.refs import Ref

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_KUBECONFIG = Path("~/.kube/config")
# Connect and read timeouts of one API call; watches and log streams set their own.
REQUEST_TIMEOUT = (10, 60)


@dataclass(frozen=True)
class Options:
    """The connection flags every cluster command takes."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        return cls(args.kubeconfig, args.context, args.namespace)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer from a workload behind a Service."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _client_module() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise CliError(
            "this command talks to the cluster and needs the kubernetes client: "
            "pip install 'modelyard[operator]'"
        ) from None
    return kubernetes


class Kube:
    """Calls the CLI makes, in one namespace."""

    def __init__(self, api: Any, namespace: str, in_cluster: bool) -> None:
        kubernetes = _client_module()
        self.api = api
        self.namespace = namespace
        self.in_cluster = in_cluster
        self.host: str = api.configuration.host
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self._api_exception: type[Exception] = kubernetes.client.ApiException

    @cached_property
    def core(self) -> Any:
        """Pods and logs; imported on first use, as the module takes seconds to load."""
        return _client_module().client.CoreV1Api(self.api)

    @classmethod
    def connect(cls, options: Options) -> Kube:
        kubernetes = _client_module()
        configuration = kubernetes.client.Configuration()
        path = options.kubeconfig or os.environ.get("KUBECONFIG")
        in_cluster = (
            path is None
            and not DEFAULT_KUBECONFIG.expanduser().exists()
            and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        )
        if in_cluster:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            namespace = options.namespace or _service_account_namespace()
        else:
            namespace = _load_kubeconfig(kubernetes, configuration, path, options)
        return cls(kubernetes.client.ApiClient(configuration), namespace, in_cluster)

    def close(self) -> None:
        self.api.close()

    @contextmanager
    def calling(self, what: str) -> Iterator[None]:
        """Turns the client's exceptions into CliError lines that say what to do."""
        try:
            yield
        except self._api_exception as error:
            if _object_missing(error):
                raise NotFound(f"{what} not found in namespace {self.namespace}") from None
            raise CliError(self._explain(what, error)) from None
        except (OSError, _urllib3_error()) as error:
            raise CliError(f"cannot reach the cluster at {self.host}: {_reason(error)}") from None

    def _explain(self, what: str, error: Any) -> str:
        status = getattr(error, "status", None)
        body = _json_or_none(getattr(error, "body", None))
        message = (body or {}).get("message") or getattr(error, "reason", "") or ""
        if status == 404:
            return (
                f"{what}: the cluster at {self.host} does not serve {GROUP}/{VERSION}; "
                "are the Modelyard CRDs installed? (helm install modelyard charts/modelyard)"
            )
        if status == 401:
            return f"the cluster at {self.host} refused the credentials (401): check the kubeconfig"
        if status == 403:
            return f"forbidden: {message}"
        return f"{what}: {status} {message}".rstrip()

    def get(self, ref: Ref) -> dict[str, Any]:
        with self.calling(str(ref)):
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                ref.info.plural,
                ref.name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        return obj

    def find(self, ref: Ref) -> dict[str, Any] | None:
        """The object, or None when it does not exist (yet)."""
        try:
            return self.get(ref)
        except NotFound:
            return None

    def objects(self, info: KindInfo) -> list[dict[str, Any]]:
        with self.calling(info.plural):
            answer = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, info.plural, _request_timeout=REQUEST_TIMEOUT
            )
        items: list[dict[str, Any]] = answer["items"]
        return items

    def watch(self, ref: Ref, seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events for one object for up to `seconds`: first its current state (ADDED), then
        every change; the caller watches again when this ends."""
        kubernetes = _client_module()
        stream = kubernetes.watch.Watch().stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            ref.info.plural,
            field_selector=f"metadata.name={ref.name}",
            timeout_seconds=seconds,
            _request_timeout=(REQUEST_TIMEOUT[0], seconds + 10),
        )
        with self.calling(str(ref)):
            for event in stream:
                yield event["type"], event["object"]

    def pods(self, selector: str) -> list[Any]:
        with self.calling(f"pods {selector}"):
            return list(
                self.core.list_namespaced_pod(
                    self.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
                ).items
            )

    def wait_started(self, pod: str, seconds: int) -> Any:
        """The pod once it has left Pending (its container started or it ended), watched."""
        kubernetes = _client_module()
        watch = kubernetes.watch.Watch()
        with self.calling(f"pod/{pod}"):
            for event in watch.stream(
                self.core.list_namespaced_pod,
                self.namespace,
                field_selector=f"metadata.name={pod}",
                timeout_seconds=seconds,
            ):
                current = event["object"]
                if event["type"] == "DELETED" or current.status.phase != "Pending":
                    watch.stop()
                    return current
        raise CliError(f"pod/{pod} did not start within {seconds}s")

    def log(self, pod: str, container: str | None, follow: bool) -> Iterator[bytes]:
        with self.calling(f"pod/{pod}"):
            response = self.core.read_namespaced_pod_log(
                pod,
                self.namespace,
                container=container,
                follow=follow,
                _preload_content=False,
                _request_timeout=None if follow else REQUEST_TIMEOUT,
            )
            try:
                yield from response.stream(4096)
            finally:
                response.release_conn()

    def service_request(
        self, service: str, path: str, body: Any | None, direct_url: str | None
    ) -> Answer:
        """GET (no body) or POST JSON to the Service's `http` port: straight to `direct_url`
        from inside the cluster, else through the API server's service proxy."""
        if self.in_cluster and direct_url:
            return _direct(f"{direct_url.rstrip('/')}/{path}", body)
        resource = f"/api/v1/namespaces/{self.namespace}/services/{service}:http/proxy/{path}"
        with self.calling(f"service/{service}"):
            # The generated API has no body for proxy calls; the client's own request path
            # (credentials, CA, timeouts) carries one. Any HTTP status comes back as an answer.
            method, url, headers, payload, _ = self.api.param_serialize(
                "GET" if body is None else "POST",
                resource,
                header_params={"Content-Type": "application/json", "Accept": "*/*"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(
                method, url, header_params=headers, body=payload, _request_timeout=REQUEST_TIMEOUT
            )
            response.read()
            return Answer(response.status, response.data)


def _load_kubeconfig(
    kubernetes: Any, configuration: Any, path: str | None, options: Options
) -> str:
    """Loads the client settings; returns the namespace: -n, else the context's, else default."""
    if options.kubeconfig and not Path(options.kubeconfig).expanduser().is_file():
        raise UsageError(f"--kubeconfig {options.kubeconfig}: no such file")
    source = path or str(DEFAULT_KUBECONFIG.expanduser())
    config_exception = kubernetes.config.ConfigException
    try:
        kubernetes.config.load_kube_config(
            config_file=source, context=options.context, client_configuration=configuration
        )
        contexts, active = kubernetes.config.list_kube_config_contexts(config_file=source)
    except config_exception as error:
        raise CliError(
            f"no cluster to talk to: {source}: {error} "
            "(pass --kubeconfig, set KUBECONFIG, or run inside a pod)"
        ) from None
    chosen = next((c for c in contexts if c["name"] == options.context), None) or active
    if options.namespace:
        return options.namespace
    return str((chosen.get("context") or {}).get("namespace") or "default")


def _service_account_namespace() -> str:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def _direct(url: str, body: Any | None) -> Answer:
    """HTTP to a cluster-local name: no proxy from the environment stands in between."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=REQUEST_TIMEOUT[1]) as response:
            return Answer(response.status, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read())
    except OSError as error:
        raise CliError(f"cannot reach {url}: {_reason(error)}") from None


def _object_missing(error: Any) -> bool:
    """A 404 for a named object, not for a resource type the server does not serve."""
    body = _json_or_none(getattr(error, "body", None)) or {}
    return (
        getattr(error, "status", None) == 404
        and body.get("reason") == "NotFound"
        and bool((body.get("details") or {}).get("name"))
    )


def _urllib3_error() -> type[Exception]:
    import urllib3

    return urllib3.exceptions.HTTPError


def _reason(error: BaseException) -> str:
    """The innermost cause, which is what names the problem (refused, no such host, TLS)."""
    reason = getattr(error, "reason", None)
    while isinstance(reason, BaseException) and getattr(reason, "reason", None) is not None:
        reason = getattr(reason, "reason", None)
    return str(reason or error)


def _json_or_none(raw: Any) -> dict[str, Any] | None:
    try:
        document = json.loads(raw) if raw else None
    except (TypeError, ValueError):
        return None
    return document if isinstance(document, dict) else None
