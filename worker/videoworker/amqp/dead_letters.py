"""The dead-letter queue, seen from outside: browse it, replay or purge chosen messages.

Each function takes the whole queue (up to :data:`MAX_MESSAGES`) with ``basic.get`` and
holds it unacked; what it removes it acks (after a confirmed republish, for a replay), and
the rest goes back with ``basic.nack(requeue)`` in the order taken. The whole queue, not
only what is shown: RabbitMQ before 4.0 puts a returned message behind the others, so
returning all of it is what keeps the order. A process killed midway loses nothing (the
broker returns what was unacked). A browse leaves only ``redelivered`` and, where the
broker counts returns, ``x-delivery-count``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelNotFoundEntity, DeliveryError, PublishError

from videoworker.config import Settings
from videoworker.errors import WorkerError

T = TypeVar("T")

#: Most messages one command takes from the queue (``list --limit``, or the scan for keys).
MAX_MESSAGES = 1000
#: Headers the daemon or the broker added on the way to the dead-letter queue; a replay drops them.
_DEATH_HEADERS = ("x-death", "x-delivery-count", "x-acquired-count", "x-original-reply-to")
_DEATH_PREFIXES = ("x-videoworker-error", "x-videoworker-instance", "x-first-death-", "x-last-death-")
#: How often a message was replayed, so one going round in circles shows it.
REPLAYS_HEADER = "x-videoworker-replays"


class DeadLetterError(WorkerError):
    """Something the operator must hear about in one line: the broker, a missing queue, a bad fix-up."""


class NoDeadLetterQueue(DeadLetterError):
    """The dead-letter queue does not exist: nothing was dead-lettered yet, or no daemon declared it."""


@dataclass
class DeadLetter:
    """One dead-lettered message: its properties, headers (as aio-pika decoded them) and body."""

    position: int
    body: bytes
    headers: dict[str, Any]
    message_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = None
    reply_to: str | None = None
    timestamp: datetime | None = None
    redelivered: bool = False
    request_id: str | None = None  # the body's string "id", when the body is a JSON object with one
    _message: AbstractIncomingMessage | None = field(default=None, repr=False, compare=False)

    @property
    def deaths(self) -> list[dict[str, Any]]:
        """The broker's ``x-death`` entries (newest first), when the broker dead-lettered it."""
        value = self.headers.get("x-death")
        return [d for d in value if isinstance(d, dict)] if isinstance(value, list) else []

    def json_body(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def matches(self, keys: set[str]) -> bool:
        return bool({self.message_id, self.request_id} & keys)


@dataclass(frozen=True)
class Fix:
    """A fix-up of a JSON object body before a replay: top-level fields set (to JSON values) or dropped."""

    set: dict[str, Any] = field(default_factory=dict)
    drop: tuple[str, ...] = ()

    def apply(self, letter: DeadLetter) -> bytes:
        """The fixed body; the original bytes untouched when there is nothing to fix."""
        if not (self.set or self.drop):
            return letter.body
        parsed = letter.json_body()
        if not isinstance(parsed, dict):
            raise DeadLetterError(
                f"message {letter.position} ({letter.message_id or 'no message_id'}) has a body that is not a JSON "
                "object, so --set/--drop-field cannot apply; replay it without a fix-up or purge it"
            )
        for name in self.drop:
            parsed.pop(name, None)
        parsed.update(self.set)
        return json.dumps(parsed, ensure_ascii=False).encode()


async def _ack(letter: DeadLetter) -> None:
    """Remove ``letter`` from the queue for good."""
    message, letter._message = letter._message, None
    assert message is not None
    await message.ack()


async def connect(settings: Settings) -> AbstractConnection:
    """A plain connection (a command fails fast); a failure names host:port, never the password."""
    url = settings.amqp_url.get_secret_value()
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    try:
        return await aio_pika.connect(url, timeout=10, client_properties={"connection_name": "videoworker cli"})
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
        detail = str(exc) or "no answer"
        if parts.password:
            detail = detail.replace(parts.password, "***")
        raise DeadLetterError(
            f"cannot reach RabbitMQ at {where} (vhost {vhost}): {type(exc).__name__}: {detail}"
        ) from None


async def session(settings: Settings, work: Callable[[AbstractConnection], Awaitable[T]]) -> T:
    """Connect, run ``work``, close; a broker failure midway becomes a :class:`DeadLetterError`."""
    connection = await connect(settings)
    try:
        return await work(connection)
    except (ConnectionError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
        raise DeadLetterError(f"the broker connection failed midway: {type(exc).__name__}: {exc}") from None
    finally:
        with suppress(Exception):
            await connection.close()


async def depth(connection: AbstractConnection, name: str) -> int | None:
    """Messages ready in queue ``name`` (passive declare), or None when it does not exist."""
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        return None  # the broker closed this channel
    with suppress(Exception):
        await channel.close()
    return queue.declaration_result.message_count or 0


def missing_queue(name: str) -> NoDeadLetterQueue:
    return NoDeadLetterQueue(
        f"no dead-letter queue {name} (nothing was ever dead-lettered, or the daemon never declared it)"
    )


@asynccontextmanager
async def take(connection: AbstractConnection, settings: Settings) -> AsyncIterator[tuple[int, list[DeadLetter]]]:
    """(queue length, the messages taken: all there were, up to MAX_MESSAGES); unsettled ones go back on exit."""
    name = settings.dead_letter_queue
    count = await depth(connection, name)
    if count is None:
        raise missing_queue(name)
    channel = await connection.channel()
    letters: list[DeadLetter] = []
    try:
        queue = await channel.get_queue(name, ensure=False)
        while len(letters) < min(count, MAX_MESSAGES):
            message = await queue.get(no_ack=False, fail=False, timeout=10)
            if message is None:
                break
            letters.append(_letter(len(letters) + 1, message))
        yield count, letters
    finally:
        # nack (not reject, not a channel close): on RabbitMQ 4.3+ only that return leaves x-delivery-count alone
        for letter in letters:
            if letter._message is not None:
                with suppress(Exception):  # a dead channel returns them all by itself
                    await letter._message.nack(requeue=True)
                letter._message = None
        with suppress(Exception):
            await channel.declare_queue(name, passive=True, timeout=10)  # a round trip: every ack and nack arrived
            await channel.close()


async def browse(connection: AbstractConnection, settings: Settings, limit: int) -> tuple[int, list[DeadLetter]]:
    """(queue length, its first ``limit`` messages); the queue is left as it was."""
    async with take(connection, settings) as (count, letters):
        return count, letters[:limit]


async def replay(
    connection: AbstractConnection,
    settings: Settings,
    keys: set[str] | None,
    fix: Fix,
    *,
    dry_run: bool = False,
    on_each: Callable[[DeadLetter, bytes], None] = lambda letter, body: None,
) -> tuple[list[DeadLetter], set[str]]:
    """Republish the messages matching ``keys`` (None: all) to the request queue, fixed; (replayed, keys not found).

    Each is published persistently, ``mandatory``, with a publisher confirm, and only then
    acked here: a crash in between replays it twice at worst, and the daemon's ledger
    answers the second copy as a duplicate.
    """
    if await depth(connection, settings.request_queue) is None and not dry_run:
        raise DeadLetterError(
            f"no request queue {settings.request_queue}: start the daemon once (nothing was replayed)"
        )
    publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
    done: list[DeadLetter] = []
    try:
        async with take(connection, settings) as (_, letters):
            chosen = [letter for letter in letters if keys is None or letter.matches(keys)]
            bodies = [fix.apply(letter) for letter in chosen]  # every fix-up checked before anything is published
            for letter, body in zip(chosen, bodies, strict=True):
                if not dry_run:
                    await _republish(publisher, settings, letter, body)
                    await _ack(letter)
                done.append(letter)
                on_each(letter, body)
    finally:
        with suppress(Exception):
            await publisher.close()
    return done, (keys or set()) - _keys_of(done)


async def purge(
    connection: AbstractConnection, settings: Settings, keys: set[str]
) -> tuple[list[DeadLetter], set[str]]:
    """Delete the messages matching ``keys``; (deleted, keys not found). The others stay, in order."""
    async with take(connection, settings) as (_, letters):
        chosen = [letter for letter in letters if letter.matches(keys)]
        for letter in chosen:
            await _ack(letter)
    return chosen, keys - _keys_of(chosen)


async def purge_all(connection: AbstractConnection, settings: Settings) -> int:
    """Delete every message of the dead-letter queue; how many there were."""
    name = settings.dead_letter_queue
    if await depth(connection, name) is None:
        raise missing_queue(name)
    channel = await connection.channel()
    queue = await channel.get_queue(name, ensure=False)
    result = await queue.purge()
    await channel.close()
    return int(result.message_count or 0)


async def _republish(publisher: AbstractChannel, settings: Settings, letter: DeadLetter, body: bytes) -> None:
    headers = {
        name: _wire(value)
        for name, value in letter.headers.items()
        if name not in _DEATH_HEADERS and not name.startswith(_DEATH_PREFIXES)
    }
    original = letter.headers.get("x-original-reply-to")  # where the daemon moved reply_to
    previous = letter.headers.get(REPLAYS_HEADER, 0)
    headers[REPLAYS_HEADER] = (previous if isinstance(previous, int) else 0) + 1
    message = aio_pika.Message(
        body,
        headers=headers,
        content_type=letter.content_type or "application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=letter.message_id,
        correlation_id=letter.correlation_id,
        reply_to=letter.reply_to or (original if isinstance(original, str) else None),
        timestamp=letter.timestamp,
    )
    what = f"message {letter.position} ({letter.message_id or letter.request_id or 'no id'})"
    try:
        async with asyncio.timeout(settings.publish_timeout):
            await publisher.default_exchange.publish(message, routing_key=settings.request_queue, mandatory=True)
    except PublishError:
        raise DeadLetterError(f"{what}: the broker returned it (no queue {settings.request_queue}); it stays") from None
    except DeliveryError as exc:
        raise DeadLetterError(f"{what}: the broker refused the publish ({exc}); it stays") from None
    except TimeoutError:
        raise DeadLetterError(f"{what}: no publisher confirm within {settings.publish_timeout:g}s; it stays") from None


def _letter(position: int, message: AbstractIncomingMessage) -> DeadLetter:
    letter = DeadLetter(
        position,
        message.body,
        dict(message.headers or {}),
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        reply_to=message.reply_to,
        timestamp=message.timestamp,
        redelivered=bool(message.redelivered),
        _message=message,
    )
    parsed = letter.json_body()
    found = parsed.get("id") if isinstance(parsed, dict) else None
    letter.request_id = found if isinstance(found, str) else None
    return letter


def _wire(value: Any) -> Any:
    """A received header value as aio-pika can send it again (it encodes ``bytearray``, not ``bytes``)."""
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _keys_of(letters: list[DeadLetter]) -> set[str]:
    return {key for letter in letters for key in (letter.message_id, letter.request_id) if key}
