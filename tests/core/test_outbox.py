"""The outbox relay with a real ledger and an in-memory publisher: owed events go out once, failures keep them."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.core.conftest import Rig
from videoworker.core.schedule import Deadline
from videoworker.ledger.base import OutboxMessage
from videoworker.ledger.outbox import OutboxRelay
from videoworker.testing.recorder import until

RigFactory = Callable[..., Awaitable[Rig]]


def owed(n: int, key: str = "video.submitted") -> list[OutboxMessage]:
    return [OutboxMessage("ex", key, b"{}", f"o-{i}:submitted", f"o-{i}") for i in range(n)]


async def pending(r: Rig) -> int:
    return (await r.ledger.counts())["outbox_pending"]


async def test_flush_publishes_in_order_and_the_next_round_marks_sent(rig: RigFactory) -> None:
    """Every owed message is published once, oldest first; the next round's one write records the confirms."""
    r = await rig()
    await r.ledger.enqueue(owed(5))
    assert await r.relay.flush() == 5
    assert [m.message_id for m in r.publisher.messages] == [f"o-{i}:submitted" for i in range(5)]
    assert await pending(r) == 5  # confirmed, recorded by the next round
    await r.ledger.enqueue(owed(1, "video.completed"))
    assert await r.relay.flush() == 1
    assert len(r.publisher.messages) == 6  # the first five were not leased again
    assert await pending(r) == 1
    assert await r.relay.flush() == 0
    assert await pending(r) == 0


async def test_the_relay_loop_records_confirms_without_waiting_for_more_work(rig: RigFactory) -> None:
    """A round that published anything is followed at once by the round that records it, not by the idle tick."""
    r = await rig()
    await r.ledger.enqueue(owed(3))
    loop = asyncio.create_task(r.relay.run())  # no wake() after this: only the loop itself can start a round
    try:
        await until(lambda: len(r.publisher.messages) == 3, 5, "the owed messages")

        async def recorded() -> bool:
            return await pending(r) == 0

        await until(recorded, 0.9, "the confirms recorded (before the relay's 1 s idle tick)", every=0.01)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_drain_at_stop_records_what_was_confirmed(rig: RigFactory) -> None:
    """The stop's last pass publishes what is owed and records it, so a restart does not publish it again."""
    r = await rig()
    await r.ledger.enqueue(owed(2))
    assert await r.relay.flush() == 2
    await r.ledger.enqueue(owed(1, "video.completed"))
    await r.relay.drain()
    assert len(r.publisher.messages) == 3 and await pending(r) == 0


async def test_drain_records_confirms_even_when_the_broker_is_gone(rig: RigFactory) -> None:
    """Nothing more can be published, but what the broker already confirmed is still recorded."""
    r = await rig()
    await r.ledger.enqueue(owed(2))
    assert await r.relay.flush() == 2
    r.publisher.connected = False
    await r.relay.drain()
    assert await pending(r) == 0


async def test_an_unroutable_message_is_not_retried(rig: RigFactory) -> None:
    """A reply_to queue that is gone will not come back: the message is dropped (logged), not retried forever."""
    r = await rig()
    r.publisher.unroutable.add("gone-q")
    await r.ledger.enqueue([OutboxMessage("", "gone-q", b"{}", "x:failed", "x")])
    await r.relay.drain()
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


class DroppingPublisher:
    """Confirms ``o-0``, then the connection drops: the other publishes fail and ``connected`` turns False."""

    def __init__(self) -> None:
        self.up = True
        self.reads = 0  # of ``connected``: a loop that never yields reads it without end

    @property
    def connected(self) -> bool:
        self.reads += 1
        if self.reads > 100_000:
            raise AssertionError("the relay spins on broker.connected")  # fail the test, do not freeze the loop
        return self.up

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str, **_: Any) -> None:
        if not message_id.startswith("o-0:"):
            self.up = False
            raise ConnectionError("connection lost mid-batch")


async def test_a_broker_lost_mid_batch_leaves_the_relay_waiting_not_spinning(rig: RigFactory) -> None:
    """Confirms in hand and the broker gone: they are recorded, and the loop waits for the broker.

    Before, the loop saw unrecorded confirms, skipped its wait, skipped the flush (no broker)
    and went round again without yielding: the event loop, and the reconnect, froze.
    """
    r = await rig()
    publisher = DroppingPublisher()
    relay = OutboxRelay(r.ledger, publisher, "drop-test", 30.0)  # type: ignore[arg-type]
    await r.ledger.enqueue(owed(3))
    loop = asyncio.create_task(relay.run())
    try:
        await until(lambda: relay.failures >= 1, 5, "the failed batch")

        async def recorded() -> bool:
            return await pending(r) == 2  # o-0 recorded as sent; the two unconfirmed stay owed

        await until(recorded, 5, "the confirm recorded without the broker")
        # a round after the backoff, then one after an idle wait; a spinning loop gives control
        # back only once it has read ``connected`` 100,000 times
        await until(lambda: loop.done() or publisher.reads >= 3, 5, "the relay to look at the broker again")
        assert not loop.done() and publisher.reads < 100
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


