"""What the plugin holds between ``videoworker_startup`` and ``videoworker_shutdown``, one per daemon.

State is found from the settings object the hooks receive, so several daemons in one process
(tests run many) each get their own HTTP client, secrets and disabled endpoints. Daemons that
share one settings object share one runtime, counted, and the last to shut down closes it.
``Settings`` is not hashable, so the registry is keyed by identity and holds the settings weakly.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field

import httpx
from standardwebhooks import Webhook

from videoworker import ConfigError, Settings
from videoworker_webhooks.config import NAME, REQUEST_URL, WebhooksSettings, load_config, resolve_secret
from videoworker_webhooks.guard import PINNED, Resolver, system_resolver

log = logging.getLogger("videoworker_webhooks")


@dataclass
class Runtime:
    """One daemon's client, signers and resolver, plus the endpoints a 410 has switched off."""

    config: WebhooksSettings
    client: httpx.AsyncClient
    resolver: Resolver
    signers: dict[str, Webhook]
    request_url_signer: Webhook | None
    disabled: set[str] = field(default_factory=set)
    users: int = 1

    def disable(self, name: str) -> None:
        """Stop delivering to endpoint ``name`` until the daemon restarts: it answered 410 Gone."""
        if name not in self.disabled:
            self.disabled.add(name)
            log.error(
                "webhook endpoint %r answered 410 Gone: it is DISABLED until the daemon restarts, and every "
                "notification owed to it is marked dead (replay them once the receiver is back)",
                name,
            )


_RUNTIMES: dict[int, tuple[weakref.ref[Settings], Runtime]] = {}


def find(settings: Settings) -> Runtime | None:
    """The runtime ``videoworker_startup`` opened for these settings, or None (not started, or idle)."""
    found = _RUNTIMES.get(id(settings))
    if found is None or found[0]() is not settings:
        return None
    return found[1]


async def start(
    settings: Settings,
    *,
    resolver: Resolver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Runtime | None:
    """Check secrets and open the HTTP client for a daemon; None when there is nothing to notify.

    ``resolver`` and ``transport`` replace the system resolver and the network (for tests).
    A second start with the same settings object joins the first runtime and ignores them.

    :raises videoworker.ConfigError: a wrong setting, or an endpoint (or allowed request URLs)
        without a secret in the config or in ``$CREDENTIALS_DIRECTORY``.
    """
    config = load_config(settings)
    if not config.active:
        return None
    existing = find(settings)
    if existing is not None:
        existing.users += 1
        return existing
    signers, request_url_signer = await asyncio.to_thread(_signers, config)
    client = httpx.AsyncClient(
        transport=transport or _Transport(),
        follow_redirects=False,
        trust_env=False,  # a proxy from the environment would resolve the host again, behind the guard's back
        timeout=config.timeout,
    )
    runtime = Runtime(config, client, resolver or system_resolver, signers, request_url_signer)
    key = id(settings)
    _RUNTIMES[key] = (weakref.ref(settings, lambda _: _RUNTIMES.pop(key, None)), runtime)
    return runtime


async def stop(settings: Settings) -> None:
    """Close the daemon's client once the last daemon sharing these settings stops."""
    runtime = find(settings)
    if runtime is None:
        return
    runtime.users -= 1
    if runtime.users <= 0:
        del _RUNTIMES[id(settings)]
        await runtime.client.aclose()


def _signers(config: WebhooksSettings) -> tuple[dict[str, Webhook], Webhook | None]:
    signers: dict[str, Webhook] = {}
    for index, endpoint in enumerate(config.endpoints):
        where = f"endpoints.{index}.secret"
        secret = resolve_secret(endpoint.secret, f"{NAME}_{endpoint.name}_secret", where)
        if secret is None:
            raise ConfigError(
                f"[plugins.{NAME}] {where}: endpoint {endpoint.name!r} has no secret: set it, or provide "
                f"$CREDENTIALS_DIRECTORY/{NAME}_{endpoint.name}_secret"
            )
        signers[endpoint.name] = Webhook(secret)
    if not config.allow_request_urls:
        return signers, None
    secret = resolve_secret(config.request_url_secret, f"{NAME}_{REQUEST_URL}_secret", "request_url_secret")
    if secret is None:
        raise ConfigError(
            f"[plugins.{NAME}] request_url_secret: allow_request_urls is true, so request URLs need a secret to "
            f"sign with: set it, or provide $CREDENTIALS_DIRECTORY/{NAME}_{REQUEST_URL}_secret"
        )
    return signers, Webhook(secret)


class _Transport(httpx.AsyncBaseTransport):
    """Two connection pools behind one client: pooled for operator endpoints, never reused for pinned requests.

    A pinned connection was made to an IP and verified for one request's host name; reusing it
    for another request to the same IP would skip that other name's certificate check.
    """

    def __init__(self) -> None:
        self._trusted = httpx.AsyncHTTPTransport()
        self._pinned = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self._pinned if request.extensions.get(PINNED) else self._trusted
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        await self._trusted.aclose()
        await self._pinned.aclose()
