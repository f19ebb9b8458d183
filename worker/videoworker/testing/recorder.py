"""What a daemon under test publishes: its events, its replies, its dead letters, and a way to send it requests.

Used by the ``videoworker_recorder`` fixture and by videoworker's own tests. It declares
the daemon's topology first, so requests published before the daemon starts are kept.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from videoworker.config import Settings
from videoworker.ledger.base import OwedNotification

if TYPE_CHECKING:
    from videoworker.testing.daemons import DaemonStarter

#: Called with each received event or reply (and ``reply=True`` for replies); raise to flag it.
Check = Callable[[AbstractIncomingMessage, bool], None]


async def until(check: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> float:
    """Wait for ``check()`` (plain or awaitable) to be true; return the seconds it took, or fail naming ``what``."""
    start = time.monotonic()
    while True:
        verdict = check()
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


@dataclass
class EventRecorder:
    """Listens to one deployment's events exchange, a reply queue of its own, and the dead-letter queue."""

    settings: Settings
    connection: AbstractRobustConnection
    channel: AbstractChannel
    reply_queue: str = ""
    events: list[tuple[str, dict[str, Any], AbstractIncomingMessage]] = field(default_factory=list)
    replies: list[tuple[dict[str, Any], AbstractIncomingMessage]] = field(default_factory=list)
    dead: list[AbstractIncomingMessage] = field(default_factory=list)
    check: Check | None = None
    #: What ``check`` raised, per message (inspect or assert on it at the end of a test).
    problems: list[str] = field(default_factory=list)
    #: The daemons under test, for :meth:`notifications` (the fixture sets it).
    daemons: DaemonStarter | None = None

    @classmethod
    async def start(cls, settings: Settings, check: Check | None = None) -> EventRecorder:
        """Connect, declare the daemon's queue, exchange and dead-letter queue, and start listening."""
        from videoworker.amqp.broker import Broker

        broker = Broker(settings)
        await broker.connect(attempts=3)
        await broker.close()
        connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
        channel = await connection.channel()
        recorder = cls(settings, connection, channel, check=check)
        exchange = await channel.declare_exchange(settings.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        events = await channel.declare_queue(exclusive=True)
        await events.bind(exchange, "video.#")
        replies = await channel.declare_queue(exclusive=True)
        recorder.reply_queue = replies.name
        dead = await channel.declare_queue(
            settings.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await events.consume(recorder._on_event)
        await replies.consume(recorder._on_reply)
        await dead.consume(recorder._on_dead)
        return recorder

    async def publish(self, body: bytes | dict[str, Any], *, reply: bool = True, **props: Any) -> None:
        """Publish a request as a producer would; ``reply`` asks for the final event on this recorder's queue."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        props.setdefault("delivery_mode", aio_pika.DeliveryMode.PERSISTENT)
        if reply:
            props.setdefault("reply_to", self.reply_queue)
        await self.channel.default_exchange.publish(
            aio_pika.Message(raw, **props), routing_key=self.settings.request_queue
        )

    def finals_by_id(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{request id: {message_id: body}}`` of the final events seen on the events exchange."""
        seen: dict[str, dict[str, dict[str, Any]]] = {}
        for key, body, msg in list(self.events):
            if key in ("video.completed", "video.failed"):
                seen.setdefault(body["id"], {})[msg.message_id or f"<none>:{body['status']}"] = body
        return seen

    def finals(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Distinct final events seen on the events exchange (by message_id)."""
        found = self.finals_by_id()
        chosen = [found.get(request_id, {})] if request_id is not None else list(found.values())
        return [body for by_mid in chosen for body in by_mid.values()]

    def reply_for(self, request_id: str) -> list[dict[str, Any]]:
        """Final events received on the reply queue for ``request_id``."""
        return [body for body, _ in self.replies if body["id"] == request_id]

    def statuses(self, request_id: str) -> list[str]:
        """Routing keys of the events seen for ``request_id``, in arrival order."""
        return [key for key, body, _ in self.events if body["id"] == request_id]

    async def wait(self, check: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
        await until(check, timeout, what)

    async def final(self, request_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for ``request_id``'s final event on the reply queue and return it."""
        await until(lambda: self.reply_for(request_id), timeout, f"the final reply for {request_id}")
        return self.reply_for(request_id)[0]

    async def notifications(self, request_id: str) -> list[OwedNotification]:
        """What notifier plugins are owed for ``request_id``, as the (first) daemon's ledger holds it."""
        if self.daemons is None or not self.daemons.running:
            raise AssertionError("start a daemon first: notifications are read from its ledger")
        ledger = self.daemons.running[0][0].ledger
        return list(reversed(await ledger.list_notifications(request_id=request_id, limit=1000)))

    async def settled(self, request_id: str, timeout: float = 30.0) -> list[OwedNotification]:
        """Wait until none of ``request_id``'s notifications is pending any more; return them, oldest first."""

        async def done() -> bool:
            rows = await self.notifications(request_id)
            return bool(rows) and all(n.state != "pending" for n in rows)

        await until(done, timeout, f"the notifications of {request_id} to be delivered or given up")
        return await self.notifications(request_id)

    async def close(self, *, delete: bool = True) -> None:
        """Stop listening; with ``delete``, remove the deployment's queues and exchange (test names only)."""
        if delete:
            await self.channel.queue_delete(self.settings.request_queue)
            await self.channel.queue_delete(self.settings.dead_letter_queue)
            await self.channel.exchange_delete(self.settings.events_exchange)
        await self.connection.close()

    def _checked(self, message: AbstractIncomingMessage, reply: bool) -> None:
        if self.check is None:
            return
        try:
            self.check(message, reply)
        except AssertionError as exc:
            self.problems.append(str(exc))

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        self._checked(message, False)
        self.events.append((message.routing_key or "", json.loads(message.body), message))
        await message.ack()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        self._checked(message, True)
        self.replies.append((json.loads(message.body), message))
        await message.ack()

    async def _on_dead(self, message: AbstractIncomingMessage) -> None:
        self.dead.append(message)
        await message.ack()