class StallingLedger:
    """The rig's ledger, except that its outbox calls hang once ``stalled`` (PostgreSQL unreachable, a lock)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.stalled = False
        self.hung = False  # a call is hanging now

    async def claim_outbox(self, *args: Any, **kwargs: Any) -> Any:
        if self.stalled:
            self.hung = True
            await asyncio.Event().wait()
        return await self.inner.claim_outbox(*args, **kwargs)

    async def mark_sent(self, ids: Any) -> None:
        if self.stalled:
            await asyncio.Event().wait()
        await self.inner.mark_sent(ids)


async def test_the_stops_last_pass_is_let_go_at_its_cap_when_the_ledger_hangs(rig: RigFactory) -> None:
    """``drain`` under the stop's 0.6 s cap returns near the cap; it awaits nothing more once cancelled."""
    r = await rig()
    ledger = StallingLedger(r.ledger)
    relay = OutboxRelay(ledger, r.publisher, "hang-test", 30.0)  # type: ignore[arg-type]
    await r.ledger.enqueue(owed(2))
    assert await relay.flush() == 2  # its confirms wait for the next round
    ledger.stalled = True
    loop = asyncio.create_task(relay.run())  # the recording round hangs in claim_outbox
    await until(lambda: ledger.hung, 5, "the recording round to hang")
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    started = time.monotonic()
    await asyncio.wait_for(Deadline(30).step("last outbox pass", relay.drain(), cap=0.6), 5)
    assert time.monotonic() - started < 1.5


class HeldPublisher:
    """Confirms every message except ``o-2``, which waits until ``release`` is set (a slow confirm)."""

    connected = True

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.message_ids: list[str] = []

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str, **_: Any) -> None:
        if message_id.startswith("o-2:"):
            await self.release.wait()
        self.message_ids.append(message_id)


async def test_a_round_cancelled_midway_is_not_published_again_by_the_last_pass(rig: RigFactory) -> None:
    """The stop cancels the relay mid-batch: the last pass records what was confirmed and sends only the rest."""
    r = await rig()
    publisher = HeldPublisher()
    relay = OutboxRelay(r.ledger, publisher, "stop-test", 30.0)  # type: ignore[arg-type]
    await r.ledger.enqueue(owed(4))
    loop = asyncio.create_task(relay.run())
    await until(lambda: len(publisher.message_ids) == 3, 5, "three of the four confirmed")
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    publisher.release.set()
    await relay.drain()
    assert sorted(publisher.message_ids) == [f"o-{i}:submitted" for i in range(4)]  # o-2 once, none twice
    assert await pending(r) == 0


class SlowConfirms:
    """The rig's publisher, except that publishes of ``held`` message ids wait for ``release`` before their confirm."""

    def __init__(self, inner: Any, held: set[str]) -> None:
        self.inner = inner
        self.held = held
        self.release = asyncio.Event()
        self.calls: list[str] = []

    @property
    def connected(self) -> bool:
        return True

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str, **kwargs: Any) -> None:
        self.calls.append(message_id)
        if message_id in self.held:
            await self.release.wait()
        await self.inner.publish(exchange, routing_key, body, message_id=message_id, **kwargs)


async def test_rows_committed_while_a_batch_awaits_its_confirms_go_out_without_waiting(rig: RigFactory) -> None:
    """A second round takes what was committed meanwhile, leaves out what the first is publishing, and
    every row is published once and recorded sent once the confirms are in."""
    r = await rig()
    publisher = SlowConfirms(r.publisher, held={"o-0:submitted", "o-1:submitted"})
    relay = OutboxRelay(r.ledger, publisher, "pipe-test", 30.0)
    await r.ledger.enqueue(owed(2))
    loop = asyncio.create_task(relay.run())
    try:
        await until(lambda: len(publisher.calls) == 2, 5, "the first batch to be out, awaiting its confirms")
        await r.ledger.enqueue([OutboxMessage("ex", "video.submitted", b"{}", "late:submitted", "late")])
        relay.wake()
        await until(lambda: "late:submitted" in r.publisher.keys_by_id(), 5, "the late row, before the held confirms")
        assert publisher.calls.count("o-0:submitted") == 1 and publisher.calls.count("o-1:submitted") == 1
        publisher.release.set()

        async def all_sent() -> bool:
            return await pending(r) == 0

        await until(all_sent, 5, "every row recorded sent")
        assert sorted(publisher.calls) == ["late:submitted", "o-0:submitted", "o-1:submitted"]
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_a_claim_leaves_out_the_requests_it_is_told_to_skip(rig: RigFactory) -> None:
    """``skip_requests``: no row of a request this relay is publishing is leased again by the next round."""
    r = await rig()
    await r.ledger.enqueue(owed(3))
    first = await r.ledger.claim_outbox("me", time.time() + 30, 10)
    await r.ledger.enqueue([OutboxMessage("ex", "video.completed", b"{}", "o-0:completed", "o-0")])
    again = await r.ledger.claim_outbox("me", time.time() + 30, 10, skip_requests={"o-0", "o-2"})
    assert [m.id for m in again] == [first[1].id]


