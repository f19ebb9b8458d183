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
    from videoworker import Catalogue, JobEvent, OutputFile, Settings, StoredOutput, VideoRequest

NAME = "videoworker"
hookspec = pluggy.HookspecMarker(NAME)


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
    "videoworker_job_event",
    "videoworker_shutdown",
    "videoworker_startup",
    "videoworker_store_output",
    "videoworker_validate_request",
]
