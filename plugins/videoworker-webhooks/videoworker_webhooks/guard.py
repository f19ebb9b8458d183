"""The SSRF guard for request-supplied URLs: what may be asked for, and where a delivery may connect.

A producer chooses the URL, so a URL must not lead the worker to its own loopback, its
network or its cloud's metadata service. Two stages:

* :func:`url_refusal` at intake and again before each delivery: request URLs allowed at
  all, https (plain http only for an allowlisted ``host:port``), no userinfo, and no host
  that is obviously internal (``localhost``, a forbidden literal IP).
* :func:`pin` at delivery: resolve the host once, refuse if any address is forbidden, and
  aim the request at the checked address itself, with the name kept in the ``Host`` header
  and the TLS ``sni_hostname``, so a second DNS answer (rebinding) is never consulted and the
  certificate is still checked against the name.

Allowlisted hosts (``request_url_hosts``) skip the address checks: the operator vouches for them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx

from videoworker_webhooks.addresses import parse_literal, refusal
from videoworker_webhooks.config import WebhooksSettings, authority, url_shape_problem

#: ``resolver(host, port)`` → the host's addresses as strings; injectable so tests need no DNS.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

#: The request extension that sends a request through the pool that never reuses connections.
PINNED = "videoworker_webhooks.pinned"


class Refused(Exception):
    """A request URL that must not be delivered to; ``str()`` is the reason, safe to show the producer."""


class Unresolved(Exception):
    """A request URL's host did not resolve now; DNS may answer later."""


@dataclass(frozen=True)
class Target:
    """Where to send one delivery: the URL to connect to, plus the headers and extensions that pin it."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, object] = field(default_factory=dict)


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (``getaddrinfo`` in the loop's executor), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


def default_port(url: httpx.URL) -> int:
    """The port a URL connects to, written or implied by its scheme."""
    return url.port or (443 if url.scheme == "https" else 80)


def allowlisted(url: httpx.URL, config: WebhooksSettings) -> bool:
    """Whether the URL's ``host:port`` is one the operator opened in ``request_url_hosts``."""
    return authority(url, default_port(url)) in config.request_url_hosts


def url_refusal(raw: str, config: WebhooksSettings) -> str | None:
    """Why the request URL ``raw`` may not be used under ``config`` (a sentence part), or None. No I/O."""
    problem = url_shape_problem(raw)
    if problem:
        return problem
    url = httpx.URL(raw)
    if url.userinfo:
        return "must not carry a user name or password"
    if not config.allow_request_urls:
        return "is not accepted: this worker does not deliver to request-supplied webhook URLs"
    if allowlisted(url, config):
        return None
    if url.scheme != "https":
        opened = authority(url, default_port(url))
        return f"must be https (plain http only for hosts in request_url_hosts; {opened} is not)"
    host = url.raw_host.decode("ascii").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return f"must not point at {host}"
    literal = parse_literal(host)
    if literal is not None:
        reason = refusal(literal)
        if reason is not None:
            return f"must not point at {literal}, {reason}"
    return None


async def pin(raw: str, config: WebhooksSettings, resolver: Resolver, timeout: float) -> Target:
    """Check ``raw`` and resolve its host once; return a target aimed at a checked address.

    :raises Refused: the URL or any address its host resolves to is forbidden (never retry).
    :raises Unresolved: the host did not resolve within ``timeout`` or at all (retry later).
    """
    reason = url_refusal(raw, config)
    if reason is not None:
        raise Refused(f"the URL {reason}")
    url = httpx.URL(raw)
    if allowlisted(url, config):
        return Target(url)
    host = url.raw_host.decode("ascii")
    literal = parse_literal(host)
    if literal is not None:
        # checked by url_refusal already; write it canonically so the connection cannot read it differently
        return Target(url.copy_with(host=str(literal)), extensions={PINNED: True})
    try:
        async with asyncio.timeout(timeout):
            addresses = list(await resolver(host, default_port(url)))
    except (OSError, TimeoutError) as exc:
        raise Unresolved(f"{host} did not resolve: {exc or type(exc).__name__}") from None
    if not addresses:
        raise Unresolved(f"{host} resolved to no address")
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            raise Refused(f"{host} resolves to {address}, {reason}")
    checked = str(parse_literal(addresses[0]))
    port = f":{url.port}" if url.port is not None else ""
    return Target(
        url.copy_with(host=checked),
        headers={"host": f"{host}{port}"},
        extensions={"sni_hostname": host, PINNED: True},
    )