class GatedMarks:
    """The rig's ledger, except that ``mark_sent`` waits for ``release`` once ``gated`` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gated = False
        self.waiting = False
        self.release = asyncio.Event()

    async def claim_outbox(self, *args: Any, **kwargs: Any) -> Any:
        return await self.inner.claim_outbox(*args, **kwargs)

    async def mark_sent(self, ids: Any) -> None:
        ids = list(ids)  # what the write carries is fixed when it is sent, as on a real connection
        if self.gated:
            self.waiting = True
            await self.release.wait()
        await self.inner.mark_sent(ids)


async def test_confirms_that_arrive_while_settle_writes_are_kept_for_the_next_write(rig: RigFactory) -> None:
    """A confirm that lands while ``settle`` awaits its write is recorded by the next write, not forgotten.

    Before, ``settle`` emptied the list after its write: the confirm that came meanwhile
    was dropped, and the row was published again after the lease ran out.
    """
    r = await rig()
    ledger = GatedMarks(r.ledger)
    publisher = HeldPublisher()  # o-2's confirm waits for release
    relay = OutboxRelay(ledger, publisher, "settle-test", 30.0)  # type: ignore[arg-type]
    await r.ledger.enqueue(owed(3))
    round_ = asyncio.create_task(relay.flush())
    await until(lambda: len(publisher.message_ids) == 2, 5, "two of the three confirmed")
    ledger.gated = True
    settling = asyncio.create_task(relay.settle())
    await until(lambda: ledger.waiting, 5, "settle's write to be out")
    publisher.release.set()
    assert await round_ == 3  # o-2's confirm arrived while settle's write was out
    ledger.release.set()
    await settling
    await relay.settle()
    assert await pending(r) == 0


class FailsOnce:
    """The rig's publisher, except that the first publish of ``victim`` waits for ``fail`` and then raises."""

    connected = True

    def __init__(self, inner: Any, victim: str) -> None:
        self.inner = inner
        self.victim = victim
        self.fail = asyncio.Event()
        self.failed = False
        self.calls: list[str] = []

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str, **kwargs: Any) -> None:
        self.calls.append(message_id)
        if message_id == self.victim and not self.failed:
            await self.fail.wait()
            self.failed = True
            raise ConnectionError("channel closed before the confirm")
        await self.inner.publish(exchange, routing_key, body, message_id=message_id, **kwargs)


async def test_a_later_event_does_not_overtake_one_whose_publish_failed_in_the_same_batch(rig: RigFactory) -> None:
    """One request's two rows in one batch: the second is not published until the first is confirmed."""
    r = await rig()
    publisher = FailsOnce(r.publisher, "o-0:submitted")
    relay = OutboxRelay(r.ledger, publisher, "chain-test", 30.0)
    await r.ledger.enqueue([*owed(2), OutboxMessage("ex", "video.completed", b"{}", "o-0:completed", "o-0")])
    round_ = asyncio.create_task(relay.flush())
    await until(lambda: "o-1:submitted" in r.publisher.keys_by_id(), 5, "the other request's row")
    assert "o-0:completed" not in publisher.calls  # waits for o-0:submitted's confirm
    publisher.fail.set()
    with pytest.raises(ConnectionError):
        await round_
    assert "o-0:completed" not in publisher.calls
    await relay.drain()
    assert r.publisher.keys_by_id() == ["o-1:submitted", "o-0:submitted", "o-0:completed"]
    assert await pending(r) == 0


async def test_a_requests_reply_does_not_wait_for_its_events_confirm(rig: RigFactory) -> None:
    """An event and a reply go to different places: the reply is published while the event's confirm is out."""
    r = await rig()
    publisher = SlowConfirms(r.publisher, held={"o-0:completed"})
    relay = OutboxRelay(r.ledger, publisher, "side-test", 30.0)
    await r.ledger.enqueue(
        [
            OutboxMessage("ex", "video.completed", b"{}", "o-0:completed", "o-0"),
            OutboxMessage("", "reply-q", b"{}", "o-0:reply", "o-0"),
        ]
    )
    round_ = asyncio.create_task(relay.flush())
    try:
        await until(lambda: "o-0:reply" in r.publisher.keys_by_id(), 5, "the reply, while the event's confirm is held")
    finally:
        publisher.release.set()
    assert await round_ == 2


