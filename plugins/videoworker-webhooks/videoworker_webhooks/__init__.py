"""videoworker-webhooks: POST each job event, signed as a Standard Webhook, to HTTP receivers.

Receivers are the operator's endpoints (``[plugins.webhooks] endpoints``) and, when the
operator allows it, a URL the request itself gives in ``delivery.webhooks.url``. The plugin
names the receivers an event is owed to (``videoworker_notification_targets``); the host
records them with the status change and calls ``videoworker_notify`` until each is
delivered, at least once, under one stable ``webhook-id``. Request URLs pass an SSRF guard
(:mod:`videoworker_webhooks.guard`) and are connected to by the address that was checked.
"""

from __future__ import annotations

import hashlib
import logging

import httpx
from pydantic import BaseModel

import videoworker
from videoworker import (
    InvalidRequest,
    JobEvent,
    Notification,
    NotifyError,
    NotifyTarget,
    Settings,
    VideoRequest,
    delivery_options,
    hookimpl,
)
from videoworker_webhooks import runtime as runtimes
from videoworker_webhooks.config import NAME, DeliveryOptions, WebhooksSettings, load_config
from videoworker_webhooks.guard import Refused, Resolver, Target, Unresolved, pin, url_refusal
from videoworker_webhooks.runtime import Runtime
from videoworker_webhooks.send import Answer, body_of, judge, post, signed_headers

__version__ = "0.1.0"
USER_AGENT = f"videoworker-webhooks/{__version__} (videoworker/{videoworker.__version__})"

__all__ = [
    "NAME",
    "USER_AGENT",
    "DeliveryOptions",
    "Resolver",
    "Runtime",
    "WebhooksSettings",
    "__version__",
    "start",
]

log = logging.getLogger("videoworker_webhooks")

#: Starts a daemon's runtime; tests call it directly to inject a resolver or a transport.
start = runtimes.start


@hookimpl
def videoworker_settings_model() -> type[BaseModel]:
    """Declare ``[plugins.webhooks]`` so the host validates it at start and redacts its secrets."""
    return WebhooksSettings


@hookimpl
def videoworker_delivery_model() -> type[BaseModel]:
    """Declare ``delivery.webhooks`` so the host refuses a malformed one at intake, naming the field."""
    return DeliveryOptions


@hookimpl
async def videoworker_startup(settings: Settings) -> None:
    """Refuse to start without every secret, and open this daemon's HTTP client (only if there is work)."""
    await runtimes.start(settings)


@hookimpl
async def videoworker_shutdown(settings: Settings) -> None:
    """Close the HTTP client the startup opened."""
    await runtimes.stop(settings)


@hookimpl
def videoworker_validate_request(request: VideoRequest, settings: Settings) -> None:
    """Refuse a request URL the operator's policy forbids, before anything is paid for.

    The delivery model checks the URL's shape; only here are the settings at hand to say
    whether request URLs are allowed, which hosts may be plain http, and which statuses.
    """
    if NAME not in (request.delivery or {}):
        return
    options = delivery_options(request.delivery, NAME, DeliveryOptions)
    config = load_config(settings)
    reason = url_refusal(options.url, config)
    if reason is not None:
        raise InvalidRequest(f"delivery.{NAME}.url {reason}", field=f"delivery.{NAME}.url")
    beyond = sorted(set(options.statuses or ()) - set(config.request_url_statuses))
    if beyond:
        raise InvalidRequest(
            f"delivery.{NAME}.statuses: this worker sends request URLs only {list(config.request_url_statuses)}, "
            f"not {beyond}",
            field=f"delivery.{NAME}.statuses",
        )


@hookimpl
def videoworker_notification_targets(event: JobEvent, settings: Settings) -> list[NotifyTarget]:
    """Name every receiver owed ``event``: endpoints that want its status, and the request's own URL. No I/O."""
    config = load_config(settings)
    targets = [
        NotifyTarget(key=f"endpoint:{endpoint.name}", data={"endpoint": endpoint.name})
        for endpoint in config.endpoints
        if event.status in endpoint.statuses
    ]
    url = _request_url(event, config)
    if url is not None:
        targets.append(NotifyTarget(key="url:" + hashlib.sha256(url.encode()).hexdigest()[:16], data={"url": url}))
    return targets


