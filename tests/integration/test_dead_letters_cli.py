"""`videoworker dead-letters` as an operator runs it, against the real broker (and, for replays, a real daemon).

Each test has its own queue names (the ``names`` fixture), declares what it needs and
deletes it afterwards. Dead letters are made the ways they are made in production: with
the headers the daemon's consumer sets, by the broker's delivery limit (a real x-death),
and by a running daemon refusing a request.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from tests.conftest import ROOT
from videoworker.amqp import dead_letters as amqp_dead_letters
from videoworker.cli import dead_letters as cli_dead_letters
from videoworker.config import Settings
from videoworker.contract.topology import request_queue_arguments
from videoworker.testing.daemons import DaemonStarter
from videoworker.testing.recorder import until
from videoworker_devtools.simulator import SimulatorThread

GOOD = {"model": "google/veo-3.1", "prompt": "a paper boat", "duration": 4}


async def cli(settings: Settings, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``videoworker dead-letters ARGS`` in a child process, configured by environment variables only."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "videoworker",
        "dead-letters",
        *args,
        cwd=ROOT,
        env={
            **os.environ,
            "VIDEOWORKER_AMQP_URL": settings.amqp_url.get_secret_value(),
            "VIDEOWORKER_REQUEST_QUEUE": settings.request_queue,
            **(env or {}),
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


class Broker:
    """A test's own view of its queues: declare them, make dead letters, read them back."""

    def __init__(self, settings: Settings, channel: AbstractChannel) -> None:
        self.settings = settings
        self.channel = channel

    async def declare(self, delivery_limit: int = 1) -> None:
        """The daemon's topology (a short delivery limit, so a poison message is quick to make)."""
        s = self.settings
        await self.channel.declare_queue(s.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"})
        args = request_queue_arguments(delivery_limit, s.dead_letter_queue)
        await self.channel.declare_queue(s.request_queue, durable=True, arguments=args)

    async def refused(self, body: bytes | dict[str, Any], mid: str, code: str, reason: str, **props: Any) -> None:
        """A dead letter as the daemon's consumer writes it when it refuses a request."""
        headers: dict[str, Any] = {
            "x-videoworker-error-code": code,
            "x-videoworker-error": reason,
            "x-videoworker-instance": "test-host-1",
            **props.pop("headers", {}),
        }
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        message = aio_pika.Message(raw, message_id=mid, content_type="application/json", headers=headers, **props)
        await self.channel.default_exchange.publish(message, routing_key=self.settings.dead_letter_queue)

    async def poison(self, body: dict[str, Any], mid: str) -> None:
        """A request the broker dead-letters itself: rejected until the queue's delivery limit is spent."""
        before = await self.depth(self.settings.dead_letter_queue)
        message = aio_pika.Message(json.dumps(body).encode(), message_id=mid, content_type="application/json")
        await self.channel.default_exchange.publish(message, routing_key=self.settings.request_queue)
        queue = await self.channel.get_queue(self.settings.request_queue, ensure=False)
        for _ in range(10):
            got = await queue.get(no_ack=False, fail=False)
            if got is None:
                break
            await got.reject(requeue=True)
        await until(lambda: self.deeper(before), 10, "the broker to dead-letter the poison message")

    async def deeper(self, before: int) -> bool:
        return await self.depth(self.settings.dead_letter_queue) > before

    async def depth(self, name: str) -> int:
        queue = await self.channel.declare_queue(name, passive=True)
        return queue.declaration_result.message_count or 0

    async def drain(self, name: str) -> list[AbstractIncomingMessage]:
        """Everything in queue ``name``, in order, acked (a destructive read, independent of the code under test)."""
        queue = await self.channel.get_queue(name, ensure=False)
        taken = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            taken.append(message)
            await message.ack()
        return taken

    async def listen(self) -> tuple[str, list[AbstractIncomingMessage]]:
        """A reply queue the daemon may answer (server-named, so it matches reply_to_pattern)."""
        got: list[AbstractIncomingMessage] = []
        queue: AbstractQueue = await self.channel.declare_queue(exclusive=True)

        async def keep(message: AbstractIncomingMessage) -> None:
            got.append(message)
            await message.ack()

        await queue.consume(keep)
        return queue.name, got


@pytest.fixture
async def broker(make_settings: Callable[..., Settings], daemon: DaemonStarter) -> AsyncIterator[Broker]:
    settings = make_settings()
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value(), timeout=10)
    channel = await connection.channel()
    yield Broker(settings, channel)
    await daemon.stop_all()  # before the queues go, so no daemon sees its consumer cancelled
    cleanup = await connection.channel()
    await cleanup.queue_delete(settings.request_queue)
    await cleanup.queue_delete(settings.dead_letter_queue)
    await cleanup.exchange_delete(settings.events_exchange)
    await connection.close()


