"""The broker connection: topology, consuming, and confirmed publishes.

It never decides what a message means: it hands each request delivery to a callback
(:class:`videoworker.amqp.consumer.Consumer`) and publishes what it is asked to, with a
publisher confirm, ``mandatory`` routing and a timeout, so a broker outage can delay a
publish but never hang it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection, AbstractRobustQueue
from aio_pika.exceptions import DeliveryError, PublishError

from videoworker import metrics
from videoworker.config import Settings
from videoworker.contract.topology import request_queue_arguments
from videoworker.errors import ConfigError, Unroutable

log = structlog.get_logger("videoworker.broker")
Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]

#: Publishing lanes, each a channel for exchanges and one for the default exchange, so a
#: batch of publishes is spread over several channels' locks. A publish with an
#: ``order_key`` (the outbox's request id) takes that key's lane, so one job's messages
#: still go out in order.
PUBLISH_LANES = 4


class Broker:
    """One robust connection, a consuming channel and :data:`PUBLISH_LANES` publishing lanes (all confirm-enabled)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._handler: Handler | None = None
        self._connection: AbstractRobustConnection | None = None
        # strong references: aio-pika restores only channels and queues still alive (aio-pika #536)
        self._consume_channel: AbstractRobustChannel | None = None
        # each lane: (exchanges, default exchange). Replies and dead letters go through the
        # default exchange on a channel of their own: aiormq matches a returned message to its
        # publish by message_id, and a final event shares its message_id with its reply, so
        # one unroutable copy must not fail the other
        self._lanes: list[tuple[AbstractRobustChannel, AbstractRobustChannel]] = []
        self._queue: AbstractRobustQueue | None = None
        self._consumer_tag: str | None = None
        self._private: list[AbstractRobustQueue] = []
        self._connected = asyncio.Event()
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def _publish_channel(self) -> AbstractRobustChannel | None:
        """The first lane's exchange channel, which also declares the topology."""
        return self._lanes[0][0] if self._lanes else None

    @property
    def consuming(self) -> bool:
        return self._consumer_tag is not None

    async def connect(self, *, attempts: int = 0) -> None:
        """Connect (retrying with backoff while the broker is down; ``attempts=0`` means forever) and declare."""
        url = self.settings.amqp_url.get_secret_value()
        delay, tried = 0.5, 0
        while True:
            try:
                self._connection = await aio_pika.connect_robust(
                    url, timeout=10, client_properties={"connection_name": f"videoworker {self.settings.instance_id}"}
                )
                break
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                tried += 1
                if attempts and tried >= attempts:
                    raise ConfigError(f"cannot reach RabbitMQ at amqp_url: {type(exc).__name__}: {exc}") from None
                log.warning("broker unreachable; retrying", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15)
        self._connection.close_callbacks.add(self._on_close)
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._consume_channel = await self._channel(prefetch=self.settings.prefetch)
        self._lanes = [(await self._channel(prefetch=0), await self._channel(prefetch=0)) for _ in range(PUBLISH_LANES)]
        await self._declare()
        self._connected.set()
        metrics.BROKER_CONNECTED.set(1)

    async def _channel(self, *, prefetch: int) -> AbstractRobustChannel:
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        if prefetch:
            await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def _declare(self) -> None:
        assert self._consume_channel is not None and self._publish_channel is not None
        s = self.settings
        try:
            await self._publish_channel.declare_queue(
                s.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
            )
            self._queue = await self._consume_channel.declare_queue(
                s.request_queue,
                durable=True,
                arguments=request_queue_arguments(s.delivery_limit, s.dead_letter_queue),
            )
            await self._publish_channel.declare_exchange(s.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise ConfigError(
                f"request_queue {s.request_queue!r} exists with other arguments than videoworker declares "
                f"(quorum, delivery limit {s.delivery_limit}, dead-letter to {s.dead_letter_queue!r}): {exc}"
            ) from None

    async def start_consuming(self, handler: Handler | None = None) -> None:
        """Consume the request queue with ``handler`` (or the one given before)."""
        self._handler = handler or self._handler
        if self._queue is not None and self._consumer_tag is None and self._handler is not None:
            self._consumer_tag = await self._queue.consume(self._handler)
            log.info("consuming", queue=self.settings.request_queue, prefetch=self.settings.prefetch)

    async def stop_consuming(self) -> None:
        """Stop new deliveries; those already delivered and unacked stay with us until acked or the channel closes."""
        if self._queue is not None and self._consumer_tag is not None:
            tag, self._consumer_tag = self._consumer_tag, None
            try:
                async with asyncio.timeout(self.settings.publish_timeout):
                    await self._queue.cancel(tag)
            except (TimeoutError, aiormq.exceptions.AMQPError, RuntimeError) as exc:
                log.warning("could not cancel the consumer cleanly", error=type(exc).__name__)
            except asyncio.CancelledError:
                _reraise_real_cancel()
                log.warning("connection lost while cancelling the consumer")

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        correlation_id: str | None = None,
        headers: dict[str, Any] | None = None,
        order_key: str | None = None,
    ) -> None:
        """Publish persistently and wait for the confirm; raise on nack, return, or timeout.

        Publishes with the same ``order_key`` go out in the order they are made.
        """
        if not self._lanes:
            raise ConnectionError("broker is not connected")
        channel, direct = self._lanes[hash(order_key) % len(self._lanes)] if order_key else self._lanes[0]
        properties = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            headers=headers or {},
        ).properties
        async with asyncio.timeout(self.settings.publish_timeout):
            try:
                lane = cast(aiormq.Channel, await (direct if exchange == "" else channel).get_underlay_channel())
                # wait=False: the channel's lock is let go once the frames are queued for the
                # connection's writer, not once the writer has sent them. aio-pika's publish waits,
                # which holds the lane for about three turns of the event loop per message: a batch
                # of 256 took 1-3 s on a busy loop. The frames still go out in the order they were
                # queued, and the confirm is still awaited, so nothing is counted as sent sooner.
                await lane.basic_publish(
                    body, exchange=exchange, routing_key=routing_key, properties=properties, mandatory=True, wait=False
                )
            except PublishError as exc:
                raise Unroutable(f"no queue for {exchange or '(default)'}/{routing_key}") from exc
            except DeliveryError as exc:
                raise ConnectionError(f"broker refused the publish: {exc}") from exc
            except asyncio.CancelledError as exc:
                _reraise_real_cancel()
                raise ConnectionError("broker connection lost before the confirm") from exc

    async def listen(self, exchange: str, routing_key: str, handler: Callable[[bytes], None]) -> None:
        """Consume a private queue bound to the direct ``exchange`` under ``routing_key``: messages for this instance.

        The queue is exclusive and auto-deleted, so it lives as long as this connection; the
        robust connection declares it again after a reconnect. Deliveries are not acked: they
        are hints, and a lost one costs only latency.
        """
        assert self._consume_channel is not None
        target = await self._consume_channel.declare_exchange(exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await self._consume_channel.declare_queue(f"{exchange}.{routing_key}", exclusive=True, auto_delete=True)
        await queue.bind(target, routing_key)
        self._private.append(queue)  # a strong reference, so the robust channel restores it

        async def deliver(message: AbstractIncomingMessage) -> None:
            handler(message.body)

        await queue.consume(deliver, no_ack=True)

    async def queue_stats(self, name: str) -> tuple[int, int]:
        """(messages, consumers) of a queue, by passive declare; for health and tests."""
        assert self._publish_channel is not None
        queue = await self._publish_channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        return result.message_count or 0, result.consumer_count or 0

    async def close(self) -> None:
        self._closing = True
        if self._connection is not None:
            await self._connection.close()
            self._connected.clear()
            metrics.BROKER_CONNECTED.set(0)

    def _on_close(self, *_: Any) -> None:
        if self._connected.is_set() and not self._closing:
            log.warning("broker connection lost; reconnecting")
        self._connected.clear()
        metrics.BROKER_CONNECTED.set(0)

    def _on_reconnect(self, *_: Any) -> None:
        log.info("broker connection restored")
        self._connected.set()
        metrics.BROKER_CONNECTED.set(1)


def _reraise_real_cancel() -> None:
    """Inside ``except CancelledError``: re-raise it only if this task really is being cancelled.

    aiormq fails a dropped connection's pending calls with CancelledError (it cancels its
    reader when the heartbeat stops). Unless this task is being cancelled (a timeout, a
    stop), that is a lost connection, and it must not cancel the caller (the outbox relay).
    """
    task = asyncio.current_task()
    if task is None or task.cancelling():
        raise asyncio.CancelledError
