"""The outbox relay with a real ledger and an in-memory publisher: owed events go out once, failures keep them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from tests.core.conftest import Rig
from videoworker.ledger.base import OutboxMessage
from videoworker.testing.recorder import until

RigFactory = Callable[..., Awaitable[Rig]]


def owed(n: int, key: str = "video.submitted") -> list[OutboxMessage]:
    return [OutboxMessage("ex", key, b"{}", f"o-{i}:submitted", f"o-{i}") for i in range(n)]


async def pending(r: Rig) -> int:
    return (await r.ledger.counts())["outbox_pending"]


async def test_flush_publishes_in_order_and_marks_sent(rig: RigFactory) -> None:
    """Every owed message is published once, oldest first, and leaves the pending set."""
    r = await rig()
    await r.ledger.enqueue(owed(5))
    assert await r.relay.flush() == 5
    assert [m.message_id for m in r.publisher.messages] == [f"o-{i}:submitted" for i in range(5)]
    assert await pending(r) == 0
    assert await r.relay.flush() == 0


async def test_an_unroutable_message_is_not_retried(rig: RigFactory) -> None:
    """A reply_to queue that is gone will not come back: the message is dropped (logged), not retried forever."""
    r = await rig()
    r.publisher.unroutable.add("gone-q")
    await r.ledger.enqueue([OutboxMessage("", "gone-q", b"{}", "x:failed", "x")])
    await r.relay.flush()
    assert await pending(r) == 0 and r.publisher.messages == []


async def test_a_broker_failure_keeps_the_messages_for_later(rig: RigFactory) -> None:
    """While publishing fails nothing is marked sent; once it works each message goes out exactly once."""
    r = await rig()
    await r.ledger.enqueue(owed(3))
    r.publisher.failure = ConnectionError("broker down")
    with pytest.raises(ConnectionError):
        await r.relay.flush()
    assert await pending(r) == 3
    r.publisher.failure = None
    assert await r.relay.flush() == 3
    assert len(r.publisher.messages) == 3


async def test_the_relay_loop_survives_failures_and_wakes_on_demand(rig: RigFactory) -> None:
    """The loop backs off while the publisher fails, then publishes what is owed without waiting for its idle tick."""
    r = await rig()
    r.publisher.failure = ConnectionError("broker down")
    await r.ledger.enqueue(owed(2))
    loop = asyncio.create_task(r.relay.run())
    try:
        await until(lambda: r.relay.failures >= 1, 5, "a failed publish")
        r.publisher.failure = None
        await until(lambda: len(r.publisher.messages) == 2, 10, "the owed messages after recovery")
        await r.ledger.enqueue(owed(1, "video.completed"))
        r.relay.wake()
        await until(lambda: len(r.publisher.messages) == 3, 0.9, "a woken relay (before its 1 s idle tick)")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
