"""Intake: one request delivery in, one verdict out. The AMQP side carries the verdict out.

1. :class:`Refuse`: bad input. The delivery is dead-lettered with the reason, a failed
   event goes to the events exchange and to ``reply_to``, then it is acked. Nothing is claimed.
2. :class:`Accept`: the id is claimed in the ledger (a new job, or a duplicate answered
   from the ledger); the delivery is acked. The claim comes first, so a lost ack only
   causes a redelivery that is answered as a duplicate.
3. :class:`Requeue`: the ledger failed or a check crashed. The delivery goes back after a
   pause (``pause`` None: a pause that grows with the delivery count), and the queue's
   delivery limit dead-letters a message that keeps failing, so there is no hot loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from videoworker import metrics
from videoworker.config import Settings
from videoworker.contract.events import build_event, encode, error_body, iso
from videoworker.contract.request import VideoRequest, parse_request, salvage_reply
from videoworker.core.crashpoints import crashpoint
from videoworker.core.engine import Engine
from videoworker.core.states import JobState
from videoworker.errors import InvalidRequest
from videoworker.ledger.base import JobRecord, Ledger, ReplyTarget
from videoworker.plugins.hooks import Hooks
from videoworker.provider.catalogue import CatalogueCache

log = structlog.get_logger("videoworker.intake")


@dataclass(frozen=True)
class Delivery:
    """One request message as the broker handed it over: the body and the AMQP properties we honour."""

    body: bytes
    message_id: str | None = None
    content_type: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    delivery_count: int = 0  # earlier deliveries of this message (quorum queues count them)
    tag: str = ""  # names the delivery when the body names nothing


@dataclass(frozen=True)
class Accept:
    """The claim is durable: ack the delivery."""


@dataclass(frozen=True)
class Requeue:
    """Not now: return the delivery after ``pause`` seconds (None: grow the pause with the delivery count)."""

    reason: str
    pause: float | None = None


@dataclass(frozen=True)
class Refuse:
    """Bad input: dead-letter the delivery with ``error``, publish ``event`` (failed), then ack."""

    error: InvalidRequest
    request_id: str
    event: bytes


Verdict = Accept | Requeue | Refuse


class Intake:
    """Decides what becomes of each request delivery; never acks, nacks or publishes itself."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        hooks: Hooks,
        catalogue: CatalogueCache,
        engine: Engine,
        *,
        on_ledger_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.hooks = hooks
        self.catalogue = catalogue
        self.engine = engine
        self._on_ledger_error = on_ledger_error

    async def take(self, delivery: Delivery) -> Verdict:
        """Check, then claim one delivery; any unexpected error returns it to the queue."""
        structlog.contextvars.clear_contextvars()
        try:
            request = await self._check(delivery)
        except InvalidRequest as exc:
            return self._refuse(delivery, exc)
        except Exception:
            log.exception("request check crashed; the delivery goes back to the queue")
            return Requeue("validation crashed")
        assert request.id is not None
        structlog.contextvars.bind_contextvars(request_id=request.id)
        try:
            return await self._claim(delivery, request)
        except Exception:  # never leave a delivery neither acked nor returned
            log.exception("claiming the request crashed; the delivery goes back to the queue")
            return Requeue("claim crashed")

    async def _check(self, delivery: Delivery) -> VideoRequest:
        s = self.settings
        request = parse_request(
            delivery.body,
            message_id=delivery.message_id,
            content_type=delivery.content_type,
            max_message_bytes=s.max_message_bytes,
            max_prompt_chars=s.max_prompt_chars,
            max_metadata_bytes=s.max_metadata_bytes,
        )
        self.hooks.check_delivery(request)
        await self.hooks.validate_request(request, await self.catalogue.get())
        return request

    async def _claim(self, delivery: Delivery, request: VideoRequest) -> Verdict:
        assert request.id is not None
        reply = ReplyTarget(delivery.reply_to, delivery.correlation_id) if delivery.reply_to else None
        record = JobRecord(
            request.id,
            JobState.RECEIVED,
            request.model,
            request.wire(),
            data={"timestamps": {"received": iso()}},
            owner=self.settings.instance_id,
            lease_until=time.time() + self.settings.lease_seconds,
        )
        try:
            result = await self.ledger.claim(record, reply)
        except Exception as exc:  # noqa: BLE001 - ledger down: keep the message, try later
            log.error(
                "ledger unavailable; intake pauses and the delivery goes back", error=f"{type(exc).__name__}: {exc}"
            )
            self._on_ledger_error()
            return Requeue("ledger unavailable", pause=1.0)
        crashpoint("after_claim")
        if result.created:
            metrics.REQUESTS.labels(outcome="accepted").inc()
            log.info("request accepted", model=request.model)
            self.engine.accept(result.record, request)
        else:
            metrics.REQUESTS.labels(outcome="duplicate").inc()
            await self.engine.duplicate(result.record, reply)
        return Accept()

    def _refuse(self, delivery: Delivery, exc: InvalidRequest) -> Refuse:
        known = salvage_reply(delivery.body)
        request_id = known.get("id") or delivery.message_id or f"unparsed-{delivery.tag}"
        structlog.contextvars.bind_contextvars(request_id=request_id)
        log.warning("request refused; dead-lettering it", code=exc.code, reason=exc.message, field=exc.field)
        event = build_event(
            request_id,
            "failed",
            model=known.get("model"),
            data={"timestamps": {"received": iso()}},
            metadata=known.get("metadata"),
            error=error_body(exc.code, exc.message),
        )
        return Refuse(exc, request_id, encode(event))