async def test_a_later_round_does_not_overtake_a_row_of_its_request_still_out(rig: RigFactory) -> None:
    """A row committed while an earlier row of its request is out waits for that one, even when it fails.

    Before, the second round took it, its confirm came first, and after the first row's
    publish failed, consumers saw ``completed`` before ``submitted``.
    """
    r = await rig()
    publisher = FailsOnce(r.publisher, "o-0:submitted")
    relay = OutboxRelay(r.ledger, publisher, "order-test", 30.0)
    await r.ledger.enqueue(owed(1))
    loop = asyncio.create_task(relay.run())
    try:
        await until(lambda: publisher.calls == ["o-0:submitted"], 5, "the first row to be out")
        await r.ledger.enqueue(
            [
                OutboxMessage("ex", "video.completed", b"{}", "o-0:completed", "o-0"),
                OutboxMessage("ex", "video.submitted", b"{}", "other:submitted", "other"),
            ]
        )
        relay.wake()
        await until(lambda: "other:submitted" in r.publisher.keys_by_id(), 5, "the second round")
        assert "o-0:completed" not in publisher.calls
        publisher.fail.set()

        async def all_sent() -> bool:
            return await pending(r) == 0

        await until(all_sent, 10, "every row recorded sent")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    mine = [k for k in r.publisher.keys_by_id() if k.startswith("o-0:")]
    assert mine == ["o-0:submitted", "o-0:completed"]


class JitteryPublisher:
    """The rig's publisher with confirms that take 0-5 ms, in any order, as under load."""

    connected = True

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.random = random.Random(7)

    async def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str, **kwargs: Any) -> None:
        self.calls.append(message_id)
        await asyncio.sleep(self.random.uniform(0, 0.005))
        await self.inner.publish(exchange, routing_key, body, message_id=message_id, **kwargs)


async def test_overlapping_rounds_publish_every_row_once(rig: RigFactory) -> None:
    """Rows committed in small groups while rounds overlap: none is claimed by two rounds, none is left."""
    r = await rig()
    publisher = JitteryPublisher(r.publisher)
    relay = OutboxRelay(r.ledger, publisher, "overlap-test", 30.0)
    loop = asyncio.create_task(relay.run())
    try:
        for group in range(60):
            rows = [
                OutboxMessage("ex", "video.submitted", b"{}", f"g{group}-{i}:submitted", f"g{group}-{i}")
                for i in range(5)
            ]
            await r.ledger.enqueue(rows)
            relay.wake()
            await asyncio.sleep(0.002)

        async def all_sent() -> bool:
            return await pending(r) == 0

        await until(all_sent, 15, "every row recorded sent")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert len(publisher.calls) == 300 and len(set(publisher.calls)) == 300, "a row was published twice"


async def test_a_second_instance_does_not_overtake_a_row_the_first_has_out(rig: RigFactory) -> None:
    """Two instances' relays on one outbox: a request's later row waits while another instance has its earlier one out.

    Before, the second relay leased ``completed`` at once (the claim looked only at each
    row's own lease), and after the first relay's publish of ``submitted`` failed,
    consumers saw ``completed`` first.
    """
    r = await rig()
    publisher = FailsOnce(r.publisher, "o-0:submitted")
    first = OutboxRelay(r.ledger, publisher, "instance-a", 30.0)
    second = OutboxRelay(r.ledger, r.publisher, "instance-b", 30.0)
    await r.ledger.enqueue(owed(1))
    out = asyncio.create_task(first.flush())
    await until(lambda: publisher.calls == ["o-0:submitted"], 5, "the first instance's row to be out")
    await r.ledger.enqueue(
        [
            OutboxMessage("ex", "video.completed", b"{}", "o-0:completed", "o-0"),
            OutboxMessage("ex", "video.submitted", b"{}", "other:submitted", "other"),
        ]
    )
    assert await second.flush() == 1
    assert r.publisher.keys_by_id() == ["other:submitted"]
    publisher.fail.set()
    with pytest.raises(ConnectionError):
        await out
    # the first instance still holds the failed row's lease: the second leaves the request alone
    assert await second.flush() == 0
    # the first retries in order; the second then records what it confirmed
    assert await first.flush() == 2
    await first.settle()
    await second.settle()
    assert [k for k in r.publisher.keys_by_id() if k.startswith("o-0:")] == ["o-0:submitted", "o-0:completed"]
    assert await pending(r) == 0
