"""Shared fixtures: a real RabbitMQ (started if installed but down), the real simulator, real daemons.

Each test gets its own queue and exchange names, its own data dir and ledger, and
cleans up its broker objects, so tests never see each other's messages.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests.schema_check import check_event
from videoworker.config import Settings, load_settings
from videoworker.testing.daemons import DaemonStarter
from videoworker.testing.recorder import EventRecorder
from videoworker_devtools.rabbit import BrokerMissing, ensure_rabbitmq
from videoworker_devtools.simulator import SimConfig, SimulatorThread

PG_URL = os.environ.get("VIDEOWORKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("VIDEOWORKER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ROOT = Path(__file__).resolve().parent.parent


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


#: What the integration tests observe: the recorder of videoworker's test kit.
Observer = EventRecorder


def _schema_check(message: aio_pika.abc.AbstractIncomingMessage, reply: bool) -> None:
    """Every event and reply a test receives must fit the published schema."""
    check_event(
        message.body,
        routing_key=None if reply else message.routing_key,
        message_id=message.message_id,
        reply=reply,
    )


@pytest.fixture
async def observer(make_settings: Callable[..., Settings]) -> AsyncIterator[EventRecorder]:
    """Listens to this test's events exchange, a reply queue and the dead-letter queue; checks every message."""
    obs = await EventRecorder.start(make_settings(), check=_schema_check)
    yield obs
    checked = len(obs.events) + len(obs.replies)
    assert not obs.problems, f"{len(obs.problems)} of {checked} messages broke the schema:\n" + "\n".join(
        obs.problems[:5]
    )
    await obs.close()


@pytest.fixture
async def daemon(make_settings: Callable[..., Settings]) -> AsyncIterator[DaemonStarter]:
    """Start in-process daemons: ``d = await daemon(plugins=…, plugin_config=…, **overrides)``; stopped at teardown."""
    starter = DaemonStarter(make_settings)
    yield starter
    await starter.stop_all()


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


@pytest.fixture
async def pg_schema() -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A fresh schema in the test database (dropped afterwards), and a pool to inspect it."""
    try:
        conn = await asyncio.wait_for(asyncpg.connect(PG_URL), 5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL} ({type(exc).__name__}: {exc})")
    await conn.close()
    schema = f"t_{uuid.uuid4().hex}"
    pool = await asyncpg.create_pool(PG_URL, min_size=1, max_size=3)
    try:
        yield pool, schema
    finally:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()
