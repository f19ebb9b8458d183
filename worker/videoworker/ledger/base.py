"""The ledger's contract: one durable row per request id, moved by compare-and-set.

The ledger is the daemon's memory. RabbitMQ delivers at least once and a process may be
killed at any instant, so every decision that spends money or owes an answer is written
here first. Each move names the state it expects and the owner that holds the lease; a
move that finds anything else changes nothing and returns ``False``.

Two backends implement it: SQLite (one host, the default) and PostgreSQL (several hosts).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from videoworker.core.states import JobState, check_transition
from videoworker.ledger.retention import Pruned, Retention


@dataclass
class JobRecord:
    """One request id as the ledger holds it."""

    request_id: str
    state: JobState
    model: str
    request: dict[str, Any]
    job_id: str | None = None
    attempts: int = 0
    data: dict[str, Any] = field(default_factory=dict)  # outputs, usage, error, timestamps
    owner: str | None = None
    lease_until: float = 0.0
    # when the ledger wrote the row first and last (wall clock); read back, never written from here
    created_at: float = field(default=0.0, compare=False)
    updated_at: float = field(default=0.0, compare=False)

    @property
    def producer(self) -> str | None:
        """The AMQP ``user_id`` the request came with (None: the broker did not say)."""
        value = self.data.get("producer")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ReplyTarget:
    """Where a producer asked for the final event (AMQP ``reply_to`` + ``correlation_id``)."""

    reply_to: str
    correlation_id: str | None = None


@dataclass
class OutboxMessage:
    """A message owed to the broker: recorded with the state change, published later, marked sent."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    request_id: str
    correlation_id: str | None = None
    id: int | None = None


@dataclass
class OwedNotification:
    """A notification owed to one notifier plugin's target: recorded with the state change, delivered later.

    ``event`` holds what the plugin sees as the :class:`~videoworker.JobEvent` (``payload``,
    ``delivery``, ``prompt``). ``state`` is ``pending`` (due at ``next_at``), ``delivered`` or
    ``dead`` (given up; replayable). Retried until ``deadline``.
    """

    request_id: str
    plugin: str
    target_key: str
    target: dict[str, Any]
    status: str
    event: dict[str, Any]
    created_at: float = 0.0
    deadline: float = 0.0
    next_at: float = 0.0
    attempts: int = 0
    state: str = "pending"
    last_error: str | None = None
    delivered_at: float | None = None
    id: int | None = None

    @property
    def stable_id(self) -> str:
        """The same for every attempt and replay of this delivery: receivers drop repeats by it."""
        return f"{self.request_id}:{self.status}:{self.plugin}:{self.target_key}"


@dataclass(frozen=True)
class BudgetChange:
    """A change to one UTC day's spend, applied in the same transaction as a move.

    Before a submit: ``reserved=+estimate`` with the day's ``limit``; the ledger raises
    :class:`~videoworker.errors.OverBudget`, writing nothing, when ``spent + reserved`` would
    pass it. After: ``reserved=-estimate`` with ``spent=+actual`` (settled), or ``spent=0``
    (released: the provider certainly never took the job).
    """

    day: str
    reserved: float
    spent: float = 0.0
    limit: float | None = None


@dataclass
class ClaimResult:
    """What :meth:`Ledger.claim` found: ``created`` is False for a duplicate id."""

    created: bool
    record: JobRecord


