"""The SSRF guard: which addresses are refused, that refused URLs send nothing, and that connections are pinned."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trustme
import videoworker_webhooks as webhooks
from videoworker_webhooks.addresses import parse_literal, refusal
from videoworker_webhooks.guard import PINNED
from webhooks_support import (
    REQUEST_URL_SECRET,
    FakeResolver,
    HangingResolver,
    Receiver,
    RecordingTransport,
    RedirectingTransport,
    Sentinel,
    notification,
)

from videoworker import NotifyError, NotifyTarget, Settings

Daemon = Callable[..., Awaitable[Settings]]
Receivers = Callable[..., Awaitable[Receiver]]
OPEN = {"allow_request_urls": True, "request_url_secret": REQUEST_URL_SECRET, "timeout": 5}
PUBLIC = "93.184.216.34"


def to(url: str) -> NotifyTarget:
    return NotifyTarget(key="url:test", data={"url": url})


async def refused(settings: Settings, url: str) -> NotifyError:
    with pytest.raises(NotifyError) as info:
        await webhooks.videoworker_notify(notification(to(url)), settings)
    return info.value


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved 240/4: Python files it under private too
        ("255.255.255.255", "private"),
        ("192.0.2.1", "private"),  # documentation ranges are not routable
        ("198.18.0.1", "private"),
        ("fec0::1", "site-local"),
        ("2001:db8::1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("100.100.100.200", "metadata"),
        ("168.63.129.16", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:127.0.0.1", "loopback address (127.0.0.1, carried in IPv6"),
        ("::ffff:7f00:1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:100.64.0.1", "CGNAT"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible (deprecated, still routable by some stacks)
        ("::169.254.169.254", "metadata"),
        ("::ffff:0:127.0.0.1", "loopback"),  # IPv4-translated (SIIT)
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 well-known prefix
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("2002:7f00:1::", "loopback"),  # 6to4 carrying 127.0.0.1
        ("2002:a9fe:a9fe::1", "metadata"),
        ("not-an-ip", "not an IP address"),
    ],
)
def test_the_checker_refuses_internal_addresses(address: str, reason: str) -> None:
    """Every loopback, private, link-local, CGNAT, multicast, reserved or metadata form is refused with its reason."""
    found = refusal(address)
    assert found is not None and reason in found, (address, found)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_the_checker_lets_public_addresses_through(address: str) -> None:
    """Public unicast addresses, also carried in mapped, NAT64 or 6to4 IPv6 forms, are allowed."""
    assert refusal(address) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("[::1]", "::1"),
        ("hooks.example.com", None),
        ("cafe.be", None),
        ("deadbeef", None),
    ],
)
def test_numeric_host_forms_are_read_as_the_resolver_would(host: str, address: str | None) -> None:
    """Legacy numeric IPv4 spellings are literals, not names, so they are checked without DNS."""
    found = parse_literal(host)
    assert (None if found is None else str(found)) == address


@pytest.mark.parametrize(
    ("url", "table", "reason"),
    [
        ("https://localhost:{port}/", {}, "localhost"),
        ("https://127.0.0.1:{port}/", {}, "loopback"),
        ("https://[::ffff:127.0.0.1]:{port}/", {}, "loopback"),
        ("https://2130706433:{port}/", {}, "loopback"),
        ("https://evil.test:{port}/", {"evil.test": [["127.0.0.1"]]}, "evil.test resolves to 127.0.0.1, a loopback"),
        ("https://evil.test:{port}/", {"evil.test": [[PUBLIC, "127.0.0.1"]]}, "resolves to 127.0.0.1"),
        ("https://evil.test:{port}/", {"evil.test": [["::ffff:127.0.0.1"]]}, "loopback"),
        ("https://evil.test:{port}/", {"evil.test": [["::1", PUBLIC]]}, "loopback"),
        ("http://evil.test:{port}/", {"evil.test": [[PUBLIC]]}, "must be https"),
        ("https://user:pw@evil.test:{port}/", {"evil.test": [[PUBLIC]]}, "user name or password"),
    ],
)
async def test_a_refused_request_url_never_reaches_the_sentinel(
    daemon: Daemon, sentinel: Sentinel, url: str, table: dict[str, Any], reason: str
) -> None:
    """URLs leading to 127.0.0.1 are refused for good before any connection: the sentinel sees none."""
    settings = await daemon({**OPEN, "request_url_hosts": ["127.0.0.1:1"]}, resolver=FakeResolver(table))
    error = await refused(settings, url.format(port=sentinel.port))
    assert not error.retryable and "refused" in error.message and reason in error.message, error.message
    assert await sentinel.connections_before_ours() == 0


@pytest.mark.parametrize("answer", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "100.100.100.200"])
async def test_names_resolving_to_metadata_services_are_refused(daemon: Daemon, answer: str) -> None:
    """A host name whose address is a cloud metadata service is refused, and nothing is sent."""
    transport = RecordingTransport()
    settings = await daemon(OPEN, resolver=FakeResolver({"meta.test": [[answer]]}), transport=transport)
    error = await refused(settings, "https://meta.test/latest/meta-data/")
    assert not error.retryable and "metadata" in error.message and transport.requests == []


async def test_the_connection_goes_to_the_checked_address_not_a_second_answer(daemon: Daemon) -> None:
    """DNS rebinding: the host is resolved once, and the request is aimed at that address with the name for TLS."""
    resolver = FakeResolver({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    transport = RecordingTransport()
    settings = await daemon(OPEN, resolver=resolver, transport=transport)
    await webhooks.videoworker_notify(notification(to("https://rebind.test/hook?x=1")), settings)
    [sent] = transport.requests
    assert str(sent.url) == f"https://{PUBLIC}/hook?x=1"
    assert sent.headers["host"] == "rebind.test"
    assert sent.extensions["sni_hostname"] == "rebind.test" and sent.extensions[PINNED]
    assert resolver.questions == [("rebind.test", 443)]
    # the next attempt checks afresh, and this time the answer is refused before anything is sent
    error = await refused(settings, "https://rebind.test/hook?x=1")
    assert not error.retryable and len(transport.requests) == 1


async def test_a_pinned_request_keeps_the_port_and_brackets_ipv6(daemon: Daemon) -> None:
    """A non-default port stays in the URL and the Host header; an IPv6 answer is written in brackets."""
    transport = RecordingTransport()
    resolver = FakeResolver({"v6.test": [["2606:4700:4700::1111"]]})
    settings = await daemon(OPEN, resolver=resolver, transport=transport)
    await webhooks.videoworker_notify(notification(to("https://v6.test:8443/h")), settings)
    [sent] = transport.requests
    assert str(sent.url) == "https://[2606:4700:4700::1111]:8443/h" and sent.headers["host"] == "v6.test:8443"
    assert resolver.questions == [("v6.test", 8443)]


async def test_a_public_literal_address_is_sent_to_without_dns(daemon: Daemon) -> None:
    """A URL written with a public IP needs no resolution and no SNI."""
    resolver, transport = FakeResolver({}), RecordingTransport()
    settings = await daemon(OPEN, resolver=resolver, transport=transport)
    await webhooks.videoworker_notify(notification(to(f"https://{PUBLIC}/h")), settings)
    assert resolver.questions == [] and str(transport.requests[0].url) == f"https://{PUBLIC}/h"
    assert "sni_hostname" not in transport.requests[0].extensions


@pytest.mark.parametrize(("resolver", "words"), [(FakeResolver({}), "no such host"), (HangingResolver(), "resolve")])
async def test_a_name_that_does_not_resolve_is_retried(daemon: Daemon, resolver: Any, words: str) -> None:
    """No answer from DNS, or none in time, may be temporary: the delivery is retried."""
    transport = RecordingTransport()
    settings = await daemon({**OPEN, "timeout": 0.2}, resolver=resolver, transport=transport)
    error = await refused(settings, "https://gone.test/")
    assert error.retryable and words in error.message and transport.requests == []


async def test_the_system_resolver_is_used_by_default(daemon: Daemon, sentinel: Sentinel) -> None:
    """Without an injected resolver, getaddrinfo answers, and a name for 127.0.0.1 is refused."""
    settings = await daemon(OPEN)
    error = await refused(settings, f"https://localhost.:{sentinel.port}/")
    assert not error.retryable and await sentinel.connections_before_ours() == 0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server(ca: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


async def test_a_pinned_tls_connection_verifies_the_name_at_the_checked_address(
    daemon: Daemon, receivers: Receivers, ca: trustme.CA
) -> None:
    """Over real TLS, the socket goes to the checked IP while SNI, certificate check and Host use the name."""
    receiver = await receivers(secret=REQUEST_URL_SECRET, ssl_context=tls_server(ca, "hooks.test"))
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    transport = RedirectingTransport(receiver.port, client_tls)
    resolver = FakeResolver({"hooks.test": [[PUBLIC], ["127.0.0.1"]]})
    settings = await daemon(OPEN, resolver=resolver, transport=transport)
    await webhooks.videoworker_notify(notification(to("https://hooks.test/hook?token=t")), settings)
    [got] = receiver.verified
    assert transport.backend.asked == [(PUBLIC, 443)]
    assert got.headers["Host"] == "hooks.test" and got.path_qs == "/hook?token=t"


async def test_a_pinned_tls_connection_refuses_a_certificate_for_another_name(
    daemon: Daemon, receivers: Receivers, ca: trustme.CA
) -> None:
    """The certificate must match the URL's name, not the address we connected to: a mismatch is not delivered."""
    receiver = await receivers(secret=REQUEST_URL_SECRET, ssl_context=tls_server(ca, "other.test"))
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    transport = RedirectingTransport(receiver.port, client_tls)
    settings = await daemon(OPEN, resolver=FakeResolver({"hooks.test": [[PUBLIC]]}), transport=transport)
    error = await refused(settings, "https://hooks.test/hook")
    assert error.retryable and "CERTIFICATE_VERIFY_FAILED" in error.message and receiver.deliveries == []
