"""The notify protocol against a real AF_UNIX datagram socket, as systemd would hold it for a Type=notify unit."""

from __future__ import annotations

import itertools
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess, Observer
from videoworker.testing.recorder import until
from videoworker_devtools.simulator import SimulatorThread


class NotifySocket:
    """A bound datagram socket collecting what the daemon sends, with the time each message came."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, list[str]]] = []

    def drain(self) -> list[tuple[float, list[str]]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append((time.monotonic(), data.decode().splitlines()))

    def lines(self) -> list[str]:
        return [line for _, lines in self.drain() for line in lines]


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:  # a short path: AF_UNIX names are at most 107 bytes
        listener = NotifySocket(Path(folder) / "notify")
        yield listener
        listener.sock.close()


async def test_ready_watchdog_status_and_stopping(
    process: Callable[..., DaemonProcess], observer: Observer, sim: SimulatorThread, notify_socket: NotifySocket
) -> None:
    """READY=1 only once consuming, WATCHDOG=1 twice per period, STATUS= lines, STOPPING=1 on SIGTERM."""
    daemon = process(env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"})
    daemon.start()
    await until(lambda: "READY=1" in notify_socket.lines(), 30, "READY=1")
    assert '"event": "ready"' in daemon.log.read_text()  # not before the daemon was really ready
    first = notify_socket.lines()
    assert first[0] == "READY=1" and any(line.startswith("STATUS=0 jobs in flight; intake consuming") for line in first)
    await until(lambda: notify_socket.lines().count("WATCHDOG=1") >= 3, 10, "three watchdog pings")
    pings = [at for at, lines in notify_socket.messages if "WATCHDOG=1" in lines]
    assert all(b - a < 1.0 for a, b in itertools.pairwise(pings))  # never a whole period without a ping
    daemon.kill(signal.SIGTERM)
    await until(lambda: "STOPPING=1" in notify_socket.lines(), 10, "STOPPING=1")
    assert daemon.wait(20) == 0


async def test_without_notify_socket_nothing_is_sent(
    process: Callable[..., DaemonProcess], observer: Observer, sim: SimulatorThread, notify_socket: NotifySocket
) -> None:
    """Outside systemd the daemon runs as usual and sends nothing anywhere."""
    daemon = process()
    daemon.start()
    await until(lambda: daemon.log.exists() and '"event": "ready"' in daemon.log.read_text(), 30, "ready")
    daemon.kill(signal.SIGTERM)
    assert daemon.wait(20) == 0
    assert notify_socket.lines() == []
