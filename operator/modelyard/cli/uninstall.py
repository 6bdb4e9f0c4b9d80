"""`modelyard uninstall-cleanup`: what the Helm chart's pre-delete hook runs, so that an uninstall
leaves no object that cannot be deleted.

The operator puts its finalizer on every Dataset, TrainingJob and ModelDeployment it sees, and
only a running operator takes it off. `helm uninstall` removes the operator but keeps the objects
and the CRDs, so without this step deleting an object afterwards (or its namespace, or the CRDs)
would wait forever. In this order:

1. delete the release's operator Deployment and wait until it and its pods are gone: an operator
   still running puts the finalizer back on every object it sees;
2. take that finalizer, and no other, off every object in the namespaces the operator watched.

The objects themselves stay. A later `helm install` starts an operator that puts its finalizer
back on each of them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from typing import Any

from modelyard.api import GROUP, KINDS, VERSION
from modelyard.cli.errors import CliError, NotFound
from modelyard.cli.kubeclient import REQUEST_TIMEOUT, Kube, Options
from modelyard.cli.wait import duration

DEFAULT_TIMEOUT = "2m"
POLL_SECONDS = 1.0
# Objects per list call: a namespace with thousands of objects is read page by page.
PAGE_SIZE = 500
# Each attempt re-reads the object; an object that keeps changing while no operator runs is
# being written by someone else, which the message then says.
PATCH_ATTEMPTS = 5
MERGE_PATCH = "application/merge-patch+json"


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "uninstall-cleanup",
        parents=parents,
        help="stop the operator and take its finalizer off every Modelyard object, so that they "
        "can be deleted without it (the Helm chart's pre-delete hook); the objects stay",
        description="Deletes the operator's Deployment and waits until its pods are gone, then "
        "removes the operator's finalizer (and no other) from every Dataset, TrainingJob and "
        "ModelDeployment in the watched namespaces. The objects stay, and can then be deleted "
        "without an operator; a new operator puts its finalizer back. `helm uninstall` runs "
        "this first (the chart's pre-delete hook).",
    )
    parser.add_argument(
        "--deployment",
        required=True,
        help="the operator's Deployment, in the namespace given with -n",
    )
    parser.add_argument(
        "--watch-namespace",
        action="append",
        default=[],
        metavar="NAMESPACE",
        help="a namespace the operator watched (repeatable; default: every namespace)",
    )
    parser.add_argument(
        "--timeout",
        type=duration,
        default=duration(DEFAULT_TIMEOUT),
        help=f"how long the operator may take to stop, e.g. 90s, 5m (default {DEFAULT_TIMEOUT})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelyard.controllers.bookkeeping import FINALIZER

    kube = Kube.connect(Options.from_args(args))
    try:
        cleanup = Cleanup(kube)
        cleanup.stop_operator(args.deployment, args.timeout)
        for kind in KINDS:
            released = cleanup.release(kind.info.plural, args.watch_namespace, FINALIZER)
            print(f"{kind.info.plural}: {FINALIZER} removed from {released}")
    finally:
        kube.close()
    return 0


class Cleanup:
    def __init__(self, kube: Kube) -> None:
        # Imported here, as kubeclient does: loading the client takes a second that the commands
        # which never reach a cluster should not pay.
        from kubernetes import client

        self.kube = kube
        self.apps = client.AppsV1Api(kube.api)
        self.api_error: type[Exception] = client.ApiException

    def stop_operator(self, name: str, timeout: float) -> None:
        """Delete the Deployment and return once it and every pod it selected are gone."""
        what = f"deployment/{name}"
        namespace = self.kube.namespace
        deployment = self._deployment(name)
        if deployment is None:
            print(f"{what} not found in namespace {namespace}: no operator to stop")
            return
        labels: dict[str, str] = deployment.spec.selector.match_labels or {}
        if not labels:
            # An empty selector would wait for every pod of the namespace.
            raise CliError(f"{what} selects its pods by no label: it is not the chart's operator")
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        # Foreground: the Deployment stays until its ReplicaSets and pods are deleted, and a
        # ReplicaSet being deleted starts no new pod, so none can appear once we saw none.
        try:
            with self.kube.calling(what):
                self.apps.delete_namespaced_deployment(
                    name,
                    namespace,
                    propagation_policy="Foreground",
                    _request_timeout=REQUEST_TIMEOUT,
                )
        except NotFound:
            pass  # deleted meanwhile: its pods may still be going
        print(f"{what} deleted; waiting for the operator's pods ({selector}) to go")
        deadline = time.monotonic() + timeout
        while True:
            present = self._deployment(name) is not None
            pods = self.kube.pods(selector)
            if not present and not pods:
                break
            if time.monotonic() > deadline:
                left = ", ".join(sorted(pod.metadata.name for pod in pods)) or what
                raise CliError(
                    f"the operator is still there after {timeout:.0f}s ({left}); "
                    "its finalizers stay until it has stopped"
                )
            time.sleep(POLL_SECONDS)
        print("the operator has stopped")

    def _deployment(self, name: str) -> Any | None:
        try:
            with self.kube.calling(f"deployment/{name}"):
                return self.apps.read_namespaced_deployment(
                    name, self.kube.namespace, _request_timeout=REQUEST_TIMEOUT
                )
        except NotFound:
            return None

    def release(self, plural: str, namespaces: Sequence[str], finalizer: str) -> int:
        """Take `finalizer` off every object of a kind in `namespaces` (all when empty); returns
        how many carried it."""
        released = 0
        scopes: list[str | None] = [*namespaces] or [None]
        for namespace in scopes:
            for obj in self._objects(plural, namespace):
                if finalizer in (obj["metadata"].get("finalizers") or []):
                    released += self._remove(plural, obj, finalizer)
        return released

    def _objects(self, plural: str, namespace: str | None) -> Iterator[dict[str, Any]]:
        custom, token = self.kube.custom, None
        while True:
            with self.kube.calling(plural):
                try:
                    if namespace is None:
                        page = custom.list_cluster_custom_object(
                            GROUP,
                            VERSION,
                            plural,
                            limit=PAGE_SIZE,
                            _continue=token,
                            _request_timeout=REQUEST_TIMEOUT,
                        )
                    else:
                        page = custom.list_namespaced_custom_object(
                            GROUP,
                            VERSION,
                            namespace,
                            plural,
                            limit=PAGE_SIZE,
                            _continue=token,
                            _request_timeout=REQUEST_TIMEOUT,
                        )
                except self.api_error as error:
                    # The cluster does not serve the kind (no CRD): no object can be stuck.
                    if getattr(error, "status", None) == 404:
                        return
                    raise
            yield from page["items"]
            token = page["metadata"].get("continue")
            if not token:
                return

    def _remove(self, plural: str, obj: dict[str, Any], finalizer: str) -> int:
        """1 once `finalizer` is off the object, 0 when the object went meanwhile."""
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        what = f"{plural}/{name} in namespace {namespace}"
        for _ in range(PATCH_ATTEMPTS):
            finalizers = meta.get("finalizers") or []
            if finalizer not in finalizers:
                return 1
            # A merge patch replaces the whole list; with the resourceVersion it applies only to
            # the list we read, so a finalizer someone else added meanwhile is never dropped.
            body = {
                "metadata": {
                    "finalizers": [f for f in finalizers if f != finalizer],
                    "resourceVersion": meta["resourceVersion"],
                }
            }
            with self.kube.calling(what):
                try:
                    self.kube.custom.patch_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        namespace,
                        plural,
                        name,
                        body,
                        _content_type=MERGE_PATCH,
                        _request_timeout=REQUEST_TIMEOUT,
                    )
                    return 1
                except self.api_error as error:
                    status = getattr(error, "status", None)
                    if status == 404:
                        return 0
                    if status != 409:
                        raise
                try:
                    fresh = self.kube.custom.get_namespaced_custom_object(
                        GROUP, VERSION, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
                    )
                except self.api_error as error:
                    if getattr(error, "status", None) == 404:
                        return 0
                    raise
            meta = fresh["metadata"]
        raise CliError(f"{what} kept changing: its finalizer stays ({PATCH_ATTEMPTS} attempts)")
