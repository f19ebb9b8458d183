"""Intake: one request delivery in, one verdict out. The AMQP side carries the verdict out.

1. :class:`Refuse`: bad input. The delivery is dead-lettered with the reason, a failed
   event goes to ``reply_to``, then it is acked. Nothing is claimed. The failed event goes
   to the events exchange too, unless the id it would carry is not the sender's to use:
   a body that could not be parsed (its id is a guess), an id the ledger already holds,
   or a duplicate from another producer ("id in use").
2. :class:`Accept`: the id is claimed in the ledger (a new job, or a duplicate answered
   from the ledger); the delivery is acked. The claim comes first, so a lost ack only
   causes a redelivery that is answered as a duplicate.
3. :class:`Requeue`: the ledger failed or a check crashed. The delivery goes back after a
   pause (``pause`` None: a pause that grows with the delivery count), and the queue's
   delivery limit dead-letters a message that keeps failing, so there is no hot loop.

Producers sharing a broker stay apart. A reply goes only to a ``reply_to`` matching
``reply_to_pattern`` (by default queues only their creator can read). A job remembers
its producer (the AMQP ``user_id``, which RabbitMQ checks against the connection's
user), so another producer reusing its id learns nothing of it, and a
``previous_job_id`` must name a job of the same producer in this ledger.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    user_id: str | None = None  # the AMQP user_id: RabbitMQ refuses one that is not the connection's user


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
    """Bad input: dead-letter the delivery with ``error``, send ``event`` (failed), then ack.

    The event goes to ``reply_to`` (already checked; None: no reply) and, when ``announce``
    is true, to the events exchange.
    """

    error: InvalidRequest
    request_id: str
    event: bytes
    reply_to: str | None = None
    announce: bool = True


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
        reply_to = self._reply_to(delivery)
        try:
            request = self._parse(delivery)
        except InvalidRequest as exc:
            return self._refuse(delivery, exc, reply_to, announce=False)
        except Exception:
            log.exception("request parsing crashed; the delivery goes back to the queue")
            return Requeue("validation crashed")
        assert request.id is not None
        structlog.contextvars.bind_contextvars(request_id=request.id)
        try:
            await self._check(delivery, request)
        except InvalidRequest as exc:
            return await self._refuse_parsed(delivery, request.id, exc, reply_to)
        except Exception:
            log.exception("request check crashed; the delivery goes back to the queue")
            return Requeue("validation crashed")
        try:
            return await self._claim(delivery, request, reply_to)
        except Exception:  # never leave a delivery neither acked nor returned
            log.exception("claiming the request crashed; the delivery goes back to the queue")
            return Requeue("claim crashed")

    def _reply_to(self, delivery: Delivery) -> str | None:
        """The delivery's ``reply_to`` if replies may go there; else None, logged and counted."""
        if not delivery.reply_to:
            return None
        if re.fullmatch(self.settings.reply_to_pattern, delivery.reply_to):
            return delivery.reply_to
        metrics.REPLIES_REFUSED.labels(reason="reply_to_pattern").inc()
        log.warning(
            "reply_to does not match reply_to_pattern; no reply will be sent there (the request still runs)",
            reply_to=delivery.reply_to[:200],
        )
        return None

    def _parse(self, delivery: Delivery) -> VideoRequest:
        s = self.settings
        return parse_request(
            delivery.body,
            message_id=delivery.message_id,
            content_type=delivery.content_type,
            max_message_bytes=s.max_message_bytes,
            max_prompt_chars=s.max_prompt_chars,
            max_metadata_bytes=s.max_metadata_bytes,
        )

    async def _check(self, delivery: Delivery, request: VideoRequest) -> None:
        self.hooks.check_delivery(request)
        await self.hooks.validate_request(request, await self.catalogue.get())
        if request.previous_job_id is not None and not self.settings.allow_foreign_previous_job:
            previous = await self.ledger.by_job_id(request.previous_job_id)
            # the same answer whether the job is unknown or another producer's: existence is not revealed
            if previous is None or previous.producer != delivery.user_id:
                raise InvalidRequest(
                    "previous_job_id does not name a job this producer ran through this videoworker"
                    " (set allow_foreign_previous_job to allow others)",
                    field="previous_job_id",
                )

    async def _claim(self, delivery: Delivery, request: VideoRequest, reply_to: str | None) -> Verdict:
        assert request.id is not None
        reply = ReplyTarget(reply_to, delivery.correlation_id) if reply_to else None
        data: dict[str, Any] = {"timestamps": {"received": iso()}, "history": [{"state": "received", "at": iso()}]}
        if delivery.user_id is not None:
            data["producer"] = delivery.user_id
        record = JobRecord(
            request.id,
            JobState.RECEIVED,
            request.model,
            request.wire(),
            data=data,
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
        elif result.record.producer != delivery.user_id:
            metrics.REQUESTS.labels(outcome="id_in_use").inc()
            error = InvalidRequest("id in use: another producer's request has this id; use ids of your own", field="id")
            return self._refuse(delivery, error, reply_to, announce=False)
        else:
            metrics.REQUESTS.labels(outcome="duplicate").inc()
            await self.engine.duplicate(result.record, reply)
        return Accept()

    async def _refuse_parsed(
        self, delivery: Delivery, request_id: str, exc: InvalidRequest, reply_to: str | None
    ) -> Refuse:
        """Refuse a parsed request; announce it only if its id is not a job's (that job's events are its own)."""
        try:
            known = await self.ledger.get(request_id) is not None
        except Exception:  # noqa: BLE001 - the ledger is down: say nothing under an id we could not check
            known = True
        return self._refuse(delivery, exc, reply_to, announce=not known)

    def _refuse(self, delivery: Delivery, exc: InvalidRequest, reply_to: str | None, *, announce: bool) -> Refuse:
        known = salvage_reply(delivery.body)
        request_id = known.get("id") or delivery.message_id or f"unparsed-{delivery.tag}"
        structlog.contextvars.bind_contextvars(request_id=request_id)
        log.warning(
            "request refused; dead-lettering it",
            code=exc.code,
            reason=exc.message,
            field=exc.field,
            announced=announce,
            replied=reply_to is not None,
        )
        event = build_event(
            request_id,
            "failed",
            model=known.get("model"),
            data={"timestamps": {"received": iso()}},
            metadata=known.get("metadata"),
            error=error_body(exc.code, exc.message),
        )
        return Refuse(exc, request_id, encode(event), reply_to, announce)
