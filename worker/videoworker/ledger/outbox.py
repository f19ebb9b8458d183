"""The outbox relay: publishes what the ledger says is owed, then marks it sent.

State changes and the events they owe are written in one ledger transaction; this loop
publishes them with confirms afterwards. A crash between the confirm and the mark
republishes the message: events are at least once, and each carries a stable
``message_id`` so consumers can drop the repeat.

A round is one ledger write and one batch of publishes: the write stamps the previous
round's confirmed messages as sent and leases the next batch (``claim_outbox(sent=...)``).
A round that published anything is followed at once by one that records it.

An event committed while a batch awaits its confirms does not wait for them: a second
round starts (at most :data:`_DEPTH` are out at once), leaving out every row of the
requests the first is publishing. One job's events go out in the order they were
committed, even when a publish fails: rows are claimed oldest first, a request's rows
to one exchange in one batch are published one after another, each once the one before
is confirmed (its events, or its replies; an event and a reply go out side by side),
and a request with a row still out is left to a later round. A failed row is claimed
again before any later row of its request. The same holds across instances: a claim
leaves out a row whose request has an earlier unsent row leased to another instance
(until that lease runs out).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import structlog

from videoworker import metrics
from videoworker.core.crashpoints import crashpoint
from videoworker.core.schedule import backoff, wait_or_time_out
from videoworker.errors import Unroutable
from videoworker.ledger.base import Ledger, OutboxMessage

log = structlog.get_logger("videoworker.outbox")
_BATCH = 256
_IDLE = 1.0
#: Rounds out at once: the second takes rows committed while the first awaits its confirms.
_DEPTH = 2


class Publisher(Protocol):
    """Where the relay publishes: :class:`videoworker.amqp.broker.Broker`, or an in-memory stand-in in tests."""

    @property
    def connected(self) -> bool: ...

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        correlation_id: str | None = None,
        order_key: str | None = None,
    ) -> None:
        """Publish and wait for the broker's confirm; raise :class:`Unroutable` when it returns the message.

        Publishes with the same ``order_key`` must go out in the order they are made.
        """


class OutboxRelay:
    """One loop per instance; several instances share the outbox table through leases."""

    def __init__(self, ledger: Ledger, broker: Publisher, owner: str, lease: float) -> None:
        self.ledger = ledger
        self.broker = broker
        self.owner = owner
        self.lease = lease
        self._wake = asyncio.Event()
        self.failures = 0
        self._confirmed: list[int] = []  # published and confirmed, not yet recorded as sent
        self._out: set[str] = set()  # requests with a row claimed by a round that is still publishing it
        self._claiming = asyncio.Lock()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        rounds: set[asyncio.Task[int]] = set()
        try:
            while True:
                self._wake.clear()
                try:
                    if self.broker.connected:
                        rounds.add(asyncio.create_task(self.flush()))
                    else:  # the ledger may be up while the broker is not: record what it already confirmed
                        await self.settle()
                    due = await self._next_round(rounds)
                    self.failures = 0
                except Exception as exc:  # noqa: BLE001 - broker or ledger trouble: back off, keep the rows
                    await asyncio.gather(*rounds, return_exceptions=True)  # what is out ends before the backoff
                    rounds.clear()
                    self.failures += 1
                    delay = backoff(self.failures, base=0.5, cap=15)
                    log.warning("outbox publish failed; retrying", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                    await asyncio.sleep(delay)
                    continue
                if not due:
                    await wait_or_time_out(self._wake, _IDLE)
        finally:
            for task in rounds:
                task.cancel()
            await asyncio.gather(*rounds, return_exceptions=True)

    async def _next_round(self, rounds: set[asyncio.Task[int]]) -> bool:
        """Wait until the next round may start; True if it is due now, False if it may wait for rows.

        A round is due at once when rows were committed meanwhile and fewer than :data:`_DEPTH`
        are out, or when the last one filled its batch or left confirms to record. Raises
        what a finished round raised.
        """
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            while rounds:
                done, _ = await asyncio.wait({*rounds, woken}, return_when=asyncio.FIRST_COMPLETED)
                for task in done & rounds:
                    rounds.discard(task)
                    if task.result() >= _BATCH:  # raises what the round raised
                        self._wake.set()
                if self._wake.is_set() and len(rounds) < _DEPTH:
                    return True
                if woken.done():  # woken while _DEPTH rounds are out: the next one waits for one of them
                    woken = asyncio.ensure_future(asyncio.Event().wait())
            return self._wake.is_set() or bool(self._confirmed)
        finally:
            woken.cancel()

    async def flush(self) -> int:
        """Record the last round's confirms, publish one batch; return how many were confirmed.

        What this batch confirmed is recorded by the next call, or by :meth:`settle`.
        """
        async with self._claiming:  # one claim at a time: the next must know what this one took
            sent, self._confirmed = self._confirmed, []  # confirms that arrive meanwhile wait for the next write
            try:
                batch = await self.ledger.claim_outbox(
                    self.owner, time.time() + self.lease, _BATCH, sent=sent, skip_requests=frozenset(self._out)
                )
            except BaseException:
                self._confirmed[:0] = sent
                raise
            chains: dict[tuple[str, str], list[OutboxMessage]] = {}
            for message in batch:
                chains.setdefault((message.request_id, message.exchange), []).append(message)
            requests = {message.request_id for message in batch}
            self._out |= requests
        if not batch:
            return 0
        # each publish adds its row to _confirmed as its confirm arrives: a round cancelled midway
        # (the stop) still knows which rows went out, and the last pass does not send them again
        try:
            results = await asyncio.gather(*(self._publish_chain(c) for c in chains.values()), return_exceptions=True)
        finally:
            self._out -= requests
        crashpoint("after_publish")
        done = sum(r for r in results if not isinstance(r, BaseException))
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.settle()  # a backoff follows, maybe longer than a lease: record the confirms now
            if not isinstance(failed[0], Exception):  # a publish's CancelledError must not end the relay
                raise ConnectionError(f"publish interrupted: {failed[0]!r}") from failed[0]
            raise failed[0]
        return done

    async def settle(self) -> None:
        """Record what the last batch confirmed; at a stop, so a restart does not publish it again.

        Holds the claim lock: a claim made meanwhile would not know these rows were sent.
        Confirms that arrive while this write is out are kept for the next one.
        """
        async with self._claiming:
            sent, self._confirmed = self._confirmed, []
            if not sent:
                return
            try:
                await self.ledger.mark_sent(sent)
            except BaseException:
                self._confirmed[:0] = sent
                raise

    async def drain(self) -> None:
        """The stop's last pass, once the loop is gone: one more batch if the broker is up, then :meth:`settle`.

        Nothing more is awaited once the pass is cancelled (its cap at the stop ran out): a
        ledger that hangs must not hold the stop.
        """
        if self.broker.connected:
            await self.flush()
        await self.settle()

    async def _publish_chain(self, messages: list[OutboxMessage]) -> int:
        """Publish one request's rows to one exchange in order, each once the one before is confirmed.

        A failure ends the chain: a later event must not reach consumers ahead of an earlier
        one that will be published again.
        """
        for message in messages:
            await self._publish(message)
        return len(messages)

    async def _publish(self, message: OutboxMessage) -> None:
        try:
            await self.broker.publish(
                message.exchange,
                message.routing_key,
                message.body,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                order_key=message.request_id,  # one job's events in order; jobs spread over the lanes
            )
        except Unroutable:
            # nobody subscribed to this status, or a reply_to queue is gone: it will not appear, so do
            # not retry forever; a missing reply queue is worth a warning, an unheard event is not
            level = log.warning if message.exchange == "" else log.debug
            level(
                "event unroutable; not retried",
                request_id=message.request_id,
                exchange=message.exchange or "(default)",
                routing_key=message.routing_key,
            )
        metrics.EVENTS_PUBLISHED.inc()
        if message.id is not None:
            self._confirmed.append(message.id)
