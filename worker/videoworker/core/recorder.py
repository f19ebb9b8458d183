"""Recording a move: the ledger's compare-and-set, the event it owes, and who hears of it.

The event a state owes (:func:`videoworker.core.states.event_for`) is written to the
outbox in the same transaction as the move, with one row per notifier target owed it,
so a crash can delay an event or a notification but never lose it. A final event is
also owed to every ``reply_to`` the id was seen with, and is kept in the job's data to
answer later duplicates from the ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from videoworker import metrics
from videoworker.config import Settings
from videoworker.contract.events import build_event, encode, iso, message_id, routing_key
from videoworker.core.budget import settle
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Move
from videoworker.core.schedule import cancel_and_wait
from videoworker.core.states import event_for
from videoworker.ledger.base import JobRecord, Ledger, OutboxMessage, OwedNotification, ReplyTarget
from videoworker.plugins.hooks import Hooks
from videoworker.plugins.types import JobEvent

log = structlog.get_logger("videoworker.recorder")


class Recorder:
    """Writes moves for one instance (``settings.instance_id``) and tells the outbox and observers."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        hooks: Hooks,
        *,
        on_outbox: Callable[[], None],
        on_notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.hooks = hooks
        self.me = settings.instance_id
        self._on_outbox = on_outbox
        self._on_notify = on_notify
        self._observers: set[asyncio.Task[None]] = set()

    async def intend(self, job: Job, move: Move) -> bool:
        """Record ``move`` before a side effect (a state without an event); False if the job is no longer ours."""
        assert event_for(move.to) is None, "a write-ahead record owes no event"
        return await self.move(job, move)

    async def move(self, job: Job, move: Move) -> bool:
        """Compare-and-set ``job`` into ``move.to`` with its event; False (nothing written) if it is not ours."""
        data = with_history(job.record.data if move.data is None else move.data, move.to.value)
        status = event_for(move.to)
        event: dict[str, Any] | None = None
        reply: bytes | None = None
        budget = move.budget
        if move.to.terminal:
            if budget is None:  # whatever reservation is still open becomes spend
                data, budget = settle(data, job.request.model)
            data["timestamps"] = {**data.get("timestamps", {}), "delivered": iso()}
            event = data["final"] = self._event(job, move, status or "failed", data)
            reply = encode(event)
        elif status is not None:
            event = self._event(job, move, status, data)
        outbox = [self._outbox(job.id, event, reply)] if event is not None else []
        job_event = self._job_event(job, event) if event is not None else None
        owed = await self._owed(job_event) if job_event is not None else []
        moved = await self.ledger.transition(
            job.id,
            self.me,
            job.recorded_state,
            move.to,
            job_id=move.job_id,
            attempts=move.attempts,
            data=data,
            outbox=outbox,
            reply_body=reply,
            reply_message_id=message_id(job.id, status) if reply is not None and status else None,
            notifications=owed,
            budget=budget,
        )
        if not moved:
            return False
        job.unrecorded = None
        _apply(job.record, move, data)
        if job_event is not None:
            self._announce(job_event, bool(owed))
        return True

    def hold(self, job: Job, move: Move) -> None:
        """Take ``move`` (one without an event) in memory only; the job's next recorded move writes it too.

        Whoever holds a move must record the job's next move, or :meth:`catch_up`, before
        anything waits on the ledger: until then a crash leaves the job in its recorded state.
        """
        assert event_for(move.to) is None and move.data is not None, "a held move owes no event"
        assert move.budget is None, "a held move settles no budget: that must land with its own write"
        job.unrecorded = job.recorded_state
        _apply(job.record, move, with_history(move.data, move.to.value))

    async def catch_up(self, job: Job) -> bool:
        """Write the move :meth:`hold` took, as it stands in memory; False if the job is no longer ours."""
        if job.unrecorded is None:
            return True
        record = job.record
        moved = await self.ledger.transition(
            job.id, self.me, job.unrecorded, record.state, job_id=record.job_id, data=record.data
        )
        if moved:
            job.unrecorded = None
        return moved

    async def answer_duplicate(self, record: JobRecord, reply: ReplyTarget | None) -> None:
        """Answer a second delivery of a known id from the ledger; never submit again."""
        metrics.DUPLICATES.inc()
        final = record.data.get("final")
        log.info("duplicate id; answered from the ledger", request_id=record.request_id, state=record.state.value)
        if final is not None and reply is not None:
            mid = message_id(record.request_id, final["status"])
            body = encode(final)
            await self.ledger.enqueue(
                [OutboxMessage("", reply.reply_to, body, mid, record.request_id, reply.correlation_id)]
            )
            self._on_outbox()

    async def stop(self) -> None:
        """Cancel observers still running (a hung notifier must not hold up the stop)."""
        await cancel_and_wait(self._observers)

    def _event(self, job: Job, move: Move, status: str, data: dict[str, Any]) -> dict[str, Any]:
        return build_event(
            job.id,
            status,
            model=job.request.model,
            data=data,
            metadata=job.request.metadata,
            job_id=move.job_id or job.record.job_id,
            error=move.error,
        )

    def _outbox(self, request_id: str, event: dict[str, Any], body: bytes | None) -> OutboxMessage:
        status = event["status"]
        return OutboxMessage(
            self.settings.events_exchange,
            routing_key(status),
            body if body is not None else encode(event),
            message_id(request_id, status),
            request_id,
        )

    @staticmethod
    def _job_event(job: Job, event: dict[str, Any]) -> JobEvent:
        return JobEvent(event["status"], job.id, event, job.request.delivery or {}, job.request.prompt)

    async def _owed(self, event: JobEvent) -> list[OwedNotification]:
        """One ledger row per notifier target owed ``event``, to record with the move."""
        targets = await self.hooks.notification_targets(event)
        if not targets:
            return []
        now = time.time()
        body = {"payload": event.payload, "delivery": event.delivery, "prompt": event.prompt}
        deadline = now + self.settings.notify_retry_hours * 3600
        return [
            OwedNotification(event.request_id, plugin, t.key, t.data, event.status, body, now, deadline, now)
            for plugin, t in targets
        ]

    def _announce(self, event: JobEvent, owed: bool) -> None:
        """Wake the outbox relay (and the notifier) and start the observers, which never block the job."""
        self._on_outbox()
        if owed:
            self._on_notify()
        task = asyncio.create_task(self.hooks.job_event(event))
        self._observers.add(task)
        task.add_done_callback(self._observers.discard)


#: Moves a job's history keeps (the newest); a job that loops on retries cannot grow its row without bound.
HISTORY_LIMIT = 50


def with_history(data: dict[str, Any], state: str, **details: Any) -> dict[str, Any]:
    """A copy of ``data`` whose ``history`` ends with ``state`` entered now (for ``videoworker status``)."""
    history = data.get("history")
    entries = list(history) if isinstance(history, list) else []
    entries.append({"state": state, "at": iso(), **details})
    return {**data, "history": entries[-HISTORY_LIMIT:]}


def _apply(record: JobRecord, move: Move, data: dict[str, Any] | None) -> None:
    """Mirror a recorded move in memory."""
    record.state = move.to
    if move.job_id is not None:
        record.job_id = move.job_id
    if move.attempts is not None:
        record.attempts = move.attempts
    if data is not None:
        record.data = data
