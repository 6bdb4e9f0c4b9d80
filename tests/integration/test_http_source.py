"""HTTP sources against real servers on loopback: refused addresses, redirects, pinned connections.

Loopback is refused by default, so every server here is unreachable until a test allows its
address, exactly as an in-cluster address would be.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelyard.workloads.ingest import http_fetch
from modelyard.workloads.ingest.address_policy import ALLOWED_ENV, AddressPolicy
from modelyard.workloads.ingest.http_fetch import MAX_REDIRECTS, FetchFailed, FetchRefused, open_url
from tests.workers import Worker, WorkerResult

pytestmark = pytest.mark.integration

MARKER = "SECRET-7f3c2a"
CSV = ("feature,label\n" + "".join(f"{i},{MARKER}-{i % 2}\n" for i in range(20))).encode()
HOST_NAME = "data.modelyard.test"


@dataclass
class Server:
    """A loopback HTTP(S) server answering from `routes`; it records what it was asked."""

    base: str
    port: int
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Host header)
    server_names: list[str | None] = field(default_factory=list)  # SNI, for HTTPS

    def file(self, path: str, body: bytes = CSV) -> str:
        self.routes[path] = (200, {}, body)
        return self.base + path

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        self.routes[path] = (status, {"Location": location}, b"")
        return self.base + path


def _handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append((self.path, self.headers.get("Host")))
            status, headers, body = server.routes.get(self.path, (404, {}, b""))
            # A reason phrase and a body with the marker: neither may reach a message.
            self.send_response(status, f"{MARKER} phrase")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    return Handler


@contextmanager
def serving(
    host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
) -> Iterator[Server]:
    record = Server("", 0)
    httpd = http.server.ThreadingHTTPServer((host, port), _handler(record))
    if tls is not None:
        tls.sni_callback = lambda sock, name, context: record.server_names.append(name)
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    record.port = httpd.server_address[1]
    record.base = f"{'https' if tls else 'http'}://{host}:{record.port}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    with serving() as running:
        yield running


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> Worker:
    monkeypatch.delenv(ALLOWED_ENV, raising=False)
    return Worker(tmp_path, monkeypatch)


def _ingest(worker: Worker, url: str) -> tuple[WorkerResult, str]:
    result = worker.ingest({"source": {"http": {"url": url}}, "target": "label"})
    return result, worker.log.read_text()


def _assert_refused(result: WorkerResult, log: str, *named: str) -> None:
    assert (result.exit_code, result.message["reason"]) == (2, "SourceAddressNotAllowed"), log
    for text in ("spec.source.http.url", *named):
        assert text in result.message["message"], (text, log)
    assert MARKER not in log


def test_loopback_is_refused_by_default(worker: Worker, server: Server) -> None:
    result, log = _ingest(worker, server.file("/data.csv"))
    _assert_refused(result, log, "127.0.0.1, which is a loopback address", ALLOWED_ENV)
    assert server.requests == [], "refused before connecting"


def test_the_allow_list_lets_loopback_through(
    worker: Worker, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOWED_ENV, "127.0.0.0/8")
    result, log = _ingest(worker, server.file("/data.csv"))
    assert (result.exit_code, result.message["rows"]) == (0, 20), log


def test_a_redirect_to_a_refused_address_is_refused(
    worker: Worker, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOWED_ENV, "127.0.0.2/32")
    with serving("127.0.0.2") as allowed:
        url = allowed.redirect("/data.csv", server.file("/data.csv"))
        result, log = _ingest(worker, url)
    _assert_refused(result, log, "redirected to 127.0.0.1, which is a loopback address")
    assert [path for path, _ in allowed.requests] == ["/data.csv"]
    assert server.requests == []


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f.0.0.1", "127.1"])
def test_a_host_that_resolves_to_loopback_is_refused(
    worker: Worker, server: Server, host: str
) -> None:
    """Names and the odd spellings of 127.0.0.1 alike: what is checked is the resolved address."""
    server.file("/data.csv")
    result, log = _ingest(worker, f"http://{host}:{server.port}/data.csv")
    _assert_refused(result, log, f"{host} (", "a loopback address")
    assert server.requests == []


def test_an_ipv4_mapped_ipv6_literal_is_refused(worker: Worker, server: Server) -> None:
    result, log = _ingest(worker, f"http://[::ffff:127.0.0.1]:{server.port}/data.csv")
    _assert_refused(result, log, "::ffff:127.0.0.1 (::ffff:7f00:1), which is a loopback address")


def test_five_redirects_are_followed_and_a_sixth_is_not(
    worker: Worker, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOWED_ENV, "127.0.0.1/32")
    server.file("/0.csv")
    for hop in range(1, MAX_REDIRECTS + 2):
        server.redirect(f"/{hop}.csv", f"/{hop - 1}.csv")  # relative, as servers often send
    followed, log = _ingest(worker, f"{server.base}/{MAX_REDIRECTS}.csv")
    assert followed.exit_code == 0, log
    result, log = _ingest(worker, f"{server.base}/{MAX_REDIRECTS + 1}.csv")
    assert result.message["reason"] == "SourceUnreachable", log
    assert f"more than {MAX_REDIRECTS} redirects" in result.message["message"]


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://127.0.0.1/data.csv", "gopher://127.0.0.1:6379/_x"]
)
def test_a_redirect_to_another_scheme_is_refused(
    worker: Worker, server: Server, monkeypatch: pytest.MonkeyPatch, location: str
) -> None:
    monkeypatch.setenv(ALLOWED_ENV, "127.0.0.1/32")
    result, log = _ingest(worker, server.redirect("/data.csv", location))
    scheme = location.split(":", 1)[0]
    _assert_refused(result, log, f"redirected to a {scheme}: URL")


def test_error_statuses_name_the_code_but_no_server_text(
    worker: Worker, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOWED_ENV, "127.0.0.1/32")
    server.routes["/data.csv"] = (500, {}, CSV)
    result, log = _ingest(worker, f"{server.base}/data.csv")
    assert result.message["reason"] == "SourceUnreachable", log
    assert "HTTP 500 Internal Server Error" in result.message["message"]
    assert MARKER not in log


@pytest.fixture
def not_http() -> Iterator[int]:
    """A TCP server that answers with a line of its own instead of HTTP (an SSH banner, say)."""

    class Banner(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(f"{MARKER} banner\r\n".encode())

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Banner) as tcp:
        thread = threading.Thread(target=tcp.serve_forever, daemon=True)
        thread.start()
        yield tcp.server_address[1]
        tcp.shutdown()
        thread.join()


def test_a_server_that_does_not_speak_http_is_not_quoted(
    worker: Worker, not_http: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOWED_ENV, "127.0.0.1/32")
    result, log = _ingest(worker, f"http://127.0.0.1:{not_http}/data.csv")
    assert result.message["reason"] == "SourceUnreachable", log
    assert "not valid HTTP" in result.message["message"]
    assert MARKER not in log


# --- the connection goes to the address that was checked -------------------------------------


def _resolver(monkeypatch: pytest.MonkeyPatch, answers: Iterator[str | list[str]]) -> None:
    """socket.getaddrinfo with HOST_NAME answering the next of `answers` at every lookup."""
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != HOST_NAME:
            return real(host, port, *args, **kwargs)
        answer = next(answers)
        addresses = [answer] if isinstance(answer, str) else answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_every_address_a_name_resolves_to_is_checked(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection could fall back to any of them, so one refused address refuses all."""
    _resolver(monkeypatch, iter([["127.0.0.2", "127.0.0.1"]]))
    policy = AddressPolicy(allowed=(ipaddress.ip_network("127.0.0.2/32"),))
    with pytest.raises(FetchRefused, match=rf"{HOST_NAME} \(127\.0\.0\.1\), which is a loopback"):
        open_url(f"http://{HOST_NAME}:{server.port}/data.csv", policy)
    assert server.requests == []


