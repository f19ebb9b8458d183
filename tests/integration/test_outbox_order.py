"""Several instances' outbox relays on one ledger, with publishes that fail and confirms that straggle.

Whatever the interleaving, consumers must see each job's events in the order they were
committed, each at least once, and every row must end up sent. Both backends: SQLite
(instances on one file) and PostgreSQL (instances on one schema, each with its own pool).
A claim paused inside its transaction, which this test cannot arrange, is tested on its
own in test_ledger.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from typing import Any

import pytest

from tests.integration import test_ledger as contract
from tests.integration.test_ledger import Opener
from videoworker.ledger.base import OutboxMessage
from videoworker.ledger.outbox import OutboxRelay
from videoworker.testing.recorder import until

pytestmark = pytest.mark.asyncio
store = contract.store

REQUESTS, EVENTS = 40, 5


class FlakyBroker:
    """Confirms after 0-4 ms, in any order; the first publish of one row in ten fails instead.

    Records what was confirmed, in order: what consumers would see. Each failing row fails
    once, so the relays' backoffs stay short.
    """

    connected = True

    def __init__(self, seed: int, delivered: list[tuple[str, int]], failed: set[str]) -> None:
        self.random = random.Random(seed)
        self.delivered = delivered
        self.failed = failed  # shared by the instances: a row fails on its first publish, wherever

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str, **_: Any) -> None:
        await asyncio.sleep(self.random.uniform(0, 0.004))
        if message_id not in self.failed and zlib.crc32(message_id.encode()) % 10 == 0:
            self.failed.add(message_id)
            raise ConnectionError("channel closed before the confirm")
        request_id, seq = message_id.rsplit(":", 1)
        self.delivered.append((request_id, int(seq)))


async def test_each_jobs_events_reach_consumers_in_order_whatever_the_instances_do(store: Opener) -> None:
    ledgers = [await store() for _ in range(3)]
    delivered: list[tuple[str, int]] = []
    failed: set[str] = set()
    relays = [
        OutboxRelay(ledger, FlakyBroker(seed, delivered, failed), f"instance-{seed}", 30.0)
        for seed, ledger in enumerate(ledgers)
    ]
    loops = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        for seq in range(EVENTS):  # each job's next event is committed while the relays publish the last
            for n in range(REQUESTS):
                writer = ledgers[n % len(ledgers)]
                await writer.enqueue([OutboxMessage("ex", f"video.{seq}", b"{}", f"job-{n}:{seq}", f"job-{n}")])
                relays[n % len(relays)].wake()
            await asyncio.sleep(0.01)

        async def all_sent() -> bool:
            return (await ledgers[0].counts())["outbox_pending"] == 0

        await until(all_sent, 60, "every row recorded sent", every=0.05)
    finally:
        for loop in loops:
            loop.cancel()
        for loop in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
    seen: dict[str, list[int]] = {}
    for request_id, seq in delivered:
        seen.setdefault(request_id, []).append(seq)
    assert len(seen) == REQUESTS and len(failed) >= 10  # the failures happened
    for request_id, seqs in seen.items():
        firsts = [s for i, s in enumerate(seqs) if s not in seqs[:i]]  # a repeat of one seen before is dropped
        assert firsts == list(range(EVENTS)), f"{request_id} reached consumers as {seqs}"
