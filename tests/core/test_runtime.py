"""The daemon's start and stop around the core, where no broker is needed to see the behaviour."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from videoworker import ConfigError, Settings, hookimpl
from videoworker.config import load_settings
from videoworker.ledger.sqlite import SQLiteLedger
from videoworker.runtime import SWITCH_INTERVAL, Daemon
from videoworker_devtools.simulator import SimulatorThread


class Lifecycle:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def videoworker_startup(self) -> None:
        self.calls.append("startup")

    @hookimpl
    def videoworker_shutdown(self) -> None:
        self.calls.append("shutdown")


async def _with_a_newer_ledger(tmp_path: Path, core_sim: SimulatorThread) -> Settings:
    """Settings whose SQLite ledger says it was written by a newer release (the start refuses it)."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(path)
    await ledger.open()
    await ledger.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)")
    settings: Settings = load_settings(
        None,
        openrouter_api_key=core_sim.api_key,
        openrouter_base_url=core_sim.base_url,
        data_dir=tmp_path,
        ledger_url=f"sqlite:///{path}",
    )
    return settings


async def test_a_refused_ledger_stops_the_start_and_still_shuts_plugins_down(
    tmp_path: Path, core_sim: SimulatorThread
) -> None:
    """A ledger newer than this release is refused, and the plugins that started are shut down again."""
    settings = await _with_a_newer_ledger(tmp_path, core_sim)
    tracker = Lifecycle()
    with pytest.raises(ConfigError, match="newer"):
        await Daemon(settings, plugins={"tracker": tracker}).run()
    assert tracker.calls == ["startup", "shutdown"]


class SwitchIntervalProbe:
    def __init__(self) -> None:
        self.seen: list[float] = []

    @hookimpl
    def videoworker_startup(self) -> None:
        self.seen.append(sys.getswitchinterval())


async def test_the_thread_switch_interval_is_short_while_the_daemon_runs_and_restored_after(
    tmp_path: Path, core_sim: SimulatorThread
) -> None:
    """The loop must not wait 5 ms for the GIL after each system call; an embedding process gets its value back."""
    # a start that fails after the plugins started, so run() returns by itself
    settings = await _with_a_newer_ledger(tmp_path, core_sim)
    before = sys.getswitchinterval()
    probe = SwitchIntervalProbe()
    with pytest.raises(ConfigError):
        await Daemon(settings, plugins={"probe": probe}).run()
    assert probe.seen == [pytest.approx(SWITCH_INTERVAL)]
    assert before > SWITCH_INTERVAL
    assert sys.getswitchinterval() == before
