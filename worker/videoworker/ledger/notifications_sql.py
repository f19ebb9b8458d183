"""SQL text for owed notifications and the daily budget (schema version 3), shared by both backends.

Like :mod:`videoworker.ledger.sql`, every statement is written once with ``?`` placeholders
and generated per :class:`~videoworker.ledger.sql.Dialect`; where the backends must differ
(a list of values, row locks) the difference is a dialect field, not a second statement.

Notifications are ordered by ``id``. A request's moves are serialised by the compare-and-set
on its job row, so the rows it records for one target get ascending ids in the order of its
moves; :func:`claim` relies on that to deliver them in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from videoworker.errors import OverBudget
from videoworker.ledger.base import BudgetChange, OwedNotification
from videoworker.ledger.sql import Dialect, Row

STATES = ("pending", "delivered", "dead")
#: Literal, not bound, so the planner can match the partial indexes.
PENDING = "state = 'pending'"
ERROR_CHARS = 1000

NOTIFICATION_COLUMNS = (
    "id",
    "request_id",
    "plugin",
    "target_key",
    "target",
    "status",
    "event",
    "created_at",
    "deadline",
    "next_at",
    "attempts",
    "state",
    "last_error",
    "delivered_at",
)
NOTIFICATIONS_SELECT = ", ".join(NOTIFICATION_COLUMNS)


# --- schema ------------------------------------------------------------------------------
def schema_v3(d: Dialect) -> list[str]:
    """Migration 3: the ``notifications`` and ``budget_days`` tables and their indexes (idempotent)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS notifications (
    id {d.serial_key},
    request_id TEXT NOT NULL,
    plugin TEXT NOT NULL,
    target_key TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    event TEXT NOT NULL,
    created_at {d.real} NOT NULL,
    deadline {d.real} NOT NULL,
    next_at {d.real} NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    delivered_at {d.real},
    lease_owner TEXT,
    lease_until {d.real} NOT NULL DEFAULT 0,
    CONSTRAINT notifications_once UNIQUE (request_id, status, plugin, target_key)
)""",
        f"CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, next_at) WHERE {PENDING}",
        # the claim's "no older pending row for this request and target" probe
        "CREATE INDEX IF NOT EXISTS notifications_order"
        f" ON notifications (request_id, plugin, target_key, id) WHERE {PENDING}",
        "CREATE INDEX IF NOT EXISTS notifications_state ON notifications (state, id)",
        f"""CREATE TABLE IF NOT EXISTS budget_days (
    day TEXT PRIMARY KEY,
    spent {d.real} NOT NULL DEFAULT 0,
    reserved {d.real} NOT NULL DEFAULT 0
)""",
    ]


# --- fixed statements --------------------------------------------------------------------
@dataclass(frozen=True)
class Statements:
    """The statements whose text does not depend on the call's arguments."""

    insert: str
    lock_move: str
    budget_row: str
    budget_read: str
    settle: str
    lease: str
    counts: str


def statements(d: Dialect) -> Statements:
    insert_columns = NOTIFICATION_COLUMNS[1:]
    return Statements(
        # a notification already owed (same request, status, plugin, target) is kept as it is
        insert=d.q(
            f"INSERT INTO notifications ({', '.join(insert_columns)})"
            f" VALUES ({', '.join('?' * len(insert_columns))}) ON CONFLICT DO NOTHING"
        ),
        # checks (and on PostgreSQL locks) the row a budgeted move will change, before anything is written
        lock_move=d.q(
            "SELECT 1 FROM jobs WHERE request_id = ? AND state = ? AND owner = ?"
            + (" FOR UPDATE" if d.row_locks else "")
        ),
        budget_row=d.q("INSERT INTO budget_days (day, spent, reserved) VALUES (?, 0, 0) ON CONFLICT DO NOTHING"),
        budget_read=d.q("SELECT spent, reserved FROM budget_days WHERE day = ?"),
        settle=d.q(
            "UPDATE notifications SET state = ?, attempts = ?, next_at = ?, last_error = ?, delivered_at = ?,"
            f" lease_owner = NULL, lease_until = 0 WHERE id = ? AND lease_owner = ? AND {PENDING}"
        ),
        lease=d.q("UPDATE notifications SET lease_owner = ?, lease_until = ? WHERE id = ?"),
        counts="SELECT plugin, state, COUNT(*) FROM notifications GROUP BY plugin, state",
    )


