"""Broker faults under load: the daemon notices, keeps answering, recovers.

* RabbitMQ ``stop_app`` for 30 s while jobs run: ``/readyz`` says 503 during the outage,
  results owed meanwhile wait in the outbox and are published afterwards, the consumer
  comes back.
* A blackholed connection (no FIN, no RST) through :class:`tests.tcpproxy.TcpProxy`,
  found dead by the AMQP heartbeat, then healed and reset.
* A flapping connection: an RST every 2 s for 20 s.

Every scenario checks that each request gets its final reply with one submit to the
provider, that no publish outlives ``publish_timeout``, and that the request queue ends
empty with a consumer on it. The test's own listener uses durable, named queues (the
fixture ``observer`` uses exclusive ones, which a broker restart deletes), so no reply is
lost in the harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from tests.tcpproxy import TcpProxy
from videoworker.config import Settings
from videoworker.runtime import Daemon
from videoworker.testing.recorder import until
from videoworker_devtools.simulator import SimulatorThread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
FINAL = ("completed", "failed")


# --- harness ---------------------------------------------------------------------------------


async def rabbitmqctl(*args: str, timeout: float = 120) -> str:
    """Run rabbitmqctl without blocking the event loop (the daemon under test shares it)."""
    proc = await asyncio.create_subprocess_exec(
        RABBITMQCTL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"rabbitmqctl {' '.join(args)} failed ({proc.returncode}): {text}"
    return text


@dataclass
class Listener:
    """Publishes requests and collects replies and events through durable queues that outlive a broker restart."""

    url: str
    settings: Settings
    prefix: str
    connection: AbstractConnection | None = None
    channel: AbstractChannel | None = None
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    events: dict[str, set[str]] = field(default_factory=dict)

    @property
    def reply_queue(self) -> str:
        return f"{self.prefix}.replies"

    @property
    def reply_pattern(self) -> str:
        """A durable, named reply queue (it must outlive a broker restart) is allowed by name."""
        return re.escape(self.reply_queue)

    @property
    def events_queue(self) -> str:
        return f"{self.prefix}.events-seen"

    async def start(self) -> None:
        self.connection = await aio_pika.connect(self.url, timeout=10)
        self.channel = await self.connection.channel()
        quorum: dict[str, Any] = {"x-queue-type": "quorum"}
        exchange = await self.channel.declare_exchange(
            self.settings.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        events = await self.channel.declare_queue(self.events_queue, durable=True, arguments=quorum)
        await events.bind(exchange, "video.#")
        replies = await self.channel.declare_queue(self.reply_queue, durable=True, arguments=quorum)
        await events.consume(self._on_event)
        await replies.consume(self._on_reply)

    async def restart(self) -> None:
        """A fresh connection after the broker came back; what was published meanwhile waits in the queues."""
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.connection.close()
            self.connection = self.channel = None

    async def _on_event(self, msg: AbstractIncomingMessage) -> None:
        body = json.loads(msg.body)
        self.events.setdefault(body["id"], set()).add(msg.routing_key or "")
        await msg.ack()

    async def _on_reply(self, msg: AbstractIncomingMessage) -> None:
        body = json.loads(msg.body)
        self.replies.setdefault(body["id"], []).append(body)
        await msg.ack()

    async def publish(self, request_id: str) -> None:
        assert self.channel is not None
        body = {"id": request_id, "model": "google/veo-3.1", "prompt": prompt(request_id)}
        message = aio_pika.Message(
            json.dumps(body).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT, reply_to=self.reply_queue
        )
        await self.channel.default_exchange.publish(message, routing_key=self.settings.request_queue)

    def answered(self, ids: list[str]) -> bool:
        return all(any(b["status"] in FINAL for b in self.replies.get(i, ())) for i in ids)

    def finals_on_exchange(self, ids: list[str]) -> bool:
        return all(self.events.get(i, set()) & {"video.completed", "video.failed"} for i in ids)

    async def queue_stats(self, name: str) -> tuple[int, int]:
        """(messages, consumers) of ``name``, by passive declare on a throwaway channel."""
        assert self.connection is not None
        async with self.connection.channel() as channel:
            queue = await channel.declare_queue(name, passive=True)
            result = queue.declaration_result
            return result.message_count or 0, result.consumer_count or 0


def prompt(request_id: str) -> str:
    return f"broker outage {request_id}"


@pytest.fixture
async def listener(make_settings: Callable[..., Settings], rabbit: str) -> AsyncIterator[Listener]:
    settings = make_settings()
    harness = Listener(rabbit, settings, settings.request_queue.rsplit(".", 1)[0])
    yield harness
    await harness.stop()
    # a fresh connection: the test may have left the broker just restarted
    connection = await _connect_retrying(rabbit, 60)
    async with connection:
        channel = await connection.channel()
        for queue in (settings.request_queue, settings.dead_letter_queue, harness.reply_queue, harness.events_queue):
            await channel.queue_delete(queue)
        await channel.exchange_delete(settings.events_exchange)


async def _connect_retrying(url: str, patience: float) -> AbstractConnection:
    deadline = time.monotonic() + patience
    while True:
        try:
            return await aio_pika.connect(url, timeout=10)
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


@pytest.fixture
def broker_app_restored() -> Iterator[None]:
    """Backstop for the ``stop_app`` test (its own ``finally`` restores first): the app runs again afterwards."""
    yield
    subprocess.run([RABBITMQCTL, "start_app"], check=False, capture_output=True, timeout=120)
    subprocess.run([RABBITMQCTL, "await_startup"], check=False, capture_output=True, timeout=120)


@pytest.fixture
async def proxy(rabbit: str) -> AsyncIterator[TcpProxy]:
    """A proxy to the broker; request it before ``daemon`` so the daemon stops before the proxy closes."""
    parts = urlsplit(rabbit)
    async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672) as running:
        yield running


@dataclass
class Sample:
    t: float
    ready_status: int | None  # None: no answer within the probe timeout
    ready: dict[str, Any]
    alive: bool


class HealthWatch:
    """Samples ``/healthz`` and ``/readyz`` every 0.2 s in the background."""

    def __init__(self, port: int | None) -> None:
        assert port is not None, "the daemon was started without health_port"
        self.base = f"http://127.0.0.1:{port}"
        self.samples: list[Sample] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HealthWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        probe = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=probe) as http:
            while True:
                t = time.monotonic()
                status, report, alive = None, {}, False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{self.base}/readyz") as answer:
                        status, report = answer.status, await answer.json()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{self.base}/healthz") as answer:
                        alive = answer.status == 200
                self.samples.append(Sample(t, status, report, alive))
                await asyncio.sleep(0.2)

    def since(self, start: float, end: float = float("inf")) -> list[Sample]:
        return [s for s in self.samples if start <= s.t <= end]

    async def wait(self, check: Callable[[Sample], bool], after: float, timeout: float, what: str) -> float:
        """Wait for a sample taken at or after ``after`` that passes; return its time."""

        async def seen() -> bool:
            return any(check(s) for s in self.since(after))

        await until(seen, timeout, what)
        return next(s.t for s in self.since(after) if check(s))


def not_ready(s: Sample) -> bool:
    return s.ready_status == 503 and s.ready.get("broker_connected") is False


def ready(s: Sample) -> bool:
    return s.ready_status == 200 and s.ready.get("ready") is True and s.ready.get("broker_connected") is True


class PublishWatch:
    """Times every ``Broker.publish`` of one daemon, so a publish hanging past its timeout shows."""

    def __init__(self, daemon: Daemon) -> None:
        self.timeout = daemon.settings.publish_timeout
        self.durations: list[float] = []
        self.pending: dict[int, float] = {}
        self.errors: Counter[str] = Counter()
        original = daemon.broker.publish

        async def timed(*args: Any, **kwargs: Any) -> None:
            key, start = id(asyncio.current_task()), time.monotonic()
            self.pending[key] = start
            try:
                await original(*args, **kwargs)
            except BaseException as exc:
                self.errors[type(exc).__name__] += 1
                raise
            finally:
                self.pending.pop(key, None)
                self.durations.append(time.monotonic() - start)

        daemon.broker.publish = timed  # type: ignore[method-assign]

    def check(self) -> None:
        slack = 2.0
        longest = max(self.durations, default=0.0)
        assert longest <= self.timeout + slack, f"a publish took {longest:.1f}s (publish_timeout {self.timeout}s)"
        now = time.monotonic()
        stuck = [now - t for t in self.pending.values() if now - t > self.timeout + slack]
        assert not stuck, f"publishes still waiting after {max(stuck):.1f}s"

    def summary(self) -> str:
        longest = max(self.durations, default=0.0)
        return f"{len(self.durations)} publishes, longest {longest:.2f}s, errors {dict(self.errors) or 'none'}"


async def sim_stats(sim: SimulatorThread) -> dict[str, Any]:
    return await asyncio.to_thread(sim.stats)


async def submitted(sim: SimulatorThread, ids: list[str]) -> int:
    prompts = {prompt(i) for i in ids}
    jobs = (await sim_stats(sim))["jobs"].values()
    return sum(1 for job in jobs if job["body"].get("prompt") in prompts)


async def all_submitted(sim: SimulatorThread, ids: list[str]) -> bool:
    return await submitted(sim, ids) == len(ids)


async def assert_one_submit_each(sim: SimulatorThread, ids: list[str]) -> None:
    stats = await sim_stats(sim)
    jobs = Counter(job["body"].get("prompt") for job in stats["jobs"].values())
    posts = Counter(e.get("prompt") for e in stats["requests"] if e["method"] == "POST")
    wrong = {i: (jobs[prompt(i)], posts[prompt(i)]) for i in ids if (jobs[prompt(i)], posts[prompt(i)]) != (1, 1)}
    assert not wrong, f"(jobs, POSTs) per request, expected (1, 1): {wrong}"


async def assert_recovered(listener: Listener, settings: Settings, ids: list[str]) -> None:
    """Every request answered (one final status each), on the exchange too, and the queue empty with a consumer."""
    for i in ids:
        statuses = {b["status"] for b in listener.replies[i]}
        assert statuses == {"completed"}, f"{i}: {listener.replies[i]}"
    # events and replies travel on different channels, so the events may trail the replies a little
    await until(lambda: listener.finals_on_exchange(ids), 15, "a final event on the exchange for every request")

    async def drained() -> bool:
        messages, consumers = await listener.queue_stats(settings.request_queue)
        return messages == 0 and consumers == 1

    await until(drained, 15, "an empty request queue with exactly one consumer")


def proxied_url(url: str, port: int, query: str = "") -> str:
    parts = urlsplit(url)
    auth = f"{parts.username or 'guest'}:{parts.password or 'guest'}@"
    return f"{parts.scheme}://{auth}127.0.0.1:{port}{parts.path or '/'}{query}"


# --- R5: stop_app under load -----------------------------------------------------------------------


@pytest.mark.serial  # stops the whole RabbitMQ node: no other test may run meanwhile
async def test_rabbitmq_stop_app_for_30s_under_load(
    listener: Listener, daemon: Any, sim: SimulatorThread, broker_app_restored: None
) -> None:
    sim.configure(job_seconds=[3.0, 6.0])
    d: Daemon = await daemon(health_port=0, reply_to_pattern=listener.reply_pattern)
    settings = d.settings
    publishes = PublishWatch(d)
    await listener.start()
    ids = [f"stop-{i}" for i in range(30)]
    for i in ids:
        await listener.publish(i)
    await until(lambda: all_submitted(sim, ids), 30, "every request submitted before the outage")

    async with HealthWatch(d.health_port) as health:
        await health.wait(ready, time.monotonic(), 10, "/readyz 200 before the outage")
        before = await d.ledger.counts()
        t_stop = time.monotonic()
        try:
            await rabbitmqctl("stop_app")
            t_down = time.monotonic()
            t_noticed = await health.wait(not_ready, t_stop, 10, "/readyz 503 with broker_connected false")
            await asyncio.sleep(max(0.0, t_down + 30 - time.monotonic()))
            during = await d.ledger.counts()
            t_restart = time.monotonic()
        finally:
            await rabbitmqctl("start_app")
            await rabbitmqctl("await_startup")
        t_up = time.monotonic()
        await listener.restart()

        t_ready = await health.wait(ready, t_up, 30, "/readyz 200 after start_app")

        async def consumer_back() -> bool:
            return (await listener.queue_stats(settings.request_queue))[1] >= 1

        consumer_s = await until(consumer_back, 30, "consumer_count >= 1 after start_app", every=0.5)
        drain_s = await until(lambda: listener.answered(ids), 60, "a final reply for every request")

    outage = health.since(t_down + 1, t_restart)
    assert len(outage) > 50, f"only {len(outage)} health samples during the outage"
    assert all(not_ready(s) for s in outage), [s for s in outage if not not_ready(s)][:3]
    assert all(s.alive for s in outage), "/healthz did not answer during the outage"
    # jobs that ended while the broker was down were recorded and waited in the outbox
    finished_during = during["done"] - before["done"]
    assert during["done"] == len(ids) and finished_during > 0, (before, during)
    assert during["outbox_pending"] >= finished_during, during
    await assert_recovered(listener, settings, ids)
    await assert_one_submit_each(sim, ids)
    assert (await d.ledger.counts())["outbox_pending"] == 0
    publishes.check()
    print(
        f"\nR5 stop_app: broker down {t_restart - t_down:.1f}s (stop_app took {t_down - t_stop:.1f}s, "
        f"start_app+await_startup {t_up - t_restart:.1f}s); /readyz 503 {t_noticed - t_stop:.1f}s after stop_app; "
        f"{finished_during} jobs finished during the outage, {during['outbox_pending']} outbox rows waiting; "
        f"after start_app: ready in {t_ready - t_up:.1f}s, consumer back in {consumer_s:.1f}s, "
        f"all {len(ids)} replies in {drain_s:.1f}s more; {publishes.summary()}"
    )


# --- R7: blackhole, then heal and reset ----------------------------------------------------------


HEARTBEAT = 2


async def test_blackholed_connection_is_detected_then_recovers(
    listener: Listener, proxy: TcpProxy, daemon: Any, sim: SimulatorThread, rabbit: str
) -> None:
    sim.configure(job_seconds=[2.0, 5.0])
    d: Daemon = await daemon(
        amqp_url=proxied_url(rabbit, proxy.port, f"?heartbeat={HEARTBEAT}"),
        health_port=0,
        publish_timeout=5.0,
        reply_to_pattern=listener.reply_pattern,
    )
    settings = d.settings
    publishes = PublishWatch(d)
    await listener.start()
    ids = [f"hole-{i}" for i in range(20)]
    for i in ids:
        await listener.publish(i)
    await until(lambda: all_submitted(sim, ids), 30, "every request submitted")
    async with HealthWatch(d.health_port) as health:
        await health.wait(ready, time.monotonic(), 10, "/readyz 200 before the fault")
        connections = proxy.connections_total
        t_hole = time.monotonic()
        proxy.blackhole()
        # aiormq declares a connection dead after (heartbeat + 1) * 3 s without a frame
        t_noticed = await health.wait(not_ready, t_hole, 30, "/readyz 503 while blackholed")
        await asyncio.sleep(max(0.0, t_hole + 3 * HEARTBEAT + 2 - time.monotonic(), t_noticed + 2 - time.monotonic()))
        hole = health.since(t_noticed, time.monotonic())
        proxy.heal()
        proxy.reset()
        t_heal = time.monotonic()
        t_ready = await health.wait(ready, t_heal, 30, "/readyz 200 after heal + reset")

        async def consumer_back() -> bool:
            return (await listener.queue_stats(settings.request_queue))[1] >= 1

        consumer_s = await until(consumer_back, 30, "consumer_count >= 1 after the heal", every=0.5)
        drain_s = await until(lambda: listener.answered(ids), 60, "a final reply for every request")
    # aiormq's bound (reliability.md R7 asks for 2x heartbeat, which aiormq 7.2 cannot do)
    assert t_noticed - t_hole <= (HEARTBEAT + 1) * 3 + 3, f"dead connection noticed after {t_noticed - t_hole:.1f}s"
    assert proxy.connections_total > connections, "the daemon never reconnected"
    assert hole and all(not_ready(s) and s.alive for s in hole), hole[:3]
    await assert_recovered(listener, settings, ids)
    await assert_one_submit_each(sim, ids)
    publishes.check()
    print(
        f"\nR7 blackhole (heartbeat {HEARTBEAT}s): blackholed {t_heal - t_hole:.1f}s; dead connection noticed "
        f"after {t_noticed - t_hole:.1f}s; after heal+reset: ready in {t_ready - t_heal:.1f}s, consumer back in "
        f"{consumer_s:.1f}s, all {len(ids)} replies in {drain_s:.1f}s more; "
        f"{proxy.connections_total - connections} new connections; {publishes.summary()}"
    )


# --- R8: flapping ---------------------------------------------------------------------------------


async def test_flapping_connection_loses_nothing(
    listener: Listener, proxy: TcpProxy, daemon: Any, sim: SimulatorThread, rabbit: str
) -> None:
    sim.configure(job_seconds=[1.0, 4.0])
    d: Daemon = await daemon(
        amqp_url=proxied_url(rabbit, proxy.port),
        health_port=0,
        publish_timeout=5.0,
        reply_to_pattern=listener.reply_pattern,
    )
    settings = d.settings
    publishes = PublishWatch(d)
    await listener.start()
    ids = [f"flap-{i}" for i in range(30)]
    for i in ids[:15]:
        await listener.publish(i)
    async with HealthWatch(d.health_port) as health:
        t_start = time.monotonic()

        async def flap() -> None:
            for _ in range(10):
                await asyncio.sleep(2)
                proxy.reset()

        flapping = asyncio.create_task(flap())
        for i in ids[15:]:  # more load arrives while the connection flaps
            await asyncio.sleep(1)
            await listener.publish(i)
        await flapping
        t_end = time.monotonic()
        t_ready = await health.wait(ready, t_end, 30, "/readyz 200 after the flapping")
        drain_s = await until(lambda: listener.answered(ids), 60, "a final reply for every request")
        # the consumer is not stuck: a request sent now is taken and answered
        probe = "flap-after"
        await listener.publish(probe)
        probe_s = await until(lambda: listener.answered([probe]), 30, "a reply to a request sent afterwards")
        ids.append(probe)
        flaps = health.since(t_start, t_end)
    assert any(not_ready(s) for s in flaps), "/readyz never reported the broken connections"
    assert all(s.alive for s in flaps), "/healthz did not answer while the connection flapped"
    await assert_recovered(listener, settings, ids)
    await assert_one_submit_each(sim, ids)
    await until(lambda: proxy.connections_open == 1, 10, "exactly one connection through the proxy")
    publishes.check()
    print(
        f"\nR8 flapping: {proxy.resets} resets over {t_end - t_start:.1f}s, {proxy.connections_total} "
        f"connections in all; ready {t_ready - t_end:.1f}s after the last reset; all {len(ids) - 1} replies "
        f"{drain_s:.1f}s after ready; a later request answered in {probe_s:.1f}s; {publishes.summary()}"
    )
