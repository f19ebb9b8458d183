"""Ownership: renewing this instance's leases and adopting jobs nobody holds.

Rows carry an owner (``<host>-<pid>``) and a lease. Every ``lease_seconds / 3`` an
instance renews all its leases with one write, then adopts unfinished rows that are
free: an expired lease, a row released by a clean stop, or a row whose owner is a dead
process on this host (so a restarted daemon takes its predecessor's jobs at once
instead of waiting for their leases to run out).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Collection, Iterable

import structlog

from videoworker.config import Settings
from videoworker.core import budget
from videoworker.core.engine import Engine
from videoworker.ledger.base import Ledger

log = structlog.get_logger("videoworker.ownership")

#: Rows adopted per ledger call.
ADOPT_BATCH = 1000


class Leases:
    """Keeps this instance's leases alive and hands adopted jobs to the engine."""

    def __init__(self, settings: Settings, ledger: Ledger, engine: Engine) -> None:
        self.settings = settings
        self.ledger = ledger
        self.engine = engine
        self.me = settings.instance_id

    async def run(self) -> None:
        """Renew and adopt every ``lease_seconds / 3`` until cancelled; ledger errors are logged and survived."""
        period = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.ledger.renew_leases(self.me, self._until())
                await self.adopt()
                await budget.refresh_gauges(self.ledger, self.engine.ctx.daily_limit)
            except Exception as exc:  # noqa: BLE001 - the ledger may be briefly unavailable
                log.error("lease renewal failed", error=f"{type(exc).__name__}: {exc}")

    async def adopt(self, *, at_start: bool = False) -> int:
        """Take free unfinished rows until the engine is full; return how many were taken.

        ``at_start``: rows under our own name belong to a former life of this instance
        (same host and pid), so release them first and adopt them like any other.
        """
        if at_start:
            await self.ledger.release(self.me)
        taken = 0
        while self.engine.load < self.settings.max_inflight:
            dead = dead_local_owners(await self.ledger.live_owners(), self.me)
            room = min(ADOPT_BATCH, self.settings.max_inflight - self.engine.load)
            records = await self.ledger.adopt(self.me, self._until(), dead, room)
            for record in records:
                self.engine.resume(record)
            taken += len(records)
            if len(records) < room:
                break
        return taken

    async def release(
        self, *, keep_jobs: Collection[str] = (), keep_notifications: Collection[int] = (), hold: float = 0.0
    ) -> int:
        """Give up the leases, so a restart or a peer adopts the jobs at once (those in ``keep_*`` run out instead).

        Kept job leases are first renewed to last ``hold`` seconds more than a lease: the
        process may still wait that long for the threads that keep them, with no renewal.
        """
        if keep_jobs:
            await self.ledger.renew_leases(self.me, self._until() + hold)
        return await self.ledger.release(self.me, keep_jobs=keep_jobs, keep_notifications=keep_notifications)

    def _until(self) -> float:
        return time.time() + self.settings.lease_seconds


def dead_local_owners(owners: Iterable[str], me: str) -> list[str]:
    """Owners named ``<this host>-<pid>`` whose process is gone (never ``me``)."""
    host = socket.gethostname()
    dead: list[str] = []
    for owner in owners:
        name, _, pid = owner.rpartition("-")
        if name != host or not pid.isdigit() or owner == me:
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.append(owner)
        except PermissionError:
            continue
    return dead
