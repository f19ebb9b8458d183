"""Fixtures for the core without a broker: a real SQLite ledger, the real simulator, an in-memory publisher.

The engine, intake and outbox relay run exactly as in the daemon; only the AMQP side is
replaced, by :class:`MemoryPublisher`, which records what the relay publishes. Settings
are passed in (``rig(job_timeout=1)``), never patched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import MemoryPublisher, make_request
from videoworker.config import Settings, load_settings
from videoworker.core.engine import Engine
from videoworker.core.intake import Intake
from videoworker.core.jobs import Job
from videoworker.core.notifier import Notifier
from videoworker.core.states import JobState
from videoworker.ledger.base import JobRecord, ReplyTarget
from videoworker.ledger.outbox import OutboxRelay
from videoworker.ledger.sqlite import SQLiteLedger
from videoworker.plugins.hooks import Hooks
from videoworker.plugins.manager import make_plugin_manager
from videoworker.provider.catalogue import CatalogueCache
from videoworker.provider.client import OpenRouterClient
from videoworker.testing.recorder import until
from videoworker_devtools.simulator import SimConfig, SimulatorThread


@dataclass
class Rig:
    """One instance's core, wired as the daemon wires it, minus the broker."""

    settings: Settings
    sim: SimulatorThread
    ledger: SQLiteLedger
    client: OpenRouterClient
    hooks: Hooks
    engine: Engine
    intake: Intake
    publisher: MemoryPublisher
    relay: OutboxRelay
    notifier: Notifier
    ledger_errors: list[int] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def claim(self, request_id: str, reply: ReplyTarget | None = None, **fields: Any) -> Job:
        """Claim a request in the ledger under this rig's name, as intake would; the test holds the job."""
        request = make_request(request_id, model="google/veo-3.1", duration=4, **fields)
        record = JobRecord(
            request_id,
            JobState.RECEIVED,
            request.model,
            request.wire(),
            data={"timestamps": {"received": "2026-01-01T00:00:00.000Z"}},
            owner=self.settings.instance_id,
            lease_until=time.time() + 60,
        )
        assert (await self.ledger.claim(record, reply)).created
        return Job(record, request)

    async def final(self, request_id: str, timeout: float = 15) -> JobRecord:
        """Wait until the job is finished in the ledger and gone from memory; return its row."""
        row: JobRecord | None = None

        async def finished() -> bool:
            nonlocal row
            row = await self.ledger.get(request_id)
            return row is not None and row.state.terminal and request_id not in self.engine.jobs

        await until(finished, timeout, f"{request_id} to finish")
        assert row is not None
        return row


@pytest.fixture
def core_sim() -> AsyncIterator[SimulatorThread]:
    with SimulatorThread(SimConfig(job_seconds=(0.05, 0.15), seed=11)) as server:
        yield server


@pytest.fixture
async def rig(tmp_path: Path, core_sim: SimulatorThread) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    """``r = await rig(plugins=…, plugin_config=…, **settings)`` builds a started core; stopped at teardown."""
    made: list[Rig] = []

    async def build(
        plugins: dict[str, object] | None = None, plugin_config: dict[str, Any] | None = None, **overrides: Any
    ) -> Rig:
        values: dict[str, Any] = {
            "openrouter_api_key": core_sim.api_key,
            "openrouter_base_url": core_sim.base_url,
            "data_dir": tmp_path / f"data{len(made)}",
            "poll_interval": 0.05,
            "poll_max_interval": 0.2,
            "lease_seconds": 3.0,
            "retry_backoff_base": 0.01,
            "instance_id": f"core-{len(made)}",
            "plugins": plugin_config or {},
            **overrides,
        }
        settings = load_settings(None, **values)
        ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
        await ledger.open()
        client = OpenRouterClient(settings.openrouter_base_url, core_sim.api_key)
        hooks = Hooks(make_plugin_manager(settings, extra=plugins), settings)
        publisher = MemoryPublisher()
        relay = OutboxRelay(ledger, publisher, settings.instance_id, settings.lease_seconds)
        catalogue = CatalogueCache(client, 600)
        notifier = Notifier(settings, ledger, hooks)
        engine = Engine(
            settings, ledger, client, hooks, on_outbox=relay.wake, on_notify=notifier.wake, catalogue=catalogue
        )
        errors: list[int] = []
        intake = Intake(
            settings,
            ledger,
            hooks,
            catalogue,
            engine,
            on_ledger_error=lambda: errors.append(1),
        )
        r = Rig(settings, core_sim, ledger, client, hooks, engine, intake, publisher, relay, notifier, errors)
        engine.start()
        r.tasks.append(asyncio.create_task(notifier.run()))
        made.append(r)
        return r

    yield build
    for r in made:
        for task in r.tasks:
            task.cancel()
        await asyncio.gather(*r.tasks, return_exceptions=True)
        await r.engine.stop(0)
        await r.client.aclose()
        await r.ledger.close()
