"""Tenant A aims the operator's own workloads at what is not theirs: addresses inside the cluster
or on the node (SSRF), and reports too large for the kubelet to keep whole."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from modelyard.api import GROUP, VERSION
from tests.adversarial.tenancy import Tenant

pytestmark = pytest.mark.adversarial

SECRET_MARKER = "internal-only-7f3a"
DATA = f"x,label\n1,{SECRET_MARKER}\n2,b\n3,{SECRET_MARKER}\n4,b\n5,a\n6,b\n7,a\n8,b\n".encode()


@contextmanager
def http_server(host: str, redirect_to: str | None = None) -> Iterator[str]:
    """A server on `host` that serves DATA, or redirects every request to `redirect_to`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if redirect_to:
                self.send_response(302)
                self.send_header("Location", redirect_to)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/data.csv"
    finally:
        server.shutdown()
        server.server_close()


def _http_dataset(name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": {"http": {"url": url}}, "format": "csv", "target": "label"},
    }


def _nothing_leaked(tenant: Tenant, name: str) -> None:
    status = json.dumps(tenant.status("Dataset", name))
    events = " ".join(e.message or "" for e in tenant.events(name))
    assert SECRET_MARKER not in status and SECRET_MARKER not in events


def test_an_http_source_on_the_node_or_in_the_cluster_is_refused(attacker: Tenant) -> None:
    with http_server("127.0.0.1") as internal:
        attacker.objects.create(_http_dataset("internal", internal))
        assert attacker.run("modelyard.dev/dataset=internal") != 0
    stalled = attacker.wait_condition(
        "Dataset", "internal", "Stalled", "True", "SourceAddressNotAllowed"
    )
    assert "spec.source.http.url" in stalled["message"] and "127.0.0.1" in stalled["message"]
    _nothing_leaked(attacker, "internal")
    attacker.objects.create(_http_dataset("metadata", "http://169.254.169.254/latest/data.csv"))
    assert attacker.run("modelyard.dev/dataset=metadata") != 0
    attacker.wait_condition("Dataset", "metadata", "Stalled", "True", "SourceAddressNotAllowed")


def test_an_allowed_source_cannot_redirect_the_workload_inside(attacker: Tenant) -> None:
    # 127.0.0.2 is on the operator's allow list (conftest.ALLOWED_HTTP); 127.0.0.1 is not.
    with (
        http_server("127.0.0.1") as internal,
        http_server("127.0.0.2", redirect_to=internal) as bouncer,
        http_server("127.0.0.2") as allowed,
    ):
        attacker.objects.create(_http_dataset("bounced", bouncer))
        assert attacker.run("modelyard.dev/dataset=bounced") != 0
        attacker.wait_condition("Dataset", "bounced", "Stalled", "True", "SourceAddressNotAllowed")
        _nothing_leaked(attacker, "bounced")
        # The control: the allow list reaches the pod, and an allowed source ingests.
        attacker.objects.create(_http_dataset("allowed", allowed))
        assert attacker.run("modelyard.dev/dataset=allowed") == 0
        attacker.wait_condition("Dataset", "allowed", "Ready", "True", "Ingested")


def test_a_failure_report_longer_than_the_kubelet_keeps_still_names_its_reason(
    attacker: Tenant,
) -> None:
    """40 expected columns of 200 characters, none in the data: a message of some 9 KB, which
    the kubelet cuts at 4096 bytes. The report must stay whole JSON with its reason."""
    columns = [{"name": f"c{i:02d}" + "x" * 197} for i in range(40)]
    attacker.objects.create(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Dataset",
            "metadata": {"name": "wide"},
            "spec": {"source": {"builtin": {"name": "iris"}}, "schema": {"columns": columns}},
        }
    )
    assert attacker.run("modelyard.dev/dataset=wide") != 0
    stalled = attacker.wait_condition("Dataset", "wide", "Stalled", "True", "SchemaMismatch")
    assert "spec.schema.columns" in stalled["message"]
