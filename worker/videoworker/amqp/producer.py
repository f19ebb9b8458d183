"""A producer, as other systems would write one: publish a request, optionally wait for its result.

Used by ``videoworker submit`` and the demo; also a working example for producers in
other languages: confirmed publish to the request queue, an exclusive reply queue named
in ``reply_to``, and progress read from the events exchange.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika

from videoworker.config import Settings


async def submit(
    settings: Settings,
    requests: list[dict[str, Any]],
    *,
    wait: float | None = None,
    on_event: Callable[[dict[str, Any]], None] = lambda e: None,
) -> list[dict[str, Any]]:
    """Publish ``requests``; with ``wait`` seconds, return their final events (in order)."""
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value(), timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        finals: dict[str, dict[str, Any]] = {}
        done = asyncio.Event()
        reply_to = None
        ids = [str(r.get("id") or uuid.uuid4().hex) for r in requests]
        if wait is not None:
            reply_to = await _listen(channel, settings, set(ids), finals, done, on_event)
        for request, request_id in zip(requests, ids, strict=True):
            body = json.dumps({**request, "id": request_id}).encode()
            message = aio_pika.Message(
                body,
                content_type="application/json",
                message_id=request_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                reply_to=reply_to,
                correlation_id=request_id,
            )
            await channel.default_exchange.publish(message, routing_key=settings.request_queue, mandatory=True)
        if wait is None:
            return [{"id": i, "status": "queued"} for i in ids]
        async with asyncio.timeout(wait):
            await done.wait()
        return [finals[i] for i in ids]


async def _listen(
    channel: aio_pika.abc.AbstractChannel,
    settings: Settings,
    ids: set[str],
    finals: dict[str, dict[str, Any]],
    done: asyncio.Event,
    on_event: Callable[[dict[str, Any]], None],
) -> str:
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    exchange = await channel.declare_exchange(settings.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    await queue.bind(exchange, routing_key="video.#")

    shown: set[tuple[str, str]] = set()  # each (id, status) once: the reply and its event race each other

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        event = json.loads(message.body)
        if event.get("id") not in ids:
            return
        if message.correlation_id and not (message.routing_key or "").startswith("video."):
            finals[event["id"]] = event  # the answer to our reply_to
        if (event["id"], event.get("status")) not in shown:
            shown.add((event["id"], event.get("status")))
            on_event(event)
        if len(finals) == len(ids):
            done.set()

    await queue.consume(on_message)
    return queue.name
