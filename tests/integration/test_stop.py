"""SIGTERM ends the daemon within shutdown_grace + 2 s in every state, so systemd or Docker never has to SIGKILL it.

Each test puts a real daemon process in one state (connecting to a broker that is not
there, reconnecting through a cut connection, a broker that went away, a locked ledger,
a storage plugin that never returns, one whose copy runs in ``run_in_thread``), sends
SIGTERM and measures the time to exit.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import DaemonProcess, Observer
from tests.tcpproxy import TcpProxy
from videoworker.testing.recorder import until
from videoworker_devtools.simulator import SimulatorThread

GRACE = 2.0
BOUND = GRACE + 2.0


async def logged(proc: DaemonProcess, text: str, timeout: float = 30) -> None:
    await until(lambda: proc.log.exists() and text in proc.log.read_text(), timeout, f"the log to say {text!r}")


async def stop_time(proc: DaemonProcess) -> float:
    """Send SIGTERM and return the seconds until the process is gone (asserting it ended cleanly)."""
    started = time.monotonic()
    proc.kill(signal.SIGTERM)
    await until(lambda: not proc.alive(), 30, "the daemon to exit after SIGTERM")
    elapsed = time.monotonic() - started
    assert proc.wait() == 0, proc.log.read_text()[-2000:]
    print(f"stopped in {elapsed:.2f} s (bound {BOUND:g} s)")  # the figures docs/operations.md quotes
    return elapsed


def plugin_site(tmp_path: Path, name: str, source: str) -> Path:
    """A PYTHONPATH folder holding plugin ``name``: module ``vw_<name>_store`` from ``source``, with its entry point."""
    site = tmp_path / "site"
    info = site / f"vw_{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vw-{name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[videoworker]\n{name} = vw_{name}_store\n")
    (site / f"vw_{name}_store.py").write_text(textwrap.dedent(source))
    return site


@pytest.fixture
async def proxy(rabbit: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(rabbit)
    async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672) as running:
        yield running


def via(proxy: TcpProxy, rabbit: str) -> str:
    return rabbit.replace(f":{urlsplit(rabbit).port or 5672}/", f":{proxy.port}/")


async def test_stops_while_connecting_to_a_broker_that_is_not_there(
    process: Callable[..., DaemonProcess], sim: SimulatorThread
) -> None:
    """Nothing listens on the AMQP port: the connect loop is cut short by SIGTERM."""
    proc = process(amqp_url="amqp://guest:guest@127.0.0.1:1/", shutdown_grace=GRACE)
    proc.start()
    await logged(proc, "broker unreachable; retrying")
    assert await stop_time(proc) <= BOUND


async def test_stops_while_reconnecting_through_a_dead_connection(
    process: Callable[..., DaemonProcess], observer: Observer, sim: SimulatorThread, proxy: TcpProxy, rabbit: str
) -> None:
    """The connection went silent and reconnects hang in the handshake: SIGTERM still ends it in time."""
    proc = process(amqp_url=via(proxy, rabbit) + "?heartbeat=2", shutdown_grace=GRACE)
    proc.start()
    await logged(proc, '"event": "ready"')
    proxy.blackhole()
    proxy.reset()
    await logged(proc, "broker connection lost")
    assert await stop_time(proc) <= BOUND


async def test_stops_while_the_broker_is_gone(
    process: Callable[..., DaemonProcess], observer: Observer, sim: SimulatorThread, rabbit: str
) -> None:
    """The broker's port closes under a running daemon with jobs in flight: SIGTERM ends it in time."""
    sim.configure(job_seconds=[30, 30])
    async with TcpProxy(urlsplit(rabbit).hostname or "127.0.0.1", urlsplit(rabbit).port or 5672) as proxy:
        proc = process(amqp_url=via(proxy, rabbit), shutdown_grace=GRACE)
        proc.start()
        await logged(proc, '"event": "ready"')
        for i in range(3):
            await observer.publish({"id": f"gone-{i}", "model": "google/veo-3.1", "prompt": "x"})
        await until(lambda: sim.stats()["submits"] == 3, 30, "three submits")
    # the proxy is closed: connections reset, new ones refused
    await logged(proc, "broker connection lost")
    assert await stop_time(proc) <= BOUND


async def test_stops_while_the_ledger_is_locked(
    process: Callable[..., DaemonProcess], observer: Observer, sim: SimulatorThread
) -> None:
    """Another process holds the SQLite ledger's write lock (its busy timeout is 30 s): SIGTERM ends it in time."""
    sim.configure(job_seconds=[30, 30])
    proc = process(shutdown_grace=GRACE)
    proc.start()
    await logged(proc, '"event": "ready"')
    await observer.publish({"id": "locked-1", "model": "google/veo-3.1", "prompt": "x"})
    await until(lambda: sim.stats()["submits"] == 1, 30, "the submit")
    path = urlsplit(proc.settings.effective_ledger_url).path
    holder = sqlite3.connect(path, timeout=30, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        await observer.publish({"id": "locked-2", "model": "google/veo-3.1", "prompt": "x"})
        await asyncio.sleep(0.5)  # let the daemon's next write block on the lock (nothing to wait on from here)
        assert await stop_time(proc) <= BOUND
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_stops_while_a_storage_plugin_never_returns(
    process: Callable[..., DaemonProcess], observer: Observer, sim: SimulatorThread, tmp_path: Path
) -> None:
    """A store stuck in a blocking call on a worker thread (a dead NFS mount, say): SIGTERM ends the process in time."""
    site = plugin_site(
        tmp_path,
        "stuck",
        """
        import asyncio, time
        from videoworker import hookimpl

        @hookimpl(tryfirst=True)
        async def videoworker_store_output(output):
            print("stuck store entered", flush=True)
            await asyncio.to_thread(time.sleep, 3600)
        """,
    )
    proc = process(env={"PYTHONPATH": str(site)}, shutdown_grace=GRACE)
    proc.start()
    await logged(proc, '"event": "ready"')
    await observer.publish({"id": "stuck-1", "model": "google/veo-3.1", "prompt": "x"})
    await logged(proc, "stuck store entered")
    assert await stop_time(proc) <= BOUND


async def test_stops_while_a_store_copies_in_run_in_thread_and_keeps_that_jobs_lease(
    process: Callable[..., DaemonProcess], observer: Observer, sim: SimulatorThread, tmp_path: Path
) -> None:
    """A store in ``run_in_thread`` cannot be cut short: the stop lets it go, exits in time, and keeps
    that job's lease, so no peer stores the same output beside the abandoned copy before it runs out."""
    site = plugin_site(
        tmp_path,
        "copying",
        """
        import time
        from videoworker import hookimpl, run_in_thread

        @hookimpl(tryfirst=True)
        async def videoworker_store_output(output):
            print("copying store entered", flush=True)
            await run_in_thread(time.sleep, 3600)
        """,
    )
    # a lease shorter than the stop: the kept one must be renewed to outlast the process
    proc = process(env={"PYTHONPATH": str(site)}, shutdown_grace=GRACE, lease_seconds=3)
    proc.start()
    await logged(proc, '"event": "ready"')
    await observer.publish({"id": "copying-1", "model": "google/veo-3.1", "prompt": "x"})
    await logged(proc, "copying store entered")
    assert await stop_time(proc) <= BOUND
    with sqlite3.connect(proc.settings.data_dir / "ledger.sqlite3") as conn:
        ((lease_until,),) = conn.execute("SELECT lease_until FROM jobs WHERE request_id = 'copying-1'").fetchall()
    assert lease_until > time.time() + 2, "the stop released (or let run out) the lease of a job whose store still ran"
