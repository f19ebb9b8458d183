"""Shared fixtures: a real RabbitMQ (started if installed but down), the real simulator, real daemons.

Each test gets its own queue and exchange names, its own data dir and ledger, and
cleans up its broker objects, so tests never see each other's messages.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.schema_check import check_event
from videoworker.config import Settings, load_settings
from videoworker_devtools.rabbit import BrokerMissing, ensure_rabbitmq
from videoworker_devtools.simulator import SimConfig, SimulatorThread

AMQP_URL = os.environ.get("VIDEOWORKER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ROOT = Path(__file__).resolve().parent.parent


async def until(check: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> float:
    """Wait for ``check()`` (plain or awaitable); return the seconds it took, or fail naming ``what``."""
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


@pytest.fixture(scope="session")
def rabbit() -> str:
    """The broker URL; starts a local RabbitMQ if it is installed but down, else fails saying what is missing."""
    try:
        ensure_rabbitmq(AMQP_URL)
    except BrokerMissing as exc:
        pytest.exit(f"integration tests need RabbitMQ: {exc}", returncode=3)
    return AMQP_URL


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(job_seconds=(0.3, 0.8), seed=7)) as server:
        yield server


@pytest.fixture
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {"request_queue": f"t.{suffix}.requests", "events_exchange": f"t.{suffix}.events"}


@pytest.fixture
def make_settings(tmp_path: Path, rabbit: str, sim: SimulatorThread, names: dict[str, str]) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "amqp_url": rabbit,
            "openrouter_api_key": sim.api_key,
            "openrouter_base_url": sim.base_url,
            "data_dir": tmp_path / "data",
            "poll_interval": 0.1,
            "poll_max_interval": 0.5,
            "lease_seconds": 3.0,
            "shutdown_grace": 5.0,
            "log_format": "json",
            "log_level": "info",
            **names,
        }
        values.update(overrides)
        return load_settings(None, **values)

    return build


@dataclass
class Observer:
    """Listens to the events exchange, a reply queue and the dead-letter queue of one test."""

    settings: Settings
    connection: aio_pika.abc.AbstractRobustConnection
    channel: aio_pika.abc.AbstractChannel
    reply_queue: str = ""
    events: list[tuple[str, dict[str, Any], aio_pika.abc.AbstractIncomingMessage]] = field(default_factory=list)
    replies: list[tuple[dict[str, Any], aio_pika.abc.AbstractIncomingMessage]] = field(default_factory=list)
    dead: list[aio_pika.abc.AbstractIncomingMessage] = field(default_factory=list)
    #: Events and replies that broke the published schema (checked at teardown).
    schema_errors: list[str] = field(default_factory=list)

    def check(self, message: aio_pika.abc.AbstractIncomingMessage, *, reply: bool) -> None:
        """Validate one received event or reply against the published schema, remembering any failure."""
        try:
            check_event(
                message.body,
                routing_key=None if reply else message.routing_key,
                message_id=message.message_id,
                reply=reply,
            )
        except AssertionError as exc:
            self.schema_errors.append(str(exc))

    async def publish(self, body: bytes | dict[str, Any], *, reply: bool = True, **props: Any) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        props.setdefault("delivery_mode", aio_pika.DeliveryMode.PERSISTENT)
        if reply:
            props.setdefault("reply_to", self.reply_queue)
        message = aio_pika.Message(raw, **props)
        await self.channel.default_exchange.publish(message, routing_key=self.settings.request_queue)

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
        return [body for body, _ in self.replies if body["id"] == request_id]

    async def wait(self, check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
        await until(check, timeout, what)


@pytest.fixture
async def observer(make_settings: Callable[..., Settings]) -> AsyncIterator[Observer]:
    settings = make_settings()
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    channel = await connection.channel()
    # declare what the daemon declares, so messages published before it starts are kept
    from videoworker.amqp.broker import Broker

    broker = Broker(settings)
    await broker.connect(attempts=3)
    await broker.close()
    obs = Observer(settings, connection, channel)
    exchange = await channel.declare_exchange(settings.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    events_q = await channel.declare_queue(exclusive=True)
    await events_q.bind(exchange, "video.#")
    reply_q = await channel.declare_queue(exclusive=True)
    obs.reply_queue = reply_q.name

    async def on_event(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        obs.check(msg, reply=False)
        obs.events.append((msg.routing_key or "", json.loads(msg.body), msg))
        await msg.ack()

    async def on_reply(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        obs.check(msg, reply=True)
        obs.replies.append((json.loads(msg.body), msg))
        await msg.ack()

    async def on_dead(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        obs.dead.append(msg)
        await msg.ack()

    await events_q.consume(on_event)
    await reply_q.consume(on_reply)
    dead_q = await channel.declare_queue(settings.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"})
    await dead_q.consume(on_dead)
    yield obs
    checked = len(obs.events) + len(obs.replies)
    assert not obs.schema_errors, f"{len(obs.schema_errors)} of {checked} messages broke the schema:\n" + "\n".join(
        obs.schema_errors[:5]
    )
    await channel.queue_delete(settings.request_queue)
    await channel.queue_delete(settings.dead_letter_queue)
    await channel.exchange_delete(settings.events_exchange)
    await connection.close()


@pytest.fixture
async def daemon(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process daemons: ``d = await daemon(**overrides)``; all are stopped at teardown."""
    from videoworker.runtime import Daemon

    running: list[tuple[Daemon, asyncio.Task[None]]] = []

    async def start(
        plugins: dict[str, object] | None = None, plugin_config: dict[str, Any] | None = None, **overrides: Any
    ) -> Daemon:
        """``plugins``: extra plugin objects by name; ``plugin_config``: the ``[plugins.<name>]`` sections."""
        if plugin_config is not None:
            overrides["plugins"] = plugin_config
        d = Daemon(make_settings(**overrides), plugins=plugins)
        task = asyncio.create_task(d.run())
        running.append((d, task))
        async with asyncio.timeout(30):
            while not d.ready.is_set():
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        return d

    yield start
    for d, _ in running:
        d.request_stop("test teardown")
    for _, task in running:
        await asyncio.wait_for(task, 30)


