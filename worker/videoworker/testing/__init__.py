"""videoworker's pytest plugin: a running simulator, a ledger, daemons wired to them, and a recorder.

Installed with videoworker (entry point ``pytest11``), so a plugin distribution's tests
can drive the real pipeline in a few lines::

    async def test_my_notifier(videoworker_daemon, videoworker_recorder):
        await videoworker_daemon(plugin_config={"mine": {"url": "http://127.0.0.1:9/"}})
        await videoworker_recorder.publish({"id": "r-1", "model": "google/veo-3.1", "prompt": "a boat"})
        event = await videoworker_recorder.final("r-1")
        assert event["status"] == "completed"
        rows = await videoworker_recorder.settled("r-1")   # its notifications, once delivered or given up

Fixtures (all function-scoped, all cleaned up):

``videoworker_simulator``
    The OpenRouter simulator on a free port (needs ``videoworker-devtools``).
``videoworker_settings``
    ``make(**overrides) -> Settings`` with a temp data dir, this test's own queue and exchange
    names, the simulator's URL and key, and quick polls.
``videoworker_ledger``
    An open SQLite ledger in a temp dir.
``videoworker_daemon``
    ``await start(plugins=None, plugin_config=None, **overrides) -> Daemon``: in-process
    daemons on those settings, stopped at teardown. Needs RabbitMQ
    (``VIDEOWORKER_TEST_AMQP_URL``, default ``amqp://guest:guest@127.0.0.1:5672/``).
``videoworker_recorder``
    An :class:`~videoworker.testing.recorder.EventRecorder` on the same names: ``publish``,
    ``final``, ``finals``, ``reply_for``, ``statuses``, ``dead``, ``notifications(id)`` and
    ``settled(id)`` (waits until none of the request's notifications is pending).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from videoworker.config import Settings, load_settings

if TYPE_CHECKING:
    from videoworker.ledger.sqlite import SQLiteLedger
    from videoworker.testing.daemons import DaemonStarter
    from videoworker.testing.recorder import EventRecorder
    from videoworker_devtools.simulator import SimulatorThread

AMQP_URL = os.environ.get("VIDEOWORKER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def videoworker_amqp_url() -> str:
    """The broker tests use; a local RabbitMQ that is installed but down is started."""
    try:
        from videoworker_devtools.rabbit import BrokerMissing, ensure_rabbitmq
    except ImportError:  # without the dev tools, the broker must already be up
        return AMQP_URL
    try:
        ensure_rabbitmq(AMQP_URL)
    except BrokerMissing as exc:
        pytest.skip(f"needs RabbitMQ: {exc}")
    return AMQP_URL


@pytest.fixture
def videoworker_simulator() -> Iterator[SimulatorThread]:
    """The OpenRouter simulator, quick jobs, seeded."""
    try:
        from videoworker_devtools.simulator import SimConfig, SimulatorThread
    except ImportError:
        pytest.skip(
            "needs the simulator: pip install videoworker-devtools (from a checkout: pip install -e ./devtools)"
        )
    with SimulatorThread(SimConfig(job_seconds=(0.2, 0.5), seed=5)) as server:
        yield server


@pytest.fixture
def videoworker_settings(
    tmp_path: Path, videoworker_amqp_url: str, videoworker_simulator: SimulatorThread
) -> Callable[..., Settings]:
    """``make(**overrides)``: settings for one test's daemons, on names no other test uses."""
    suffix = uuid.uuid4().hex[:8]

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "amqp_url": videoworker_amqp_url,
            "openrouter_api_key": videoworker_simulator.api_key,
            "openrouter_base_url": videoworker_simulator.base_url,
            "data_dir": tmp_path / "data",
            "request_queue": f"t.{suffix}.requests",
            "events_exchange": f"t.{suffix}.events",
            "poll_interval": 0.1,
            "poll_max_interval": 0.5,
            "lease_seconds": 3.0,
            "shutdown_grace": 5.0,
            "log_format": "json",
            **overrides,
        }
        return load_settings(None, **values)

    return make


@pytest.fixture
async def videoworker_ledger(tmp_path: Path) -> AsyncIterator[SQLiteLedger]:
    """An open SQLite ledger of its own."""
    from videoworker.ledger.sqlite import SQLiteLedger

    ledger = SQLiteLedger(tmp_path / "test-ledger.sqlite3")
    await ledger.open()
    yield ledger
    await ledger.close()


@pytest.fixture
async def videoworker_daemon(videoworker_settings: Callable[..., Settings]) -> AsyncIterator[DaemonStarter]:
    """Start in-process daemons: ``d = await videoworker_daemon(**overrides)``; stopped at teardown."""
    from videoworker.testing.daemons import DaemonStarter

    starter = DaemonStarter(videoworker_settings)
    yield starter
    await starter.stop_all()


@pytest.fixture
async def videoworker_recorder(
    videoworker_settings: Callable[..., Settings], videoworker_daemon: DaemonStarter
) -> AsyncIterator[EventRecorder]:
    """Records the events, replies and dead letters of this test's daemons; publishes requests to them."""
    from videoworker.testing.recorder import EventRecorder

    recorder = await EventRecorder.start(videoworker_settings())
    recorder.daemons = videoworker_daemon
    yield recorder
    await videoworker_daemon.stop_all()  # before the queues go, so no daemon sees its consumer cancelled
    await recorder.close()