def test_a_second_lookup_cannot_move_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers an allowed address, then a refused one."""
    with serving("127.0.0.2") as allowed, serving("127.0.0.1", allowed.port) as refused:
        allowed.file("/data.csv")
        refused.file("/data.csv", b"refused,server\n")
        _resolver(monkeypatch, iter(["127.0.0.2", "127.0.0.1", "127.0.0.1"]))
        policy = AddressPolicy(allowed=(ipaddress.ip_network("127.0.0.2/32"),))
        with open_url(f"http://{HOST_NAME}:{allowed.port}/data.csv", policy) as response:
            assert response.read() == CSV
    assert allowed.requests == [("/data.csv", f"{HOST_NAME}:{allowed.port}")]
    assert refused.requests == []


@dataclass(frozen=True)
class Certificates:
    authority: Path  # the CA's certificate, for clients to trust
    server: ssl.SSLContext  # a server context with a certificate for HOST_NAME only


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    now = datetime.datetime.now(datetime.UTC)

    def issue(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelyard test CA")])
    ca = (
        issue("modelyard test CA", ca_key, ca_name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        issue(HOST_NAME, key, ca_name)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST_NAME)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    authority = tmp_path / "ca.pem"
    authority.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = tmp_path / "server.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + leaf.public_bytes(serialization.Encoding.PEM)
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    return Certificates(authority, context)


@pytest.fixture
def tls_server(certificates: Certificates, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """An HTTPS server for HOST_NAME on 127.0.0.1, whose CA this process trusts."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.authority))
    _resolver(monkeypatch, iter(lambda: "127.0.0.1", None))
    with serving(tls=certificates.server) as running:
        yield running