class Ledger(abc.ABC):
    """Durable job rows, reply targets and the outbox. Every method is safe to call concurrently."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if it is missing, or upgrade it (:mod:`videoworker.ledger.migrations`).

        Raises :class:`~videoworker.errors.ConfigError`, changing nothing, for a schema newer than this code.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; pending calls finish first."""

    @abc.abstractmethod
    async def claim(self, record: JobRecord, reply: ReplyTarget | None) -> ClaimResult:
        """Insert the row if the id is new (owned by ``record.owner``), and remember ``reply``.

        A duplicate id leaves the existing row untouched and returns it. Its ``reply`` is
        remembered only when the duplicate comes from the row's producer
        (:attr:`JobRecord.producer`): another producer reusing the id gets no copy of the result.
        """

    @abc.abstractmethod
    async def transition(
        self,
        request_id: str,
        owner: str,
        expect: JobState,
        new: JobState,
        *,
        job_id: str | None = None,
        attempts: int | None = None,
        data: dict[str, Any] | None = None,
        outbox: Sequence[OutboxMessage] = (),
        reply_body: bytes | None = None,
        reply_message_id: str | None = None,
        notifications: Sequence[OwedNotification] = (),
        budget: BudgetChange | None = None,
    ) -> bool:
        """Move one row from ``expect`` to ``new`` if ``owner`` still holds it, atomically.

        ``outbox`` messages and ``notifications`` are recorded in the same transaction (a
        notification already recorded for the same request, status, plugin and target is
        kept, not duplicated); ``reply_body`` is recorded once per reply target of the id
        (the final event to each ``reply_to``); ``budget`` changes the day's spend. Returns
        False, changing nothing, when the row is in another state or owned by another
        instance; raises :class:`~videoworker.errors.OverBudget`, changing nothing, when a
        reservation would pass its limit.
        """

    @abc.abstractmethod
    async def get(self, request_id: str) -> JobRecord | None:
        """Read one row."""

    @abc.abstractmethod
    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        """Record messages in the outbox without a state change (answers to duplicates)."""

    @abc.abstractmethod
    async def renew_leases(self, owner: str, until: float) -> int:
        """Extend every live lease ``owner`` holds; one write for all of them."""

    @abc.abstractmethod
    async def adopt(self, owner: str, until: float, dead_owners: Iterable[str], limit: int) -> list[JobRecord]:
        """Take unfinished rows nobody holds: expired leases, released rows, ``dead_owners``'s rows.

        Also frees the outbox messages and notifications ``dead_owners`` had leased, for
        anyone to deliver.
        """

    @abc.abstractmethod
    async def live_owners(self) -> list[str]:
        """Owners holding unfinished rows, unsent outbox messages or pending notifications (to find dead processes)."""

    @abc.abstractmethod
    async def release(
        self, owner: str, *, keep_jobs: Collection[str] = (), keep_notifications: Collection[int] = ()
    ) -> int:
        """Give up the leases ``owner`` holds (jobs, pending notifications): a restart or a peer takes them at once.

        The jobs and notification rows named in ``keep_*`` keep theirs until they run out:
        their work still runs here (a thread the stop let go), and a peer must not do it
        beside that. Returns how many job leases were given up.
        """

    @abc.abstractmethod
    async def claim_outbox(
        self,
        owner: str,
        until: float,
        limit: int,
        *,
        sent: Sequence[int] = (),
        skip_requests: Collection[str] = (),
    ) -> list[OutboxMessage]:
        """Record ``sent`` as :meth:`mark_sent` does, then lease up to ``limit`` unsent outbox
        messages, oldest first, in one transaction: a relay round costs one write, not two.

        Every message of the requests in ``skip_requests`` is left out: the caller is still
        publishing one of theirs, and a later one must not overtake it. So is a message with
        an earlier unsent one of its request under another owner's live lease, and every
        message of a request a concurrent claim is taking: another instance has it out."""

    @abc.abstractmethod
    async def mark_sent(self, ids: Sequence[int]) -> None:
        """Record that the broker confirmed these outbox messages."""

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """Rows per state, plus ``outbox_pending``: for metrics, health and tests."""

    # --- notifications ---------------------------------------------------------------------
    @abc.abstractmethod
    async def claim_notifications(
        self, owner: str, until: float, limit: int, *, per_target: int, busy: Iterable[tuple[str, str]] = ()
    ) -> list[OwedNotification]:
        """Lease up to ``limit`` pending notifications that are due, oldest first.

        Only the oldest pending notification of each (request, plugin, target) is eligible, so
        a request's notifications reach a target in order; at most ``per_target`` rows per
        (plugin, target key), and none for the pairs in ``busy`` (targets already at their
        concurrency limit here), so one slow receiver cannot fill a batch.
        """

    @abc.abstractmethod
    async def settle_notification(
        self,
        notification_id: int,
        owner: str,
        *,
        state: str,
        attempts: int,
        next_at: float = 0.0,
        error: str | None = None,
    ) -> bool:
        """Record a delivery attempt's end if ``owner`` still holds the lease.

        ``state`` is ``delivered``, ``pending`` (retry at ``next_at``) or ``dead``. The lease is
        released either way. Returns False, changing nothing, when the lease was lost.
        """

    @abc.abstractmethod
    async def list_notifications(
        self, *, state: str | None = None, request_id: str | None = None, limit: int = 100
    ) -> list[OwedNotification]:
        """Notifications, newest first, filtered by state and request id: for the CLI and tests."""

    @abc.abstractmethod
    async def replay_notifications(self, ids: Sequence[int] | None, *, deadline: float) -> int:
        """Make dead notifications pending again (``ids``, or every dead one when None): due now, retried until
        ``deadline``; returns how many."""

    @abc.abstractmethod
    async def notification_counts(self) -> dict[str, dict[str, int]]:
        """Notifications per plugin and state: for metrics."""

    # --- budget ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def budget_day(self, day: str) -> tuple[float, float]:
        """``(spent, reserved)`` of one UTC day (``YYYY-MM-DD``), zeros if nothing was spent."""

    # --- operations --------------------------------------------------------------------
    @abc.abstractmethod
    async def list_jobs(
        self, *, state: JobState | None = None, since: float | None = None, model: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """Jobs, most recently changed first, filtered by state, model and last change at or after ``since``."""

    @abc.abstractmethod
    async def by_job_id(self, job_id: str) -> JobRecord | None:
        """The row holding this provider job id, if this ledger created it."""

    @abc.abstractmethod
    async def reopen(self, request_id: str, expect: JobState, new: JobState, data: dict[str, Any]) -> bool:
        """Send a finished job back into the state machine, for an operator's retry.

        The row moves from ``expect`` to ``new`` with ``data``, its provider job id cleared
        when ``new`` is ``received``, and no owner: a running daemon adopts it at its next
        round. Returns False, changing nothing, if the row is not in ``expect`` or was trimmed.
        """

    @abc.abstractmethod
    async def prune(self, retention: Retention) -> Pruned:
        """Remove or trim at most ``retention.batch`` rows of each kind, in one short transaction."""

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The stored schema's version; after :meth:`open` it is ``migrations.SCHEMA_VERSION``."""


def validate_move(expect: JobState, new: JobState) -> None:
    """Refuse illegal moves before touching storage."""
    check_transition(expect, new)


def now() -> float:
    return time.time()
