"""The producer side of a bench run, shared by the floor and the daemon so both get the same load."""

from __future__ import annotations

import asyncio
import json
import time

import aio_pika

#: Publishes in flight at once (each waits for the broker's confirm).
CHUNK = 100


async def publish_requests(channel: aio_pika.abc.AbstractChannel, queue: str, n: int, tag: str, reply_to: str) -> float:
    """Publish ``n`` persistent requests ``<tag>-<i>`` (prompt ``"<tag> <i>"``); return the seconds it took."""
    started = time.perf_counter()
    for first in range(0, n, CHUNK):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(
                        json.dumps(
                            {"id": f"{tag}-{i}", "model": "sim/fast", "prompt": f"{tag} {i}", "duration": 4}
                        ).encode(),
                        reply_to=reply_to,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=queue,
                )
                for i in range(first, min(n, first + CHUNK))
            )
        )
    return time.perf_counter() - started
