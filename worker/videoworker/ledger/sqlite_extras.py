"""The SQLite ledger's outbox, notifications and daily budget.

Kept apart from :mod:`videoworker.ledger.sqlite`, which owns the writer thread; everything
here runs on that thread as ordinary calls, so each is one savepoint of a ``BEGIN
IMMEDIATE`` transaction that no other connection to the file can interleave with. That
single writer is what makes a budget reservation's check and add atomic, and lets a claim
read its rows and then lease them without row locks.
"""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TypeVar

from videoworker.ledger import notifications_sql as nsql
from videoworker.ledger import sql
from videoworker.ledger.base import BudgetChange, Ledger, OutboxMessage, OwedNotification, now
from videoworker.ledger.sql import SQLITE

T = TypeVar("T")
_N = nsql.statements(SQLITE)
# An outbox row with an earlier unsent row of its request under another owner's live lease
# (?1 the claimer, ?2 now): the peer publishes that one first, and again if it fails, so a
# claim leaves the later row out. One index search per row (outbox_pending_request).
_BEHIND_A_PEER = (
    "EXISTS (SELECT 1 FROM outbox e WHERE e.request_id = outbox.request_id AND e.sent_at IS NULL"
    " AND e.id < outbox.id AND e.lease_owner <> ?1 AND e.lease_until >= ?2)"
)


class SQLiteExtras(Ledger):
    """Outbox, notification and budget calls of :class:`~videoworker.ledger.sqlite.SQLiteLedger`."""

    @abc.abstractmethod
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread, in its own savepoint."""

    async def claim_outbox(
        self,
        owner: str,
        until: float,
        limit: int,
        *,
        sent: Sequence[int] = (),
        skip_requests: Collection[str] = (),
    ) -> list[OutboxMessage]:
        skipped = list(skip_requests)

        def op(conn: sqlite3.Connection) -> list[OutboxMessage]:
            _mark_sent(conn, sent)
            rows = conn.execute(
                f"SELECT {sql.OUTBOX_SELECT} FROM outbox"
                " WHERE sent_at IS NULL AND (lease_owner IS NULL OR lease_owner = ?1 OR lease_until < ?2)"
                f" AND request_id NOT IN ({', '.join('?' * len(skipped))}) AND NOT {_BEHIND_A_PEER}"
                " ORDER BY id LIMIT ?",
                (owner, now(), *skipped, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id = ?", [(owner, until, r[0]) for r in rows]
            )
            return [sql.outbox_message(r) for r in rows]

        return await self._run(op)

    async def mark_sent(self, ids: Sequence[int]) -> None:
        await self._run(lambda conn: _mark_sent(conn, ids))

    async def claim_notifications(
        self, owner: str, until: float, limit: int, *, per_target: int, busy: Iterable[tuple[str, str]] = ()
    ) -> list[OwedNotification]:
        """Read the chosen rows and lease them in one savepoint; no other writer runs in between."""
        pairs = list(busy)

        def op(conn: sqlite3.Connection) -> list[OwedNotification]:
            text, args = nsql.claim(SQLITE, owner, until, now(), limit, per_target, pairs)
            rows = conn.execute(text, args).fetchall()
            conn.executemany(_N.lease, [(owner, float(until), r[0]) for r in rows])
            return [nsql.notification(r) for r in rows]

        return await self._run(op)

    async def settle_notification(
        self,
        notification_id: int,
        owner: str,
        *,
        state: str,
        attempts: int,
        next_at: float = 0.0,
        error: str | None = None,
    ) -> bool:
        values = nsql.settle_values(notification_id, owner, state, attempts, next_at, error, now())
        return bool(await self._run(lambda conn: conn.execute(_N.settle, values).rowcount == 1))

    async def list_notifications(
        self, *, state: str | None = None, request_id: str | None = None, limit: int = 100
    ) -> list[OwedNotification]:
        text, args = nsql.listing(SQLITE, state, request_id, limit)
        rows = await self._run(lambda conn: conn.execute(text, args).fetchall())
        return [nsql.notification(r) for r in rows]

    async def replay_notifications(self, ids: Sequence[int] | None, *, deadline: float) -> int:
        text, args = nsql.replay(SQLITE, ids, float(deadline), now())
        return await self._run(lambda conn: conn.execute(text, args).rowcount)

    async def notification_counts(self) -> dict[str, dict[str, int]]:
        return nsql.counts(await self._run(lambda conn: conn.execute(_N.counts).fetchall()))

    async def budget_day(self, day: str) -> tuple[float, float]:
        row = await self._run(lambda conn: conn.execute(_N.budget_read, (day,)).fetchone())
        return (0.0, 0.0) if row is None else (float(row[0]), float(row[1]))


def _mark_sent(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    t = now()
    conn.executemany("UPDATE outbox SET sent_at = ? WHERE id = ?", [(t, i) for i in ids])


# --- what SQLiteLedger's transition and adopt write ----------------------------------------
def check_move(conn: sqlite3.Connection, request_id: str, expect: str, owner: str) -> bool:
    """Whether the compare-and-set of a move will succeed: nothing else writes before this transaction ends."""
    return conn.execute(_N.lock_move, (request_id, expect, owner)).fetchone() is not None


def apply_budget(conn: sqlite3.Connection, change: BudgetChange) -> None:
    """Apply ``change``; raise :class:`~videoworker.errors.OverBudget` if a limited reservation would pass.

    Atomic because the writer holds the file's write lock (``BEGIN IMMEDIATE``) from the
    check to the commit: no other reservation, from this process or another, runs in
    between. The caller's savepoint rolls the day row back with everything else on error.
    """
    conn.execute(_N.budget_row, (change.day,))
    text, args = nsql.budget_update(SQLITE, change)
    if conn.execute(text, args).rowcount != 1:
        raise nsql.over_budget(change, conn.execute(_N.budget_read, (change.day,)).fetchone())


def replies(conn: sqlite3.Connection, request_id: str, body: bytes, message_id: str) -> list[OutboxMessage]:
    """The final event owed to each reply target of ``request_id``."""
    rows = conn.execute("SELECT reply_to, correlation_id FROM reply_targets WHERE request_id = ?", (request_id,))
    return [OutboxMessage("", r[0], body, message_id, request_id, r[1] or None) for r in rows.fetchall()]


def insert_outbox(conn: sqlite3.Connection, messages: Sequence[OutboxMessage]) -> None:
    """Record ``messages`` in order (ascending ids)."""
    t = now()
    conn.executemany(
        sql.OUTBOX_INSERT + " VALUES (?,?,?,?,?,?,?)",
        [(m.request_id, m.exchange, m.routing_key, m.message_id, m.correlation_id, m.body, t) for m in messages],
    )


def insert_notifications(conn: sqlite3.Connection, items: Sequence[OwedNotification]) -> None:
    """Record ``items`` in order (ascending ids); one already owed is kept as it is."""
    conn.executemany(_N.insert, nsql.insert_values(items, now()))


def free_notifications(conn: sqlite3.Connection, dead_owners: Sequence[str]) -> None:
    """Free the pending notifications ``dead_owners`` had leased."""
    text, args = nsql.free_leases(SQLITE, dead_owners)
    conn.execute(text, args)
