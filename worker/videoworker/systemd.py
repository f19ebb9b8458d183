"""systemd's notify protocol, for ``Type=notify`` units: READY=1, STOPPING=1, WATCHDOG=1 and STATUS= lines.

Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing. Under it, the daemon says
READY=1 once the ledger, the broker and the consumer are up (so ``systemctl start`` waits
for a daemon that really takes work), STOPPING=1 when a stop begins, and, with
``WatchdogSec=``, WATCHDOG=1 from a task on the event loop: a loop that hangs stops the
pings, and systemd restarts the service. STATUS= lines say how many jobs are in flight
and what intake is doing, for ``systemctl status``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import sdnotify

#: Longest gap between two STATUS= lines, seconds.
STATUS_EVERY = 10.0


class ServiceManager:
    """The unit's notify socket, when there is one."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        watchdog_usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        # WATCHDOG_PID names the process the pings are expected from; another one must not ping
        for_us = env.get("WATCHDOG_PID", str(os.getpid())) == str(os.getpid())
        self.watchdog = watchdog_usec / 1_000_000 if watchdog_usec > 0 and for_us else None

    def send(self, *lines: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(lines))

    def ready(self, status: str) -> None:
        """The daemon takes work now."""
        self.send("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: intake closed, unfinished jobs stay in the ledger")

    async def run(self, status: Callable[[], str]) -> None:
        """Ping the watchdog (twice per period) and refresh the status line, until cancelled."""
        if not self.enabled:
            return
        every = min(STATUS_EVERY, self.watchdog / 2) if self.watchdog else STATUS_EVERY
        while True:
            lines = [f"STATUS={status()}"]
            if self.watchdog:
                lines.insert(0, "WATCHDOG=1")
            self.send(*lines)
            await asyncio.sleep(every)
