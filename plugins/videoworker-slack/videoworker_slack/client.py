"""Posting to the webhook: one client per daemon, and Slack's answers turned into ``NotifyError``.

The plugin module is shared by every daemon in a process, so the open client is kept
per settings object and per event loop (an aiohttp session belongs to the loop that
made it). ``videoworker_startup`` opens it and ``videoworker_shutdown`` closes it; a
daemon that shares its settings object with another shares the session too, and it
closes with the last one. A post without an open client (a hook called directly, or
after shutdown) uses a session of its own for that one post.

The webhook URL is the secret: the SDK gets a logger that never writes (it would log
the URL at debug level), and no exception raised here carries the URL or is chained
to one that might.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from slack_sdk.webhook.async_client import AsyncWebhookClient
from slack_sdk.webhook.webhook_response import WebhookResponse

from videoworker import NotifyError, Settings
from videoworker_slack.per_settings import PerSettings
from videoworker_slack.settings import SlackSettings

#: The longest pause a 429 may ask for that is honoured; Slack asks for seconds, a broken proxy may ask for days.
MAX_RETRY_AFTER = 300.0
#: Answers meaning the webhook, its channel or its workspace is gone: retrying cannot help.
GONE = frozenset(
    {
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "no_active_hooks",
        "invalid_token",
        "channel_not_found",
        "channel_is_archived",
        "action_prohibited",
        "posting_to_general_channel_denied",
        "user_not_found",
    }
)
_CODE = re.compile(r"[a-z0-9_]{1,64}")

# Not attached to the logging tree, and above CRITICAL: the SDK's debug lines include the URL.
_SILENT = logging.Logger("videoworker_slack.sdk", level=logging.CRITICAL + 1)
_SILENT.disabled = True
_SILENT.propagate = False


@dataclass
class _Open:
    session: aiohttp.ClientSession
    client: AsyncWebhookClient
    users: int = 1


_OPEN: PerSettings[dict[asyncio.AbstractEventLoop, _Open]] = PerSettings()


async def open_client(settings: Settings, config: SlackSettings) -> None:
    """Open this daemon's client (in ``videoworker_startup``), or count one more user of an open one."""
    opened = _OPEN.setdefault(settings, dict)
    loop = asyncio.get_running_loop()
    found = opened.get(loop)
    if found is not None and not found.session.closed:
        found.users += 1
        return
    session, client = _make_client(config)
    opened[loop] = _Open(session, client)


async def close_client(settings: Settings) -> None:
    """Close this daemon's client (in ``videoworker_shutdown``) once its last user is done; a no-op if none is open."""
    opened = _OPEN.get(settings)
    loop = asyncio.get_running_loop()
    found = opened.get(loop) if opened is not None else None
    if opened is None or found is None:
        return
    found.users -= 1
    if found.users <= 0:
        del opened[loop]
        await found.session.close()


async def post(settings: Settings, config: SlackSettings, payload: dict[str, Any]) -> None:
    """Post ``payload`` once; return when Slack answered ``ok``, else raise :class:`~videoworker.NotifyError`."""
    opened = _OPEN.get(settings)
    found = opened.get(asyncio.get_running_loop()) if opened is not None else None
    if found is not None and not found.session.closed:
        response = await _send(found.client, config, payload)
    else:
        session, client = _make_client(config)
        try:
            response = await _send(client, config, payload)
        finally:
            await session.close()
    check_answer(response.status_code, response.body, response.headers)


def check_answer(status: int, body: str | None, headers: Mapping[str, Any]) -> None:
    """Return if Slack took the message (200 ``ok``); otherwise raise a ``NotifyError`` saying what to do next.

    429 waits ``Retry-After`` (at most :data:`MAX_RETRY_AFTER`); 404, 410 and answers in
    :data:`GONE` give up (the webhook is gone); other 4xx give up too (the same message
    would be refused again); 5xx and anything unexpected are retried.
    """
    text = (body or "").strip()
    if status == 200 and text == "ok":
        return
    code = text if _CODE.fullmatch(text) else None
    said = f"HTTP {status}" + (f", {code}" if code else "")
    if status == 429:
        wait = retry_after(_header(headers, "Retry-After"))
        when = f"retry in {wait:g} s" if wait is not None else "no Retry-After given"
        raise NotifyError(f"Slack rate-limited the webhook ({said}); {when}", retry_after=wait)
    if status in (404, 410) or code in GONE:
        raise NotifyError(
            f"the Slack webhook is gone or may not post ({said}); fix [plugins.slack] webhook_url, then replay",
            retryable=False,
        )
    if 400 <= status < 500 and status != 408:
        raise NotifyError(f"Slack refused the message ({said})", retryable=False)
    if status >= 500:
        raise NotifyError(f"Slack could not take the message now ({said})")
    raise NotifyError(f"unexpected answer from the Slack webhook ({said})")


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or an HTTP date), capped; None if there is none."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _make_client(config: SlackSettings) -> tuple[aiohttp.ClientSession, AsyncWebhookClient]:
    assert config.webhook_url is not None
    # trust_env: aiohttp takes HTTPS_PROXY from the environment and honours NO_PROXY
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.timeout), trust_env=True)
    client = AsyncWebhookClient(
        url=config.webhook_url.get_secret_value(),
        timeout=math.ceil(config.timeout),
        session=session,
        trust_env_in_session=True,
        logger=_SILENT,
    )
    # the SDK copies HTTPS_PROXY into every request itself, ignoring NO_PROXY; leave that to aiohttp
    client.proxy = None
    return session, client


async def _send(client: AsyncWebhookClient, config: SlackSettings, payload: dict[str, Any]) -> WebhookResponse:
    failure: str
    try:
        async with asyncio.timeout(config.timeout):
            return await client.send_dict(payload)
    except TimeoutError:
        failure = f"no answer from the Slack webhook within {config.timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure to post is retryable, and its text may hold the URL
        reason = getattr(exc, "strerror", None)
        detail = f"{type(exc).__name__}: {reason}" if isinstance(reason, str) else type(exc).__name__
        failure = f"could not post to the Slack webhook ({detail})"
    # raised outside the except block, so the original error (which may name the URL) is not its context
    raise NotifyError(failure)


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return str(value)
    return None
