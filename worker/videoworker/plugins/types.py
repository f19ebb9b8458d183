"""The objects hooks receive and return: a downloaded output, where it was stored, a job event, a notification."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class OutputFile:
    """A downloaded, verified video waiting to be stored (bytes counted, sha256, MP4 header checked)."""

    request_id: str
    index: int
    path: Path
    bytes: int
    sha256: str
    content_type: str = "video/mp4"


@dataclass(frozen=True)
class StoredOutput:
    """Where a storage plugin put an output: ``backend`` is its short name, ``location`` a URI.

    ``url`` is an optional link a consumer can fetch the video from (an http(s) or
    presigned URL); the event's ``outputs[i].url`` is the first one the plugins give.
    """

    backend: str
    location: str
    url: str | None = None


FINAL_STATUSES = frozenset({"completed", "failed"})


@dataclass(frozen=True)
class JobEvent:
    """A status change as notifier plugins see it: the published event, plus what the request asked.

    ``payload`` is the event body exactly as published; ``delivery`` the request's
    per-plugin options; ``prompt`` the request's prompt (None when it had none), for
    notifiers that show what was asked for.
    """

    status: str
    request_id: str
    payload: dict[str, Any]
    delivery: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class NotifyTarget:
    """One receiver a notifier plugin owes an event to, as recorded in the ledger.

    ``key`` names the receiver within the plugin (``"endpoint:ops"``, ``"url:3f2a…"``): deliveries
    to one key run in order per request and under one concurrency limit, so a slow receiver
    never holds up another. ``data`` is what the plugin needs to find it again (JSON, stored
    in the ledger: never put a secret here; look secrets up in the settings when delivering).
    """

    key: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notification:
    """One owed delivery, as ``videoworker_notify`` receives it.

    ``id`` is stable across retries, crashes and replays (receivers can drop repeats by it);
    ``attempt`` counts from 1.
    """

    id: str
    event: JobEvent
    target: NotifyTarget
    attempt: int
    created_at: float


@dataclass(frozen=True)
class CostEstimate:
    """What a request is expected to cost before it is submitted, and the spending limit it must fit.

    ``usd`` None means the price is unknown. ``daily_limit_usd``: the engine reserves ``usd``
    against the UTC day's spend in the same ledger transaction as the submit record, and
    refuses the submit (``over_budget``) when the day's spend plus reservations would pass it.
    """

    usd: float | None
    daily_limit_usd: float | None = None
