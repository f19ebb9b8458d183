"""The outbox relay: publishes what the ledger says is owed, then marks it sent.

State changes and the events they owe are written in one ledger transaction; this loop
publishes them with confirms afterwards. A crash between the confirm and the mark
republishes the message: events are at least once, and each carries a stable
``message_id`` so consumers can drop the repeat.

A round is one ledger write and one batch of publishes: the write stamps the previous
round's confirmed messages as sent and leases the next batch (``claim_outbox(sent=...)``).
An event committed while a batch is out therefore waits for one write, not two, and a
round that published anything is followed at once by one that records it.
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

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            sent = 0
            try:
                if self.broker.connected:
                    sent = await self.flush()
                else:  # the ledger may be up while the broker is not: record what it already confirmed
                    await self.settle()
                self.failures = 0
            except Exception as exc:  # noqa: BLE001 - broker or ledger trouble: back off, keep the rows
                self.failures += 1
                delay = backoff(self.failures, base=0.5, cap=15)
                log.warning("outbox publish failed; retrying", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                await asyncio.sleep(delay)
                continue
            # confirms not yet recorded: the next round records them (a flush, or a settle without the broker)
            if sent < _BATCH and not self._confirmed:
                await wait_or_time_out(self._wake, _IDLE)

    async def flush(self) -> int:
        """Record the last round's confirms, publish one batch; return how many were confirmed.

        What this batch confirmed is recorded by the next call, or by :meth:`settle`.
        """
        batch = await self.ledger.claim_outbox(self.owner, time.time() + self.lease, _BATCH, sent=self._confirmed)
        self._confirmed = []
        if not batch:
            return 0
        # each publish adds its row to _confirmed as its confirm arrives: a round cancelled midway
        # (the stop) still knows which rows went out, and the last pass does not send them again
        results = await asyncio.gather(*(self._publish(m) for m in batch), return_exceptions=True)
        crashpoint("after_publish")
        done = len(self._confirmed)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.settle()  # a backoff follows, maybe longer than a lease: record the confirms now
            if not isinstance(failed[0], Exception):  # a publish's CancelledError must not end the relay
                raise ConnectionError(f"publish interrupted: {failed[0]!r}") from failed[0]
            raise failed[0]
        return done

    async def settle(self) -> None:
        """Record what the last batch confirmed; at a stop, so a restart does not publish it again."""
        if self._confirmed:
            await self.ledger.mark_sent(self._confirmed)
            self._confirmed = []

    async def drain(self) -> None:
        """The stop's last pass, once the loop is gone: one more batch if the broker is up, then :meth:`settle`.

        Nothing more is awaited once the pass is cancelled (its cap at the stop ran out): a
        ledger that hangs must not hold the stop.
        """
        if self.broker.connected:
            await self.flush()
        await self.settle()

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