class DaemonProcess:
    """``videoworker run`` as a real child process, for SIGKILL and SIGTERM tests."""

    def __init__(self, settings: Settings, log: Path, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log = log
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> None:
        s = self.settings
        inherited = {k: v for k, v in os.environ.items() if k != "VIDEOWORKER_CRASHPOINT"}
        full = {
            **inherited,
            "VIDEOWORKER_AMQP_URL": s.amqp_url.get_secret_value(),
            "OPENROUTER_API_KEY": s.openrouter_api_key.get_secret_value() if s.openrouter_api_key else "",
            "VIDEOWORKER_OPENROUTER_BASE_URL": s.openrouter_base_url,
            "VIDEOWORKER_DATA_DIR": str(s.data_dir),
            "VIDEOWORKER_LEDGER_URL": s.effective_ledger_url,
            "VIDEOWORKER_REQUEST_QUEUE": s.request_queue,
            "VIDEOWORKER_EVENTS_EXCHANGE": s.events_exchange,
            "VIDEOWORKER_POLL_INTERVAL": str(s.poll_interval),
            "VIDEOWORKER_POLL_MAX_INTERVAL": str(s.poll_max_interval),
            "VIDEOWORKER_LEASE_SECONDS": str(s.lease_seconds),
            "VIDEOWORKER_SHUTDOWN_GRACE": str(s.shutdown_grace),
            "VIDEOWORKER_LOG_FORMAT": "json",
            **self.extra_env,
            **env,
        }
        out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "videoworker", "run"], env=full, stdout=out, stderr=out, cwd=ROOT
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.wait(20)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.wait(5)


@pytest.fixture
def process(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    made: list[DaemonProcess] = []

    def build(env: dict[str, str] | None = None, **overrides: Any) -> DaemonProcess:
        p = DaemonProcess(make_settings(**overrides), tmp_path / f"daemon{len(made)}.log", env)
        made.append(p)
        return p

    yield build
    for p in made:
        p.stop()
