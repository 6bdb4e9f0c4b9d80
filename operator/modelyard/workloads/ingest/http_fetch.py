"""Opens an HTTP(S) source for streaming without letting it reach addresses the policy refuses.

Every connection (the first, and one per redirect) resolves the host once, checks every address
it resolves to, and connects to a checked address itself: a DNS answer that changes between the
check and the connection (DNS rebinding) cannot move it elsewhere. The request still names the
host: in the Host header and, for HTTPS, in SNI and the certificate check.

Proxy settings from the environment (HTTP_PROXY and the like) are not used: a proxy resolves
the name itself, past the check.
"""

from __future__ import annotations

import http
import http.client
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from modelyard.workloads.ingest.address_policy import ALLOWED_ENV, AddressPolicy

MAX_REDIRECTS = 5
# Connect, and each read: a server that stalls fails the ingest within a minute.
TIMEOUT_SECONDS = 60.0
USER_AGENT = "modelyard-ingest"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# (family, sockaddr) as socket.getaddrinfo gives them.
_Resolved = list[tuple[socket.AddressFamily, Any]]


class FetchRefused(Exception):
    """The URL, or a redirect, leads where HTTP sources may not go."""


class FetchFailed(Exception):
    """The server did not hand over the file: an error status, a redirect loop, a bad URL."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: str | None = None
    ) -> None:
        super().__init__(message)
        #: The error status, and its Retry-After header (for a caller that retries 429 and 503).
        self.status = status
        self.retry_after = retry_after


def open_url(
    url: str,
    policy: AddressPolicy,
    timeout: float = TIMEOUT_SECONDS,
    headers: Mapping[str, str] | None = None,
) -> http.client.HTTPResponse:
    """GET `url`, following up to MAX_REDIRECTS redirects; the caller streams and closes it.

    `headers` (credentials, typically) go to `url`'s origin only: a redirect elsewhere drops them
    for the rest of the chain, as curl does.

    Raises FetchRefused or FetchFailed, whose messages hold nothing the server sent but its
    status code and redirect host; network trouble raises OSError or http.client.HTTPException.
    """
    redirected = False
    origin = _Target.parse(url).origin
    extra = dict(headers or {})
    for _ in range(MAX_REDIRECTS + 1):
        try:
            target = _Target.parse(url)
            if target.origin != origin:
                extra = {}
            response = _get(target, policy, timeout, extra)
        except FetchRefused as error:
            if redirected:
                raise FetchRefused(f"redirected to {error}") from None
            raise
        status = response.status
        if status not in _REDIRECT_STATUSES:
            if 200 <= status < 300:
                return response
            retry_after = response.getheader("Retry-After")
            response.close()
            raise FetchFailed(f"HTTP {_status(status)}", status, retry_after)
        location = response.getheader("Location")
        response.close()
        if not location:
            raise FetchFailed(f"HTTP {_status(status)} without a Location to follow")
        url = _redirect(url, location)
        redirected = True
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS:
            raise FetchRefused(f"a {parts.scheme}: URL; only http and https are fetched")
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise FetchFailed("the port is not a number from 0 to 65535") from None
        if not parts.hostname:
            raise FetchFailed("the URL names no host")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port, path)

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host.lower(), self.port)


def _redirect(current: str, location: str) -> str:
    target = urljoin(current, location)
    # Browsers and most HTTP libraries follow https to http; a data source does not: data asked
    # for over TLS would arrive unauthenticated, open to tampering on the way. The user can
    # name the final location instead.
    if urlsplit(current).scheme == "https" and urlsplit(target).scheme == "http":
        raise FetchRefused("redirected from https to plain http; use the final URL if it is meant")
    return target


def _get(
    target: _Target, policy: AddressPolicy, timeout: float, headers: Mapping[str, str]
) -> http.client.HTTPResponse:
    resolved: _Resolved = [
        (family, sockaddr)
        for family, _, _, _, sockaddr in socket.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM
        )
    ]
    # Every address, not just the first: the connection may fall back to any of them.
    for _, sockaddr in resolved:
        address = ipaddress.ip_address(sockaddr[0])
        refusal = policy.refusal(address)
        if refusal is not None:
            host = target.host if target.host == str(address) else f"{target.host} ({address})"
            raise FetchRefused(
                f"{host}, which is {refusal}; "
                "HTTP sources may not reach it unless the cluster admin allows its network "
                f"(Helm value workloads.http.allowedNetworks, {ALLOWED_ENV})"
            )
    connection = _PinnedConnection(target, resolved, timeout)
    try:
        connection.request(
            "GET",
            target.path,
            headers={**headers, "User-Agent": USER_AGENT, "Connection": "close"},
        )
        return connection.getresponse()
    except BaseException:
        connection.close()
        raise


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to addresses checked beforehand: it never resolves the host again."""

    def __init__(self, target: _Target, resolved: _Resolved, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        # The Host header leaves out the port when it is the scheme's own.
        self.default_port = _DEFAULT_PORTS[target.scheme]
        self._resolved = resolved
        self._tls = ssl.create_default_context() if target.scheme == "https" else None

    def connect(self) -> None:
        sock = _connect(self._resolved, self.timeout)
        if self._tls is None:
            self.sock = sock
            return
        try:
            # The URL's host name, not the address: SNI names it and the certificate must match.
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _connect(resolved: _Resolved, timeout: float | None) -> socket.socket:
    """A TCP connection to the first address that answers, as socket.create_connection would."""
    error = OSError("no address to connect to")
    for family, sockaddr in resolved:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as caught:
            sock.close()
            error = caught
    raise error


def _status(code: int) -> str:
    """The code and its standard phrase: the server's own reason phrase is its text, not ours."""
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)