LOOPBACK = AddressPolicy(allowed=(ipaddress.ip_network("127.0.0.1/32"),))


def test_https_verifies_the_host_name_through_the_pinned_address(tls_server: Server) -> None:
    tls_server.file("/data.csv")
    with open_url(f"https://{HOST_NAME}:{tls_server.port}/data.csv", LOOPBACK) as response:
        assert response.read() == CSV
    assert tls_server.server_names == [HOST_NAME]
    assert tls_server.requests == [("/data.csv", f"{HOST_NAME}:{tls_server.port}")]


def test_the_host_header_leaves_out_the_schemes_own_port(
    tls_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """https://host/ sends `Host: host`, as browsers do; 443 is played by the test server's port."""
    monkeypatch.setitem(http_fetch._DEFAULT_PORTS, "https", tls_server.port)
    tls_server.file("/data.csv")
    with open_url(f"https://{HOST_NAME}/data.csv", LOOPBACK) as response:
        assert response.read() == CSV
    assert tls_server.requests == [("/data.csv", HOST_NAME)]


def test_https_refuses_a_certificate_for_another_name(tls_server: Server) -> None:
    tls_server.file("/data.csv")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"127\.0\.0\.1"):
        open_url(f"https://127.0.0.1:{tls_server.port}/data.csv", LOOPBACK)
    assert tls_server.requests == []


def test_http_may_redirect_to_https_but_not_back(tls_server: Server, server: Server) -> None:
    upgrade = server.redirect("/data.csv", f"https://{HOST_NAME}:{tls_server.port}/data.csv")
    tls_server.file("/data.csv")
    with open_url(upgrade, LOOPBACK) as response:
        assert response.read() == CSV
    tls_server.redirect("/old.csv", server.file("/plain.csv"))
    with pytest.raises(FetchRefused, match="from https to plain http"):
        open_url(f"https://{HOST_NAME}:{tls_server.port}/old.csv", LOOPBACK)
    assert [path for path, _ in server.requests] == ["/data.csv"]


def test_a_redirect_without_a_location_fails(server: Server) -> None:
    server.routes["/data.csv"] = (302, {}, b"")
    with pytest.raises(FetchFailed, match="HTTP 302 Found without a Location"):
        open_url(f"{server.base}/data.csv", LOOPBACK)


def test_a_malformed_allow_list_is_named(
    worker: Worker, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOWED_ENV, "127.0.0.0/8,loopback")
    result, log = _ingest(worker, server.file("/data.csv"))
    assert (result.exit_code, result.message["reason"]) == (2, "InvalidArguments"), log
    assert f"{ALLOWED_ENV}: 'loopback' is not a network" in result.message["message"]
