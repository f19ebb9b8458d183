"""Retention: the ledger forgets what no guarantee needs any more, a little at a time.

Without it a ledger only grows (a few MiB per thousand jobs). Every ``prune_interval``
a round removes sent outbox rows and delivered notifications older than
``outbox_retention``, trims jobs finished more than ``trim_after`` ago to a compact row
(enough to answer a duplicate), and forgets jobs finished more than ``dedupe_days`` ago,
whose ids may then be used again. Each batch is one short transaction of at most
``prune_batch`` rows with a pause after it, so pruning never holds up intake, steps or
the outbox, and a round stops after :data:`ROUND_BATCHES` batches to resume next time.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from videoworker import metrics
from videoworker.config import Settings
from videoworker.ledger.base import Ledger
from videoworker.ledger.retention import Pruned, Retention

log = structlog.get_logger("videoworker.retention")

#: Batches per round at most; a backlog (a first run on an old ledger) drains over several rounds.
ROUND_BATCHES = 200
#: Pause between two batches: the hot path's transactions go first.
BATCH_PAUSE = 0.05
DAY = 86400.0


def retention_at(settings: Settings, now: float) -> Retention:
    """The cut-offs of a round that starts at ``now``."""
    return Retention(
        sent_before=now - settings.outbox_retention,
        trim_before=now - settings.trim_after,
        forget_before=now - settings.dedupe_days * DAY,
        batch=settings.prune_batch,
    )


class Pruner:
    """Runs pruning rounds against the ledger for the life of the daemon."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self.settings = settings
        self.ledger = ledger

    async def run(self) -> None:
        """Prune, then wait ``prune_interval``, until cancelled; a failing round is logged and retried."""
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - pruning is housekeeping: never stop the daemon for it
                log.warning("ledger pruning failed; retrying next round", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.settings.prune_interval)

    async def round(self) -> Pruned:
        """Prune in batches until nothing is left to prune or :data:`ROUND_BATCHES` ran; returns the sum."""
        cutoffs = retention_at(self.settings, time.time())
        total = Pruned()
        for _ in range(ROUND_BATCHES):
            done = await self.ledger.prune(cutoffs)
            for kind in ("outbox", "notifications", "trimmed", "forgotten"):
                count = getattr(done, kind)
                setattr(total, kind, getattr(total, kind) + count)
                if count:
                    metrics.LEDGER_PRUNED.labels(kind=kind).inc(count)
            if done.total == 0:
                break
            await asyncio.sleep(BATCH_PAUSE)
        if total.total:
            log.info(
                "ledger pruned",
                outbox=total.outbox,
                notifications=total.notifications,
                trimmed=total.trimmed,
                forgotten=total.forgotten,
            )
        return total
