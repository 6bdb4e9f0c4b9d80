"""Which IP addresses an HTTP source may reach: public ones, unless the operator says otherwise.

A Dataset's URL is written by a user, but the ingest pod fetches it from inside the cluster, next
to the cloud's metadata service, the API server and every in-cluster service. So loopback,
link-local, private, shared, reserved and multicast addresses are refused by default. The
operator's administrator opens specific networks with MODELYARD_HTTP_ALLOWED_NETWORKS and closes
cluster networks that look public (pod or service CIDRs on public ranges) with
MODELYARD_HTTP_DENIED_NETWORKS; both are comma-separated CIDRs. Where the two lists overlap, the
most specific entry decides (a tie refuses): allowing 10.0.0.0/8 while denying the service CIDR
10.96.0.0/12 refuses the services, and allowing one server inside a denied range admits it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from modelyard.reasons import Reason
from modelyard.workloads.common.termination import EXIT_USAGE, WorkloadError

ALLOWED_ENV = "MODELYARD_HTTP_ALLOWED_NETWORKS"
DENIED_ENV = "MODELYARD_HTTP_DENIED_NETWORKS"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT; no property
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix; no property either

# Checked in this order; the first that matches names the refusal. The standard library's
# properties follow IANA's special-purpose registries, so they are used wherever one fits:
# is_private covers RFC 1918 and fc00::/7 (and documentation and benchmarking blocks), and
# is_reserved covers 240.0.0.0/4, which holds the broadcast address 255.255.255.255. Reserved is
# asked before private, which also claims 240.0.0.0/4, so that the message names it precisely.
_CATEGORIES: tuple[tuple[str, Callable[[Address], bool]], ...] = (
    ("unspecified", lambda a: a.is_unspecified),
    ("multicast", lambda a: a.is_multicast),
    ("loopback", lambda a: a.is_loopback),
    ("link-local", lambda a: a.is_link_local),
    ("shared (100.64.0.0/10)", lambda a: a in _SHARED),
    ("reserved", lambda a: a.is_reserved),
    ("private", lambda a: a.is_private),
    ("site-local", lambda a: isinstance(a, ipaddress.IPv6Address) and a.is_site_local),
)


def _as_ipv4(address: Address) -> Address:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, 6to4, NAT64), else itself.

    Such an address reaches the IPv4 host it embeds, so it is judged as that host: ::ffff:127.0.0.1
    is loopback, and 64:ff9b::808:808 (DNS64 in an IPv6-only cluster) is public 8.8.8.8.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class AddressPolicy:
    allowed: tuple[Network, ...] = ()
    denied: tuple[Network, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AddressPolicy:
        """The policy the operator passes to ingest pods; ValueError names a malformed entry."""
        return cls(_networks(environ, ALLOWED_ENV), _networks(environ, DENIED_ENV))

    def refusal(self, address: Address) -> str | None:
        """Why `address` may not be reached, as a phrase ("a loopback address"); None if it may."""
        address = _as_ipv4(address)
        allowed = _longest_match(self.allowed, address)
        denied = _longest_match(self.denied, address)
        if denied is not None and (allowed is None or denied.prefixlen >= allowed.prefixlen):
            return f"in {denied}, a network {DENIED_ENV} denies"
        if allowed is not None:
            return None
        return next((f"a {name} address" for name, test in _CATEGORIES if test(address)), None)


def _networks(environ: Mapping[str, str], name: str) -> tuple[Network, ...]:
    networks = []
    for entry in environ.get(name, "").split(","):
        if not entry.strip():
            continue
        try:
            # Host bits are forgiven (10.244.0.1/16 means 10.244.0.0/16): the intent is clear.
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{name}: {entry.strip()!r} is not a network; "
                "expected comma-separated CIDRs such as 10.244.0.0/16,192.168.0.5/32"
            ) from None
    return tuple(networks)


def _longest_match(networks: tuple[Network, ...], address: Address) -> Network | None:
    matches = [network for network in networks if address in network]
    return max(matches, key=lambda network: network.prefixlen, default=None)


def workload_policy(environ: Mapping[str, str]) -> AddressPolicy:
    """The policy the operator passed to this ingest pod, for any source that opens a
    connection (http, api, sql)."""
    try:
        return AddressPolicy.from_env(environ)
    except ValueError as error:
        # The operator passes this setting: a bad one is its configuration's, not the user's.
        raise WorkloadError(Reason.InvalidArguments, str(error), EXIT_USAGE) from None