# --- statements built per call -----------------------------------------------------------
Statement = tuple[str, list[Any]]


def _among(d: Dialect, expr: str, values: Sequence[Any], cast: str) -> Statement:
    """``expr`` equals one of ``values``: one array parameter, or one placeholder each (none matches nothing)."""
    if d.arrays:
        return f"{expr} = ANY(?::{cast}[])", [list(values)]
    return f"{expr} IN ({', '.join('?' * len(values)) or 'NULL'})", list(values)


def claim(
    d: Dialect, owner: str, until: float, at: float, limit: int | None, per_target: int, busy: Sequence[tuple[str, str]]
) -> Statement:
    """Pick the due notifications :meth:`~videoworker.ledger.base.Ledger.claim_notifications` may lease.

    ``ranked`` numbers the eligible rows per (plugin, target key): due, pending, lease free
    or expired (never one in its lease, ours included: that one is being delivered), and
    no older pending row for the same request and target (a row in retry backoff holds
    back its successors). ``chosen`` keeps ``per_target`` of each,
    oldest first. With row locks the statement then locks the chosen rows ``SKIP LOCKED``,
    re-checking the lease on the latest version, and leases them itself; the window cannot
    share a query level with ``FOR UPDATE``, and locking only the chosen rows (not every
    eligible one) leaves the rest of the backlog to peers. Without row locks it returns the
    chosen rows and the caller leases them (:attr:`Statements.lease`) in the same transaction.
    """
    claimable = "n.state = 'pending' AND n.next_at <= ? AND (n.lease_owner IS NULL OR n.lease_until < ?)"
    text = (
        "WITH ranked AS (SELECT n.id, ROW_NUMBER() OVER (PARTITION BY n.plugin, n.target_key ORDER BY n.id) AS place"
        f" FROM notifications n WHERE {claimable} AND NOT EXISTS (SELECT 1 FROM notifications o"
        " WHERE o.state = 'pending' AND o.request_id = n.request_id AND o.plugin = n.plugin"
        " AND o.target_key = n.target_key AND o.id < n.id)"
    )
    args: list[Any] = [at, at]
    if d.arrays:  # fixed text, so one prepared statement whatever the busy pairs
        text += " AND (n.plugin, n.target_key) NOT IN (SELECT * FROM unnest(?::text[], ?::text[]))"
        args += [[p for p, _ in busy], [k for _, k in busy]]
    elif busy:
        text += " AND (n.plugin, n.target_key) NOT IN (VALUES " + ", ".join("(?, ?)" for _ in busy) + ")"
        args += [value for pair in busy for value in pair]
    text += "), chosen AS (SELECT id FROM ranked WHERE place <= ? ORDER BY id LIMIT ?)"
    args += [per_target, limit]
    if d.row_locks:
        text += (
            ", picked AS (SELECT n.id FROM notifications n WHERE n.id IN (SELECT id FROM chosen)"
            f" AND {claimable} FOR UPDATE OF n SKIP LOCKED)"
            " UPDATE notifications SET lease_owner = ?, lease_until = ? FROM picked WHERE notifications.id = picked.id"
            " RETURNING " + ", ".join(f"notifications.{c}" for c in NOTIFICATION_COLUMNS)
        )
        args += [at, at, owner, until]
    else:
        text += f" SELECT {NOTIFICATIONS_SELECT} FROM notifications WHERE id IN (SELECT id FROM chosen) ORDER BY id"
    return d.q(text), args


