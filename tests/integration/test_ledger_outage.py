"""The ledger is unavailable (locked by another process): intake pauses, nothing is acked or lost, work resumes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import httpx
import pytest

from tests.conftest import Observer
from videoworker_devtools.simulator import SimulatorThread


class Locker:
    """Holds an exclusive lock on a SQLite file from another connection until released."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        conn.execute("BEGIN EXCLUSIVE")
        self.locked.set()
        self.release.wait(120)
        conn.execute("ROLLBACK")
        conn.close()


@pytest.mark.slow
async def test_locked_ledger_pauses_intake_and_loses_nothing(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Requests arriving while the ledger is locked are not acked; once it is back they all complete once."""
    d = await daemon(health_port=0)
    ready_url = f"http://127.0.0.1:{d.health_port}/readyz"
    locker = Locker(str(d.settings.data_dir / "ledger.sqlite3"))
    locker.thread.start()
    assert await asyncio.to_thread(locker.locked.wait, 10)
    try:
        for i in range(3):
            await observer.publish({"id": f"lo-{i}", "model": "google/veo-3.1", "prompt": f"ledger outage {i}"})
        await observer.wait(lambda: d.paused, timeout=60, what="intake paused by the ledger outage")
        async with httpx.AsyncClient() as client:
            answer = await client.get(ready_url, timeout=10)
        assert answer.status_code == 503 and answer.json()["ledger"] is False
        assert not observer.replies and not observer.dead
        assert sim.stats()["submits"] == 0
    finally:
        locker.release.set()
    await observer.wait(lambda: len(observer.replies) == 3, timeout=90, what="three replies after the outage")
    assert {b["status"] for b, _ in observer.replies} == {"completed"}
    assert sim.stats()["submits"] == 3
    assert not observer.dead
    async with httpx.AsyncClient() as client:
        assert (await client.get(ready_url, timeout=10)).status_code == 200
