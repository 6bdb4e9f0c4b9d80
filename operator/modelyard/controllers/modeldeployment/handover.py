"""When a change of the model's Service's selector has reached its endpoints.

The endpoints controllers (Endpoints, read by the API server's service proxy; EndpointSlices, read
by kube-proxy) recompute a Service's endpoints on their own events. Pods of the old selector that
end before the new selector reached them were measured to empty the Service's Endpoints for about
40 ms: requests then met "no endpoints available". So the pods a Service leaves go once its
endpoints list the new ones alone, which takes milliseconds, or after WAIT_SECONDS at most (the
controllers list no pod of a Node that does not exist, as in a control plane without nodes).
"""

from __future__ import annotations

import time

from modelyard.controllers.context import Context

WAIT_SECONDS = 5.0
POLL_SECONDS = 0.2
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def endpoints_follow(context: Context, namespace: str, service: str, selector: str) -> bool:
    """Whether, within WAIT_SECONDS, the Service's endpoints are pods `selector` selects, one at
    least, in both APIs (an Endpoints object no controller writes is not waited for)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not _followed(context, namespace, service, selector):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def _followed(context: Context, namespace: str, service: str, selector: str) -> bool:
    kube = context.kube
    wanted = {
        pod["metadata"]["name"] for pod in kube.list_objects("v1", "Pod", namespace, selector)
    }
    slices = kube.list_objects(
        "discovery.k8s.io/v1", "EndpointSlice", namespace, f"{SERVICE_NAME_LABEL}={service}"
    )
    listed = [[_target(e) for s in slices for e in s.get("endpoints") or []]]
    endpoints = kube.get("v1", "Endpoints", namespace, service)
    if endpoints is not None:
        listed.append(
            [
                _target(address)
                for subset in endpoints.get("subsets") or []
                for address in [
                    *(subset.get("addresses") or []),
                    *(subset.get("notReadyAddresses") or []),
                ]
            ]
        )
    return all(names and set(names) <= wanted for names in listed)


def _target(endpoint: dict[str, object]) -> object:
    reference = endpoint.get("targetRef")
    return reference.get("name") if isinstance(reference, dict) else None