def listing(d: Dialect, state: str | None, request_id: str | None, limit: int | None) -> Statement:
    """Notifications, newest first, optionally of one state and one request."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("state", state), ("request_id", request_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return d.q(f"SELECT {NOTIFICATIONS_SELECT} FROM notifications{condition} ORDER BY id DESC LIMIT ?"), [*args, limit]


def replay(d: Dialect, ids: Sequence[int] | None, deadline: float, at: float) -> Statement:
    """Dead notifications (``ids`` or all) made pending, due at ``at``; ``last_error`` is kept for the record."""
    text = "UPDATE notifications SET state = 'pending', attempts = 0, next_at = ?, deadline = ?,"
    text += " lease_owner = NULL, lease_until = 0 WHERE state = 'dead'"
    args: list[Any] = [at, deadline]
    if ids is not None:
        among, values = _among(d, "id", ids, "bigint")
        text += f" AND {among}"
        args += values
    return d.q(text), args


def free_leases(d: Dialect, dead_owners: Sequence[str]) -> Statement:
    """The pending notifications leased by ``dead_owners`` made free for any claimer."""
    among, values = _among(d, "lease_owner", dead_owners, "text")
    return d.q(f"UPDATE notifications SET lease_owner = NULL, lease_until = 0 WHERE {PENDING} AND {among}"), values


def budget_update(d: Dialect, change: BudgetChange) -> Statement:
    """Apply ``change`` to its day row (which must exist); a limited reservation changes no row if it would pass.

    ``reserved`` never drops below zero: releasing the same estimates in another order
    than they were reserved can leave ``-1e-17`` behind.
    """
    text = f"UPDATE budget_days SET reserved = {d.greatest}(reserved + ?, 0), spent = spent + ? WHERE day = ?"
    args: list[Any] = [float(change.reserved), float(change.spent), change.day]
    if limited(change):
        assert change.limit is not None
        text += " AND spent + reserved + ? <= ?"
        args += [float(change.reserved), float(change.limit)]
    return d.q(text), args


def limited(change: BudgetChange) -> bool:
    """Whether ``change`` is a reservation checked against a limit (releases and spending never are)."""
    return change.reserved > 0 and change.limit is not None


def over_budget(change: BudgetChange, row: Row | None) -> OverBudget:
    """The error for a refused reservation, from the day row as it is now."""
    assert change.limit is not None
    committed = 0.0 if row is None else float(row[0]) + float(row[1])
    return OverBudget(change.day, change.reserved, committed, change.limit)


# --- rows --------------------------------------------------------------------------------
def insert_values(items: Iterable[OwedNotification], at: float) -> list[tuple[Any, ...]]:
    """Rows for :attr:`Statements.insert`; an unset ``created_at`` becomes ``at``."""
    return [
        (
            n.request_id,
            n.plugin,
            n.target_key,
            json.dumps(n.target),
            n.status,
            json.dumps(n.event),
            float(n.created_at or at),
            float(n.deadline),
            float(n.next_at),
            n.attempts,
            n.state,
            truncate(n.last_error),
            None if n.delivered_at is None else float(n.delivered_at),
        )
        for n in items
    ]


def settle_values(
    notification_id: int, owner: str, state: str, attempts: int, next_at: float, error: str | None, at: float
) -> tuple[Any, ...]:
    """Arguments of :attr:`Statements.settle`; raises ValueError for an unknown state."""
    if state not in STATES:
        raise ValueError(f"notification state must be one of {', '.join(STATES)}, not {state!r}")
    delivered_at = at if state == "delivered" else None
    return (state, attempts, float(next_at), truncate(error), delivered_at, notification_id, owner)


def truncate(error: str | None) -> str | None:
    return None if error is None else error[:ERROR_CHARS]


def notification(row: Row) -> OwedNotification:
    """A row selected as :data:`NOTIFICATIONS_SELECT`."""
    return OwedNotification(
        request_id=row[1],
        plugin=row[2],
        target_key=row[3],
        target=json.loads(row[4]),
        status=row[5],
        event=json.loads(row[6]),
        created_at=row[7],
        deadline=row[8],
        next_at=row[9],
        attempts=row[10],
        state=row[11],
        last_error=row[12],
        delivered_at=row[13],
        id=row[0],
    )


def counts(rows: Iterable[Row]) -> dict[str, dict[str, int]]:
    """``{plugin: {state: n}}`` from :attr:`Statements.counts`, every state present for each plugin."""
    result: dict[str, dict[str, int]] = {}
    for row in rows:
        result.setdefault(row[0], dict.fromkeys(STATES, 0))[row[1]] = int(row[2])
    return result
