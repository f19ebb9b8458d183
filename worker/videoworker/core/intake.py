"""Intake: one request delivery in, and exactly one of three outcomes out.

1. Refused: bad input gets a failed event (to ``reply_to`` and the events exchange) and
   a dead letter carrying the reason; then the delivery is acked. Nothing is claimed.
2. Claimed: the id is written to the ledger, *then* the delivery is acked.
3. Not now: the ledger or the broker failed, or a plugin crashed; the delivery is
   nacked back after a pause that grows with ``x-delivery-count``, and the queue's
   delivery limit dead-letters a message that keeps failing (no hot loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from aio_pika.abc import AbstractIncomingMessage

from videoworker import metrics
from videoworker.amqp.broker import Unroutable
from videoworker.contract.events import build_event, encode, error_body, iso, message_id, routing_key
from videoworker.contract.request import VideoRequest, parse_request, salvage_reply
from videoworker.core.crashpoints import crashpoint
from videoworker.core.states import JobState
from videoworker.errors import InvalidRequest
from videoworker.ledger.base import JobRecord, ReplyTarget

if TYPE_CHECKING:
    from videoworker.amqp.broker import Broker
    from videoworker.config import Settings
    from videoworker.core.engine import Engine
    from videoworker.ledger.base import Ledger
    from videoworker.plugins.manager import Hooks
    from videoworker.provider.catalogue import CatalogueCache

log = structlog.get_logger("videoworker.intake")
_MAX_PAUSE = 30.0


class Intake:
    """The request consumer's callback."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        hooks: Hooks,
        catalogue: CatalogueCache,
        broker: Broker,
        engine: Engine,
        *,
        on_ledger_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.hooks = hooks
        self.catalogue = catalogue
        self.broker = broker
        self.engine = engine
        self._on_ledger_error = on_ledger_error

    async def handle(self, message: AbstractIncomingMessage) -> None:
        structlog.contextvars.clear_contextvars()
        try:
            request = await self._parse(message)
        except InvalidRequest as exc:
            await self._refuse(message, exc)
            return
        except Exception:
            log.exception("request check crashed; the delivery goes back to the queue")
            await self._later(message, "validation crashed")
            return
        assert request.id is not None
        structlog.contextvars.bind_contextvars(request_id=request.id)
        try:
            await self._claim(message, request)
        except Exception:  # never leave a delivery neither acked nor returned
            log.exception("claiming the request crashed; the delivery goes back to the queue")
            await self._later(message, "claim crashed")

    async def _parse(self, message: AbstractIncomingMessage) -> VideoRequest:
        s = self.settings
        request = parse_request(
            message.body,
            message_id=message.message_id,
            content_type=message.content_type,
            max_message_bytes=s.max_message_bytes,
            max_prompt_chars=s.max_prompt_chars,
            max_metadata_bytes=s.max_metadata_bytes,
        )
        self.hooks.validate_request(request, await self.catalogue.get())
        return request

    async def _claim(self, message: AbstractIncomingMessage, request: VideoRequest) -> None:
        assert request.id is not None
        reply = ReplyTarget(message.reply_to, message.correlation_id) if message.reply_to else None
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
            await self._later(message, "ledger unavailable", pause=1.0)
            return
        crashpoint("after_claim")
        # even if the ack is lost the claim stands: the redelivery is answered as a duplicate
        await self._ack(message)
        if result.created:
            metrics.REQUESTS.labels(outcome="accepted").inc()
            log.info("request accepted", model=request.model)
            self.engine.accept(result.record, request)
        else:
            metrics.REQUESTS.labels(outcome="duplicate").inc()
            await self.engine.duplicate(result.record, reply)

    async def _refuse(self, message: AbstractIncomingMessage, exc: InvalidRequest) -> None:
        known = salvage_reply(message.body)
        request_id = known.get("id") or message.message_id or f"unparsed-{message.delivery_tag}"
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
        body, mid = encode(event), message_id(request_id, "failed")
        try:
            await self._dead_letter(message, exc)
            await self._publish_quietly(self.settings.events_exchange, routing_key("failed"), body, mid)
            if message.reply_to:
                await self._publish_quietly("", message.reply_to, body, mid, message.correlation_id)
        except (ConnectionError, TimeoutError) as err:
            log.error("could not dead-letter a refused request; it goes back to the queue", error=str(err))
            await self._later(message, "broker publish failed")
            return
        metrics.REQUESTS.labels(outcome="refused").inc()
        metrics.DEAD_LETTERS.labels(code=exc.code).inc()
        await self._ack(message)

    async def _dead_letter(self, message: AbstractIncomingMessage, exc: InvalidRequest) -> None:
        headers: dict[str, Any] = {
            "x-videoworker-error-code": exc.code,
            "x-videoworker-error": exc.message[:1000],
            "x-videoworker-instance": self.settings.instance_id,
        }
        if exc.field:
            headers["x-videoworker-error-field"] = exc.field
        if message.reply_to:
            headers["x-original-reply-to"] = message.reply_to
        await self.broker.publish(
            "",
            self.settings.dead_letter_queue,
            message.body,
            message_id=message.message_id or f"dead-{time.time_ns()}",
            correlation_id=message.correlation_id,
            headers=headers,
        )

    async def _publish_quietly(self, exchange: str, key: str, body: bytes, mid: str, corr: str | None = None) -> None:
        try:
            await self.broker.publish(exchange, key, body, message_id=mid, correlation_id=corr)
        except Unroutable:
            log.warning("reply_to has no queue; the failed event could not be delivered there", reply_to=key)

    async def _ack(self, message: AbstractIncomingMessage) -> bool:
        try:
            await message.ack()
            return True
        except Exception as exc:  # noqa: BLE001 - channel gone: the broker redelivers; the ledger dedupes
            log.warning("could not ack; the broker will redeliver and the ledger will answer", error=type(exc).__name__)
            return False

    async def _later(self, message: AbstractIncomingMessage, why: str, pause: float | None = None) -> None:
        count = _delivery_count(message)
        pause = min(_MAX_PAUSE, 0.5 * 2**count) if pause is None else pause
        log.warning("delivery returned to the queue", reason=why, delivery_count=count, pause=pause)
        await asyncio.sleep(pause)
        try:
            await message.nack(requeue=True)
        except Exception as exc:  # noqa: BLE001 - channel gone: requeued by the broker anyway
            log.warning("could not nack; the broker requeues on channel close", error=type(exc).__name__)


def _delivery_count(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get("x-delivery-count", 0)
    return int(value) if isinstance(value, int) else 0