@hookimpl
async def videoworker_notify(notification: Notification, settings: Settings) -> None:
    """Deliver one event to one receiver; return when it answered 2xx.

    :raises videoworker.NotifyError: ``retryable=False`` for a receiver that is gone (410), disabled,
        no longer configured, or refused by the SSRF guard; otherwise retryable, with
        ``retry_after`` from a 429 or 503.
    """
    runtime = runtimes.find(settings)
    if runtime is None:
        raise NotifyError("the webhooks plugin has not started in this process (videoworker_startup was not called)")
    data = notification.target.data
    body = body_of(notification.event.payload)
    if "endpoint" in data:
        await _to_endpoint(runtime, notification, str(data["endpoint"]), body)
    elif "url" in data:
        await _to_request_url(runtime, notification, str(data["url"]), body)
    else:
        raise NotifyError(f"target {notification.target.key!r} names no endpoint and no URL", retryable=False)


def _request_url(event: JobEvent, config: WebhooksSettings) -> str | None:
    if not config.allow_request_urls or NAME not in event.delivery:
        return None
    try:
        options = delivery_options(event.delivery, NAME, DeliveryOptions)
    except InvalidRequest:
        return None  # refused at intake: this is the refusal's own failed event
    if url_refusal(options.url, config) is not None:
        return None
    wanted = options.statuses or config.request_url_statuses
    if event.status in wanted and event.status in config.request_url_statuses:
        return options.url
    return None


async def _to_endpoint(runtime: Runtime, notification: Notification, name: str, body: str) -> None:
    label = f"endpoint {name!r}"
    endpoint = runtime.config.endpoint(name)
    if endpoint is None:
        raise NotifyError(f"{label} is no longer configured", retryable=False)
    if name in runtime.disabled:
        raise NotifyError(
            f"{label} is disabled: it answered 410 Gone; restart the daemon to enable it", retryable=False
        )
    headers = signed_headers(runtime.signers[name], notification.id, body, USER_AGENT)
    answer = await _post(runtime, Target(httpx.URL(endpoint.url)), body, headers, label)
    if answer.status == 410:
        runtime.disable(name)
        raise NotifyError(f"{label} answered 410 Gone: disabled until the daemon restarts", retryable=False)
    judge(answer, label)


async def _to_request_url(runtime: Runtime, notification: Notification, url: str, body: str) -> None:
    label = f"request URL {_origin(url)}"
    if runtime.request_url_signer is None:
        raise NotifyError(f"{label}: this worker does not deliver to request URLs", retryable=False)
    try:
        target = await pin(url, runtime.config, runtime.resolver, runtime.config.timeout)
    except Refused as exc:
        log.warning("refused to deliver request %s to %s: %s", notification.event.request_id, label, exc)
        raise NotifyError(f"{label} refused: {exc}", retryable=False) from None
    except Unresolved as exc:
        raise NotifyError(f"{label}: {exc}") from None
    headers = signed_headers(runtime.request_url_signer, notification.id, body, USER_AGENT)
    answer = await _post(runtime, target, body, headers, label)
    if answer.status == 410:
        raise NotifyError(f"{label} answered 410 Gone", retryable=False)
    judge(answer, label)


async def _post(runtime: Runtime, target: Target, body: str, headers: dict[str, str], label: str) -> Answer:
    config = runtime.config
    return await post(
        runtime.client,
        target,
        body,
        headers,
        label=label,
        timeout=config.timeout,
        max_response_bytes=config.max_response_bytes,
    )


def _origin(url: str) -> str:
    # the path and query may hold the producer's capability token: name only where the URL points
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "(invalid)"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{host}{port}"
