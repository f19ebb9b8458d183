"""videoworker-slack: post a Block Kit message to a Slack incoming webhook when a job completes or fails.

A notifier plugin: for each status change it names one target (the webhook) when the
status is one to post, and the host's ledger-backed queue calls ``videoworker_notify``
until Slack took the message, honouring ``NotifyError.retry_after`` and giving up on
``retryable=False``. Settings, in ``[plugins.slack]`` (see :class:`SlackSettings`):

``webhook_url``
    The incoming-webhook URL, a secret; else read from ``$CREDENTIALS_DIRECTORY/slack_webhook_url``.
    Without one the plugin owes nothing.
``statuses``
    The statuses posted, default ``["completed", "failed"]``.
``channel``, ``username``
    Overrides honoured by legacy webhooks.
``timeout``
    Seconds one post may take (default 10).
``prompt_chars``, ``metadata_keys``
    How much of the prompt to show (default 300 characters, 0 for none) and which metadata keys (none).
"""

from __future__ import annotations

import structlog
from pydantic import BaseModel

from videoworker import JobEvent, Notification, NotifyError, NotifyTarget, Settings, hookimpl
from videoworker_slack.client import close_client, open_client, post
from videoworker_slack.message import build_message
from videoworker_slack.settings import NAME, SlackSettings, load_settings

__version__ = "0.1.0"

#: The one target this plugin names: the configured webhook (its URL stays in the settings, not the ledger).
TARGET_KEY = "webhook"

__all__ = ["NAME", "TARGET_KEY", "SlackSettings", "__version__", "build_message", "load_settings"]


@hookimpl
def videoworker_settings_model() -> type[BaseModel]:
    """Declare the ``[plugins.slack]`` model, so the host checks it at start and redacts the webhook URL."""
    return SlackSettings


@hookimpl
async def videoworker_startup(settings: Settings) -> None:
    """Refuse to start on a wrong setting, and open this daemon's client when a webhook is configured."""
    config = load_settings(settings)
    if config.webhook_url is not None:
        await open_client(settings, config)


@hookimpl
async def videoworker_shutdown(settings: Settings) -> None:
    """Close the client :func:`videoworker_startup` opened for this daemon."""
    await close_client(settings)


@hookimpl
def videoworker_notification_targets(event: JobEvent, settings: Settings) -> list[NotifyTarget]:
    """Owe ``event`` to the webhook when one is configured and the status is one to post; no I/O."""
    config = load_settings(settings)
    if config.webhook_url is None or event.status not in config.statuses:
        return []
    return [NotifyTarget(key=TARGET_KEY, data={})]


@hookimpl
async def videoworker_notify(notification: Notification, settings: Settings) -> None:
    """Post the message for ``notification`` once; a :class:`~videoworker.NotifyError` says whether to retry."""
    config = load_settings(settings)
    if config.webhook_url is None:
        # recorded while a webhook was configured; without one it cannot be delivered until replayed
        raise NotifyError(f"[plugins.{NAME}] webhook_url is not set", retryable=False)
    if notification.target.key != TARGET_KEY:
        raise NotifyError(f"unknown Slack target {notification.target.key[:100]!r}", retryable=False)
    log = structlog.get_logger("videoworker_slack").bind(
        request_id=notification.event.request_id,
        status=notification.event.status,
        notification_id=notification.id,
        attempt=notification.attempt,
    )
    # failures are the host's to log (with the NotifyError's message), once per attempt
    await post(settings, config, build_message(notification, config))
    log.debug("slack notification delivered")