async def three_dead_letters(b: Broker) -> None:
    """A refused request (with a reply_to the daemon moved), a poison message, and a body that is not JSON."""
    await b.declare()
    bad_model = {**GOOD, "id": "order-1", "model": "openai/gpt-4o", "colour": "red"}
    reason = "model 'openai/gpt-4o' is not a video model"
    await b.refused(
        bad_model,
        "m-1",
        "model_unsupported",
        reason,
        correlation_id="c-1",
        headers={"x-videoworker-error-field": "model"},
    )
    await b.poison({**GOOD, "id": "order-2"}, "m-2")
    await b.refused(b"\xff not json", "m-3", "invalid_request", "the message body is not valid JSON")


async def test_list_shows_reasons_and_leaves_the_queue_unchanged(broker: Broker) -> None:
    await three_dead_letters(broker)
    code, out, err = await cli(broker.settings, "list")
    assert code == 0, err
    assert f"{broker.settings.dead_letter_queue}: 3 message(s)" in out
    lines = out.splitlines()[2:]
    assert len(lines) == 3
    assert "m-1" in lines[0] and "order-1" in lines[0] and "model_unsupported" in lines[0] and "gpt-4o" in lines[0]
    assert "m-2" in lines[1] and "order-2" in lines[1] and "delivery_limit" in lines[1]
    assert broker.settings.request_queue in lines[1]
    assert "m-3" in lines[2] and " - " in lines[2] and "invalid_request" in lines[2]

    code, out, err = await cli(broker.settings, "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["queue"] == broker.settings.dead_letter_queue and listed["depth"] == 3
    first, poison, garbage = listed["messages"]
    assert first["request_id"] == "order-1" and first["reason_code"] == "model_unsupported"
    assert first["reason"] == "model 'openai/gpt-4o' is not a video model (field model)"
    assert first["death"] is None and first["size"] > 0
    assert poison["reason_code"] == "delivery_limit" and poison["when"]
    assert poison["death"] == {"reason": "delivery_limit", "count": 1, "queue": broker.settings.request_queue}
    assert garbage["request_id"] is None and garbage["size"] == len(b"\xff not json")

    code, out, _ = await cli(broker.settings, "list", "--limit", "2")
    assert code == 0 and "3 message(s), the first 2 shown" in out and "m-3" not in out
    code, _, err = await cli(broker.settings, "list", "--limit", "5000")
    assert code == 2 and "5000" in err

    # four browses later, the queue holds the same messages in the same order
    after = await broker.drain(broker.settings.dead_letter_queue)
    assert [m.message_id for m in after] == ["m-1", "m-2", "m-3"]
    assert after[2].body == b"\xff not json"


async def test_show_by_request_id_and_by_message_id(broker: Broker) -> None:
    await three_dead_letters(broker)
    code, out, err = await cli(broker.settings, "show", "order-1")
    assert code == 0, err
    assert "message 1 of" in out and "model_unsupported: model 'openai/gpt-4o' is not a video model" in out
    assert "x-videoworker-error-field: model" in out and "x-videoworker-instance: test-host-1" in out
    assert "correlation_id     c-1" in out
    assert '"colour": "red"' in out  # the body, pretty

    code, out, err = await cli(broker.settings, "show", "m-2", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["position"] == 2 and shown["request_id"] == "order-2" and shown["body"]["id"] == "order-2"
    (death,) = shown["headers"]["x-death"]
    assert death["reason"] == "delivery_limit" and death["queue"] == broker.settings.request_queue
    assert "T" in death["time"]  # a readable time, not a raw AMQP timestamp

    code, out, err = await cli(broker.settings, "show", "m-2")
    assert code == 0 and "x-death:\n    - count=1, reason=delivery_limit" in out

    code, out, _ = await cli(broker.settings, "show", "m-3", "--max-body", "4")
    assert code == 0 and "body (not JSON, truncated):\nb'\\x…" in out

    code, _, err = await cli(broker.settings, "show", "nobody")
    assert code == 1 and "no dead letter with message_id or request id nobody" in err
    assert [m.message_id for m in await broker.drain(broker.settings.dead_letter_queue)] == ["m-1", "m-2", "m-3"]


async def test_a_missing_queue_or_broker_is_one_clear_line(broker: Broker) -> None:
    """No dead-letter queue yet: said plainly; an unreachable broker: named by host:port, never its password."""
    code, out, err = await cli(broker.settings, "list")
    assert code == 0 and f"no dead-letter queue {broker.settings.dead_letter_queue} (nothing was ever" in out
    code, _, err = await cli(broker.settings, "show", "x")
    assert code == 1 and "no dead-letter queue" in err and "Traceback" not in err
    code, out, err = await cli(broker.settings, "purge", "--all", "--yes")
    assert code == 1 and "no dead-letter queue" in err

    code, out, err = await cli(broker.settings, "list", env={"VIDEOWORKER_AMQP_URL": "amqp://ops:hunter2@127.0.0.1:1/"})
    assert code == 2 and "cannot reach RabbitMQ at 127.0.0.1:1" in err
    assert "hunter2" not in out + err and len(err.strip().splitlines()) == 1


async def test_replay_fixes_the_body_and_keeps_identity(broker: Broker) -> None:
    """The fixed message reaches the request queue with its message_id, correlation_id and reply_to; the rest stay."""
    await three_dead_letters(broker)
    await broker.refused(
        {**GOOD, "id": "order-4"}, "m-4", "invalid_request", "x", headers={"x-original-reply-to": "amq.gen-abc"}
    )
    code, out, err = await cli(
        broker.settings, "replay", "order-1", "m-4", "--set", 'model="google/veo-3.1"', "--drop-field", "colour"
    )
    assert code == 0, err
    assert "replayed #1 m-1 (request order-1, model_unsupported)" in out and "2 message(s) replayed" in out

    replayed = await broker.drain(broker.settings.request_queue)
    assert [m.message_id for m in replayed] == ["m-1", "m-4"]
    first, fourth = replayed
    assert json.loads(first.body) == {**GOOD, "id": "order-1"}
    assert first.correlation_id == "c-1" and first.content_type == "application/json"
    assert first.headers["x-videoworker-replays"] == 1
    assert not {h for h in first.headers if h.startswith("x-videoworker-error")}
    assert fourth.reply_to == "amq.gen-abc" and "x-original-reply-to" not in fourth.headers
    remaining = await broker.drain(broker.settings.dead_letter_queue)
    assert [m.message_id for m in remaining] == ["m-2", "m-3"]


async def test_replay_refuses_a_fixup_it_cannot_apply(broker: Broker) -> None:
    await three_dead_letters(broker)
    code, _, err = await cli(broker.settings, "replay", "m-1", "m-3", "--set", 'model="google/veo-3.1"')
    assert code == 2 and "message 3 (m-3) has a body that is not a JSON object" in err
    code, _, err = await cli(broker.settings, "replay", "m-1", "--set", "model=google/veo-3.1")
    assert code == 2 and "not JSON" in err and "needs quotes" in err
    code, _, err = await cli(broker.settings, "replay", "m-1", "--all")
    assert code == 2 and "not both" in err
    code, out, err = await cli(broker.settings, "replay", "--all")  # asked, and nobody answered
    assert code == 1 and "Replay every message" in out
    code, out, err = await cli(broker.settings, "replay", "--all", "--dry-run", "--set", "duration=8", "--json")
    assert code == 2 and "m-3" in err  # a dry run checks the fix-ups too
    code, out, err = await cli(broker.settings, "replay", "m-2", "nobody", "--dry-run", "--json")
    assert code == 1 and "nobody" in err
    assert json.loads(out)["replayed"][0]["message_id"] == "m-2" and json.loads(out)["not_found"] == ["nobody"]
    # nothing moved
    assert await broker.depth(broker.settings.request_queue) == 0
    assert [m.message_id for m in await broker.drain(broker.settings.dead_letter_queue)] == ["m-1", "m-2", "m-3"]


async def test_purge_by_key_removes_only_that_message(broker: Broker) -> None:
    await three_dead_letters(broker)
    code, out, err = await cli(broker.settings, "purge", "order-2", "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "purged": [{"position": 2, "message_id": "m-2", "request_id": "order-2"}],
        "not_found": [],
    }
    code, _, err = await cli(broker.settings, "purge", "--all")
    assert code == 2 and "--yes" in err
    assert await broker.depth(broker.settings.dead_letter_queue) == 2
    code, out, err = await cli(broker.settings, "purge", "m-3")
    assert code == 0 and "purged #2 m-3" in out
    assert [m.message_id for m in await broker.drain(broker.settings.dead_letter_queue)] == ["m-1"]


async def test_purge_all_with_yes_empties_the_queue(broker: Broker) -> None:
    await three_dead_letters(broker)
    code, out, err = await cli(broker.settings, "purge", "--all", "--yes")
    assert code == 0 and "3 message(s) purged" in out, err
    assert await broker.depth(broker.settings.dead_letter_queue) == 0


def test_the_cli_bound_is_the_modules() -> None:
    assert cli_dead_letters.MAX_MESSAGES == amqp_dead_letters.MAX_MESSAGES


async def test_a_refused_request_fixed_and_replayed_is_completed_by_the_daemon(
    broker: Broker, daemon: DaemonStarter, sim: SimulatorThread
) -> None:
    """Refused by the daemon, found, fixed and replayed by the operator: the producer's reply_to hears it complete."""
    await daemon()
    reply_to, replies = await broker.listen()
    request = {**GOOD, "id": "fix-me", "model": "openai/gpt-4o"}
    message = aio_pika.Message(json.dumps(request).encode(), message_id="fix-me", reply_to=reply_to, correlation_id="c")
    await broker.channel.default_exchange.publish(message, routing_key=broker.settings.request_queue)
    await until(lambda: replies, 30, "the failed reply")
    assert json.loads(replies[0].body)["error"]["code"] == "model_unsupported"
    await until(lambda: broker.deeper(0), 10, "the dead letter")

    code, out, err = await cli(broker.settings, "list", "--json")
    assert code == 0, err
    (listed,) = json.loads(out)["messages"]
    assert listed["request_id"] == "fix-me" and listed["reason_code"] == "model_unsupported"
    code, out, err = await cli(broker.settings, "show", "fix-me", "--json")
    assert json.loads(out)["headers"]["x-original-reply-to"] == reply_to

    code, out, err = await cli(broker.settings, "replay", "fix-me", "--set", 'model="google/veo-3.1"')
    assert code == 0 and "1 message(s) replayed" in out, err
    await until(lambda: len(replies) == 2, 60, "the final reply of the replayed request")
    final = json.loads(replies[1].body)
    assert final["id"] == "fix-me" and final["status"] == "completed" and final["model"] == "google/veo-3.1"
    assert replies[1].correlation_id == "c"
    assert await broker.depth(broker.settings.dead_letter_queue) == 0
    assert sim.stats()["submits"] == 1


async def test_replaying_an_id_the_daemon_already_took_is_answered_as_a_duplicate(
    broker: Broker, daemon: DaemonStarter, sim: SimulatorThread
) -> None:
    """Dedup holds: a dead copy of a completed request, replayed, gets the recorded answer and no second submit."""
    await daemon()
    reply_to, replies = await broker.listen()
    body = json.dumps({**GOOD, "id": "done-once"}).encode()
    message = aio_pika.Message(body, message_id="done-once", reply_to=reply_to, correlation_id="first")
    await broker.channel.default_exchange.publish(message, routing_key=broker.settings.request_queue)
    await until(lambda: replies, 60, "the first final reply")
    assert json.loads(replies[0].body)["status"] == "completed"

    # a copy of it in the dead-letter queue, as a poison delivery of the same request would leave it
    copy = aio_pika.Message(body, message_id="done-once", reply_to=reply_to, correlation_id="second")
    await broker.channel.default_exchange.publish(copy, routing_key=broker.settings.dead_letter_queue)
    code, out, err = await cli(broker.settings, "replay", "done-once")
    assert code == 0 and "1 message(s) replayed" in out, err
    await until(lambda: len(replies) == 2, 30, "the duplicate's answer")
    again = json.loads(replies[1].body)
    assert again["status"] == "completed" and again["job_id"] == json.loads(replies[0].body)["job_id"]
    assert replies[1].correlation_id == "second"
    assert sim.stats()["submits"] == 1
