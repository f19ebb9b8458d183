"""Confirmed publishes through the broker's lanes, against a real RabbitMQ: each key's messages in order.

The broker spreads publishes over several channels so that a batch does not wait for one
channel's lock message by message; a publish's ``order_key`` picks its lane, so what one
job publishes (its events, in the outbox's order) reaches consumers in that order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aio_pika

from videoworker.amqp.broker import PUBLISH_LANES, Broker
from videoworker.config import Settings
from videoworker.testing.recorder import until

KEYS, PER_KEY = 40, 25


async def test_messages_with_one_order_key_arrive_in_order_across_lanes(
    make_settings: Callable[..., Settings], rabbit: str
) -> None:
    assert PUBLISH_LANES > 1  # otherwise there is nothing to keep in order
    settings = make_settings()
    broker = Broker(settings)
    await broker.connect(attempts=3)
    connection = await aio_pika.connect_robust(rabbit)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange(settings.events_exchange)
        await queue.bind(exchange, "lanes.#")
        got: dict[str, list[int]] = {}

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            body = json.loads(message.body)
            got.setdefault(body["key"], []).append(body["n"])

        await queue.consume(on_message, no_ack=True)
        # all at once, interleaved across keys, as the outbox relay publishes a batch
        await asyncio.gather(
            *(
                broker.publish(
                    settings.events_exchange,
                    f"lanes.{key}",
                    json.dumps({"key": f"k{key}", "n": n}).encode(),
                    message_id=f"k{key}:{n}",
                    order_key=f"k{key}",
                )
                for n in range(PER_KEY)
                for key in range(KEYS)
            )
        )
        await until(lambda: sum(map(len, got.values())) == KEYS * PER_KEY, 10, "every message delivered")
        assert all(numbers == list(range(PER_KEY)) for numbers in got.values()), got
    finally:
        await connection.close()
        await broker.close()
