"""The request consumer: turns each delivery into a :class:`~videoworker.core.intake.Delivery`,
asks intake for a verdict, and carries it out with ack, nack-after-pause or dead-letter.

Every delivery ends acked or returned, whatever fails: a verdict that cannot be carried
out (the broker refused the dead letter) becomes a return to the queue.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage

from videoworker import metrics
from videoworker.amqp.broker import Broker
from videoworker.config import Settings
from videoworker.contract.events import message_id, routing_key
from videoworker.core.intake import Accept, Delivery, Intake, Refuse, Requeue
from videoworker.errors import Unroutable

log = structlog.get_logger("videoworker.consumer")

#: Longest pause before a failing delivery goes back to the queue.
MAX_PAUSE = 30.0


class Consumer:
    """The callback the broker calls for each request delivery."""

    def __init__(self, settings: Settings, broker: Broker, intake: Intake) -> None:
        self.settings = settings
        self.broker = broker
        self.intake = intake

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            verdict = await self.intake.take(_delivery(message))
        except Exception:  # intake answers every delivery; this is a net under that promise
            log.exception("intake crashed; the delivery goes back to the queue")
            verdict = Requeue("intake crashed")
        if isinstance(verdict, Accept):
            await _ack(message)
        elif isinstance(verdict, Refuse):
            await self._refuse(message, verdict)
        else:
            await _later(message, verdict)

    async def _refuse(self, message: AbstractIncomingMessage, verdict: Refuse) -> None:
        mid = message_id(verdict.request_id, "failed")
        try:
            await self._dead_letter(message, verdict)
            if verdict.announce:
                await self._publish_quietly(self.settings.events_exchange, routing_key("failed"), verdict.event, mid)
            if verdict.reply_to:
                await self._publish_quietly("", verdict.reply_to, verdict.event, mid, message.correlation_id)
        except (ConnectionError, TimeoutError) as err:
            log.error("could not dead-letter a refused request; it goes back to the queue", error=str(err))
            await _later(message, Requeue("broker publish failed"))
            return
        metrics.REQUESTS.labels(outcome="refused").inc()
        metrics.DEAD_LETTERS.labels(code=verdict.error.code).inc()
        await _ack(message)

    async def _dead_letter(self, message: AbstractIncomingMessage, verdict: Refuse) -> None:
        exc = verdict.error
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


def _delivery(message: AbstractIncomingMessage) -> Delivery:
    count = (message.headers or {}).get("x-delivery-count", 0)
    return Delivery(
        message.body,
        message_id=message.message_id,
        content_type=message.content_type,
        reply_to=message.reply_to,
        correlation_id=message.correlation_id,
        delivery_count=count if isinstance(count, int) else 0,
        tag=str(message.delivery_tag),
        user_id=message.user_id,
    )


async def _ack(message: AbstractIncomingMessage) -> None:
    try:
        await message.ack()
    except Exception as exc:  # noqa: BLE001 - channel gone: the broker redelivers; the ledger dedupes
        log.warning("could not ack; the broker will redeliver and the ledger will answer", error=type(exc).__name__)


async def _later(message: AbstractIncomingMessage, verdict: Requeue) -> None:
    count = _delivery(message).delivery_count
    pause = min(MAX_PAUSE, 0.5 * 2**count) if verdict.pause is None else verdict.pause
    log.warning("delivery returned to the queue", reason=verdict.reason, delivery_count=count, pause=pause)
    await asyncio.sleep(pause)
    try:
        await message.nack(requeue=True)
    except Exception as exc:  # noqa: BLE001 - channel gone: requeued by the broker anyway
        log.warning("could not nack; the broker requeues on channel close", error=type(exc).__name__)
