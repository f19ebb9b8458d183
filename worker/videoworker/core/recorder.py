"""Recording a move: the ledger's compare-and-set, the event it owes, and the observers that hear of it.

The event a state owes (:func:`videoworker.core.states.event_for`) is written to the
outbox in the same transaction as the move, so a crash can delay an event but never
lose it. A final event is also owed to every ``reply_to`` the id was seen with, and is
kept in the job's data to answer later duplicates from the ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from videoworker import metrics
from videoworker.config import Settings
from videoworker.contract.events import build_event, encode, iso, message_id, routing_key
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Move
from videoworker.core.states import JobState, event_for
from videoworker.ledger.base import JobRecord, Ledger, OutboxMessage, ReplyTarget
from videoworker.plugins.hooks import Hooks
from videoworker.plugins.types import JobEvent

log = structlog.get_logger("videoworker.recorder")


class Recorder:
    """Writes moves for one instance (``settings.instance_id``) and tells the outbox and observers."""

    def __init__(self, settings: Settings, ledger: Ledger, hooks: Hooks, *, on_outbox: Callable[[], None]) -> None:
        self.settings = settings
        self.ledger = ledger
        self.hooks = hooks
        self.me = settings.instance_id
        self._on_outbox = on_outbox
        self._observers: set[asyncio.Task[None]] = set()

    async def intend(self, job: Job, state: JobState, attempts: int) -> bool:
        """Record ``state`` before a side effect (no event); False if the job is no longer ours."""
        return await self.move(job, Move(state, attempts=attempts))

    async def move(self, job: Job, move: Move) -> bool:
        """Compare-and-set ``job`` into ``move.to`` with its event; False (nothing written) if it is not ours."""
        data = move.data
        status = event_for(move.to)
        event: dict[str, Any] | None = None
        reply: bytes | None = None
        if move.to.terminal:
            data = dict(job.record.data if data is None else data)
            data["timestamps"] = {**data.get("timestamps", {}), "delivered": iso()}
            event = data["final"] = self._event(job, move, status or "failed", data)
            reply = encode(event)
        elif status is not None:
            event = self._event(job, move, status, job.record.data if data is None else data)
        outbox = [self._outbox(job.id, event, reply)] if event is not None else []
        moved = await self.ledger.transition(
            job.id,
            self.me,
            job.record.state,
            move.to,
            job_id=move.job_id,
            attempts=move.attempts,
            data=data,
            outbox=outbox,
            reply_body=reply,
            reply_message_id=message_id(job.id, status) if reply is not None and status else None,
        )
        if not moved:
            return False
        _apply(job.record, move, data)
        if event is not None:
            self._announce(job, event)
        return True

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
        for task in self._observers:
            task.cancel()
        await asyncio.gather(*self._observers, return_exceptions=True)

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

    def _announce(self, job: Job, event: dict[str, Any]) -> None:
        """Wake the outbox relay and start the observers, which run on their own and never block the job."""
        self._on_outbox()
        job_event = JobEvent(event["status"], job.id, event, job.request.delivery or {})
        task = asyncio.create_task(self.hooks.job_event(job_event))
        self._observers.add(task)
        task.add_done_callback(self._observers.discard)


def _apply(record: JobRecord, move: Move, data: dict[str, Any] | None) -> None:
    """Mirror a recorded move in memory."""
    record.state = move.to
    if move.job_id is not None:
        record.job_id = move.job_id
    if move.attempts is not None:
        record.attempts = move.attempts
    if data is not None:
        record.data = data
