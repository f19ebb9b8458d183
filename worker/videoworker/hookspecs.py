"""Every hook a videoworker plugin can implement. This module is the plugin API's contract.

Plugins are found through the entry-point group ``videoworker`` (the built-ins too) and
implement hooks with :data:`videoworker.hookimpl`. Rules that hold for every hook:

* An implementation may take fewer arguments than the spec lists (pluggy's opt-in
  arguments), so new arguments are added without breaking plugins.
* Every hook may be ``async def``: the host awaits each implementation's coroutine.
* Implementations run one at a time in pluggy's order: ``tryfirst`` ones first, then the
  most recently registered, ``trylast`` ones last.
* Wrappers (``wrapper=True``, ``hookwrapper=True``) are refused at registration: the host
  awaits each implementation on its own, and a wrapper could not see inside a coroutine.
* Every type named here is importable from :mod:`videoworker`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from videoworker import (
        Catalogue,
        CostEstimate,
        JobEvent,
        Notification,
        NotifyTarget,
        OutputFile,
        Settings,
        StoredOutput,
        VideoRequest,
    )

NAME = "videoworker"
hookspec = pluggy.HookspecMarker(NAME)


# --- declarations: what a plugin's settings and delivery options look like --------------
@hookspec
def videoworker_settings_model() -> type[BaseModel] | None:
    """Declare the pydantic model of this plugin's ``[plugins.<name>]`` section. Synchronous.

    Called once at start. The host validates the section with it before any plugin starts
    (a wrong key stops the start with ``[plugins.<name>] <key>: <reason>``), ``videoworker
    plugins`` reports whether it is valid, and ``videoworker config`` redacts its fields typed
    ``SecretStr``. Read the parsed section in any hook with :func:`videoworker.plugin_settings`.

    :return: a pydantic model class (``extra="forbid"`` recommended), or None.
    """


@hookspec
def videoworker_delivery_model() -> type[BaseModel] | None:
    """Declare the pydantic model of the ``delivery.<name>`` options a request may give this plugin. Synchronous.

    Called once at start. Each request's options are validated with it at intake (a wrong
    value refuses the request with ``invalid_request`` naming ``delivery.<name>.<key>``), and
    ``videoworker schema`` publishes its JSON Schema. Read them with
    :func:`videoworker.delivery_options`.

    :return: a pydantic model class, or None.
    """


# --- request validation: before any money is spent -------------------------------------
@hookspec
def videoworker_validate_request(
    request: VideoRequest, catalogue: Catalogue, settings: Settings
) -> Awaitable[None] | None:
    """Check a parsed request before it is claimed and submitted. May be ``async def``.

    Called once per delivery of a well-formed request, before the ledger sees it, so a
    budget check or a moderation call may do I/O here. The built-in ``capabilities``
    check runs first (``tryfirst``).

    :param request: the request as the producer sent it, already type-checked.
    :param catalogue: the video models OpenRouter advertises (cached); ``catalogue.available``
        is False when the list could not be fetched and documented defaults apply.
    :param settings: the daemon's settings; ``settings.plugins.get("<name>", {})`` is this
        plugin's ``[plugins.<name>]`` section.
    :raises videoworker.InvalidRequest: to refuse the request; it gets a failed event with the
        error's ``code`` and is dead-lettered, and later validators do not run. Any other
        exception is a plugin bug: the delivery is retried and finally dead-lettered by the broker.
    """


@hookspec
def videoworker_cost_estimate(
    request: VideoRequest, catalogue: Catalogue, settings: Settings
) -> Awaitable[CostEstimate | None] | CostEstimate | None:
    """Estimate what submitting ``request`` will cost, and name the daily limit it must fit. May be ``async def``.

    Called just before each submit. The engine reserves the largest estimate any plugin
    gives against the smallest daily limit, atomically with the ``submitting`` record, so
    the limit holds across instances; it settles the reservation with the provider's real
    cost when the job ends, and releases it when the provider certainly never took the
    job. The built-in ``budget`` plugin implements it from ``[plugins.budget]``.

    :param request: the request about to be submitted.
    :param catalogue: the video models and their ``pricing_skus``.
    :param settings: the daemon's settings.
    :return: a :class:`videoworker.CostEstimate`, or None to say nothing.
    """


# --- storage: where the video goes ------------------------------------------------------
@hookspec
def videoworker_store_output(
    request: VideoRequest, output: OutputFile, settings: Settings
) -> Awaitable[StoredOutput | None] | StoredOutput | None:
    """Store one downloaded output. May be ``async def``. Every storage plugin runs.

    Called once per output of a completed job, possibly again after a crash or a failed
    attempt, so writing must be idempotent (same key, same bytes). The first location
    returned (in call order: ``tryfirst`` first) becomes the event's ``outputs[i].location``.

    :param request: the request; ``request.delivery.get("<plugin name>")`` holds the
        producer's instructions for this plugin.
    :param output: the verified file (``path``, ``bytes``, ``sha256``, ``index``); do not
        move or delete it.
    :param settings: the daemon's settings; ``settings.plugins.get("<name>", {})`` holds this
        plugin's own section.
    :return: a :class:`videoworker.StoredOutput` naming where it went, or None to pass.
    :raises Exception: the host retries the whole storage step with backoff for
        ``storage_retry_seconds``, then fails the job with ``storage_failed``.
    """


# --- job events: notifiers and observers ----------------------------------------------
@hookspec
def videoworker_job_event(event: JobEvent, settings: Settings) -> Awaitable[None] | None:
    """Observe a job's status change (submitted, in_progress, completed, failed). May be ``async def``.

    Called once per plugin on the instance that made the change, isolated: an exception
    or a hang (``observer_timeout``, 30 s) is logged and counted under
    ``videoworker_plugin_errors_total`` and never fails the job. Best effort: a crash
    between the change and the call loses the call.

    :param event: the result event as published to the broker (a :class:`videoworker.JobEvent`),
        plus the request's ``delivery`` instructions.
    :param settings: the daemon's settings.
    """


# --- notifications: durable, at least once --------------------------------------------
@hookspec
def videoworker_notification_targets(
    event: JobEvent, settings: Settings
) -> Awaitable[list[NotifyTarget]] | list[NotifyTarget] | None:
    """Name the receivers this plugin owes ``event`` to. May be ``async def``, but should not do I/O.

    Called once per plugin for every status change, just before the change is recorded:
    each target becomes a row in the ledger in the same transaction as the change, so a
    crash can delay a notification but never lose it. Return [] (or None) for none.

    :param event: the status change (``event.delivery`` holds the request's per-plugin options).
    :param settings: the daemon's settings.
    :return: the :class:`videoworker.NotifyTarget` list.
    """


@hookspec
def videoworker_notify(notification: Notification, settings: Settings) -> Awaitable[None] | None:
    """Deliver one owed notification to one target. May be ``async def``.

    Called for this plugin's own targets only, from the ledger-backed queue, at least once:
    after a crash or a lost answer the same ``notification.id`` may come again. Deliveries to
    one target run in order per request, under ``notify_concurrency``, within
    ``notify_timeout`` seconds each, and never delay a job.

    :param notification: the event, the target, a stable id and the attempt number.
    :param settings: the daemon's settings.
    :raises videoworker.NotifyError: with ``retryable=False`` to give up on this delivery (it is
        marked dead and can be replayed); otherwise, or on any other exception, the delivery
        is retried with exponential backoff and jitter, no sooner than ``retry_after``, for up
        to ``notify_retry_hours``.
    """


# --- lifecycle ------------------------------------------------------------------------
@hookspec
def videoworker_startup(settings: Settings) -> Awaitable[None] | None:
    """Open clients or check configuration before the daemon takes work. May be ``async def``.

    :param settings: the daemon's settings.
    :raises videoworker.ConfigError: to refuse to start, with a message naming the setting.
    """


@hookspec
def videoworker_shutdown(settings: Settings) -> Awaitable[None] | None:
    """Close what :func:`videoworker_startup` opened. May be ``async def``. Errors are logged.

    Called after intake has stopped and in-flight steps have ended.

    :param settings: the daemon's settings.
    """


__all__ = [
    "NAME",
    "hookspec",
    "videoworker_cost_estimate",
    "videoworker_delivery_model",
    "videoworker_job_event",
    "videoworker_notification_targets",
    "videoworker_notify",
    "videoworker_settings_model",
    "videoworker_shutdown",
    "videoworker_startup",
    "videoworker_store_output",
    "videoworker_validate_request",
]
