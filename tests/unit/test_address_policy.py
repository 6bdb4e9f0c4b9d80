"""Which addresses an HTTP source may reach: checked without connecting anywhere."""

from __future__ import annotations

import ipaddress

import pytest

from modelyard.workloads.ingest.address_policy import ALLOWED_ENV, DENIED_ENV, AddressPolicy

DEFAULT = AddressPolicy()


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("127.0.0.1", "loopback"),
        ("127.5.6.7", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("100.64.0.1", "shared"),
        ("100.127.255.254", "shared"),
        ("255.255.255.255", "reserved"),  # broadcast
        ("240.0.0.1", "reserved"),
        ("10.0.0.1", "private"),
        ("10.96.0.1", "private"),  # a typical service CIDR
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        # IPv6 forms that reach an IPv4 host are judged as that host.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.1.2.3", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_refused_by_default(address: str, category: str) -> None:
    refusal = DEFAULT.refusal(ipaddress.ip_address(address))
    assert refusal is not None and refusal.startswith(f"a {category}"), refusal


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "2606:4700::6810:84e5", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_pass(address: str) -> None:
    assert DEFAULT.refusal(ipaddress.ip_address(address)) is None


def test_allow_list_opens_only_its_networks() -> None:
    policy = AddressPolicy.from_env({ALLOWED_ENV: " 10.244.0.0/16, 192.168.0.5/32 ,"})
    assert policy.refusal(ipaddress.ip_address("10.244.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("192.168.0.5")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:10.244.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("192.168.0.6")) == "a private address"
    assert policy.refusal(ipaddress.ip_address("10.245.0.1")) == "a private address"
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) == "a loopback address"


def test_deny_list_closes_public_looking_cluster_networks() -> None:
    policy = AddressPolicy.from_env({DENIED_ENV: "34.118.224.0/20"})
    refusal = policy.refusal(ipaddress.ip_address("34.118.224.10"))
    assert refusal == f"in 34.118.224.0/20, a network {DENIED_ENV} denies"
    assert policy.refusal(ipaddress.ip_address("34.118.240.1")) is None


def test_the_most_specific_entry_decides() -> None:
    policy = AddressPolicy.from_env(
        {
            ALLOWED_ENV: "10.0.0.0/8,34.118.224.10/32,100.64.0.0/10",
            DENIED_ENV: "10.96.0.0/12,34.118.224.0/20,100.64.0.0/10",
        }
    )
    assert policy.refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert policy.refusal(ipaddress.ip_address("10.96.0.1")) is not None
    assert policy.refusal(ipaddress.ip_address("34.118.224.10")) is None
    assert policy.refusal(ipaddress.ip_address("34.118.224.11")) is not None
    assert policy.refusal(ipaddress.ip_address("100.64.0.1")) is not None, "a tie refuses"


def test_host_bits_and_bare_addresses_are_accepted() -> None:
    policy = AddressPolicy.from_env({ALLOWED_ENV: "10.244.0.1/16,192.168.0.5,fd00::/8"})
    assert [str(n) for n in policy.allowed] == ["10.244.0.0/16", "192.168.0.5/32", "fd00::/8"]


@pytest.mark.parametrize("variable", [ALLOWED_ENV, DENIED_ENV])
def test_a_malformed_entry_is_named(variable: str) -> None:
    with pytest.raises(ValueError, match=rf"{variable}: '10\.0\.0\.0/33' is not a network"):
        AddressPolicy.from_env({variable: "10.244.0.0/16,10.0.0.0/33"})
