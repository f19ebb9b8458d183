"""The PostgreSQL ledger's outbox, notifications and daily budget.

Kept apart from :mod:`videoworker.ledger.postgres`, which owns the pool and the job rows.
Every call is one short ``READ COMMITTED`` transaction or statement, like the rest of
that backend; claims use ``SKIP LOCKED`` so deliverers on several hosts share the
backlog, and budget reservations are serialised by the day row's lock
(:func:`apply_budget`).
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager

from videoworker.ledger import notifications_sql as nsql
from videoworker.ledger import sql
from videoworker.ledger.base import BudgetChange, Ledger, OutboxMessage, OwedNotification, now
from videoworker.ledger.pgtypes import Connection, Pool, Queries
from videoworker.ledger.sql import POSTGRES

_N = nsql.statements(POSTGRES)
_INSERT_OUTBOX = (
    sql.OUTBOX_INSERT + " SELECT r, e, k, m, c, b, $7"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])"
    " WITH ORDINALITY AS u (r, e, k, m, c, b, n) ORDER BY n"
)

#: Outbox claims lock each request they may take rows of under (this, hashtext(request_id)):
#: the two-key form, apart from the one-key schema lock. "VWOB".
OUTBOX_LOCK_CLASS = 0x5657_4F42
_CLAIMABLE = "sent_at IS NULL AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < {at})"
# The requests of the first ``limit`` claimable rows that no concurrent claim holds. A
# collision of two requests' hashes only leaves one of them to a later round.
_LOCK_REQUESTS = (
    "WITH marked AS (UPDATE outbox SET sent_at = $2 WHERE id = ANY($4::bigint[])),"
    " head AS MATERIALIZED (SELECT request_id FROM outbox WHERE " + _CLAIMABLE.format(at="$2") + ""
    " AND NOT id = ANY($4::bigint[]) AND request_id <> ALL($5::text[]) ORDER BY id LIMIT $3)"
    f" SELECT DISTINCT request_id FROM head WHERE pg_try_advisory_xact_lock({OUTBOX_LOCK_CLASS}, hashtext(request_id))"
)
# Leases those requests' rows, with a snapshot taken after their locks: of each request, only
# the unsent rows before the first one this claim cannot take. That one may be leased to a
# peer (which publishes it first, and again if it fails), or locked by a writer that is not
# a claim (adopt freeing a dead owner's rows), which ``SKIP LOCKED`` passes over; a row
# behind it waits. ``unpicked`` is grouped over the chosen requests' rows, not a subquery
# per row, which PostgreSQL's planner once ran as a scan of the whole table. It reads
# pending rows only, never sent ones: those of the chosen requests through
# outbox_pending_request once the table has statistics, all of them before (a new table,
# until autovacuum's first ANALYZE): 3.7 ms against 11.8 ms with 50,000 pending rows.
_CLAIM_OUTBOX = (
    "WITH picked AS MATERIALIZED (SELECT id, request_id FROM outbox WHERE request_id = ANY($4::text[]) AND "
    + _CLAIMABLE.format(at="$3")
    + " ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED),"
    " unpicked AS (SELECT request_id, min(id) AS first FROM outbox WHERE request_id = ANY($4::text[])"
    " AND sent_at IS NULL AND NOT EXISTS (SELECT 1 FROM picked WHERE picked.id = outbox.id) GROUP BY request_id)"
    " UPDATE outbox SET lease_owner = $1, lease_until = $2 FROM picked WHERE outbox.id = picked.id"
    " AND NOT EXISTS (SELECT 1 FROM unpicked WHERE unpicked.request_id = picked.request_id"
    " AND unpicked.first < picked.id)"
    " RETURNING " + ", ".join(f"outbox.{c}" for c in sql.OUTBOX_COLUMNS)
)


async def claim_outbox_in(
    conn: Queries,
    owner: str,
    until: float,
    limit: int,
    *,
    sent: Sequence[int] = (),
    skip_requests: Collection[str] = (),
) -> list[OutboxMessage]:
    """:meth:`PostgresExtras.claim_outbox` in the caller's transaction, which must commit to keep the leases.

    Two statements. The first stamps ``sent`` and takes a transaction lock on each
    request it may claim rows of, passing over requests a concurrent claim holds. The
    second, with a snapshot taken after those locks, leases those requests' rows. So a
    claim sees every lease a peer committed on its requests, and a peer's claim still in
    flight keeps the request to itself: one request's rows are never out with two
    instances at once, unless a lease runs out.
    """
    at = now()
    requests = [
        r[0] for r in await conn.fetch(_LOCK_REQUESTS, owner, at, limit_or_none(limit), list(sent), list(skip_requests))
    ]
    if not requests:
        return []
    rows = await conn.fetch(_CLAIM_OUTBOX, owner, float(until), at, requests, limit_or_none(limit))
    return sorted((sql.outbox_message(r) for r in rows), key=lambda m: m.id or 0)  # RETURNING has no order


class PostgresExtras(Ledger):
    """Outbox, notification and budget calls of :class:`~videoworker.ledger.postgres.PostgresLedger`."""

    @abc.abstractmethod
    def _require(self) -> Pool:
        """The open pool."""

    @abc.abstractmethod
    def _tx(self) -> AbstractAsyncContextManager[Connection]:
        """One connection inside one transaction."""

    async def claim_outbox(
        self,
        owner: str,
        until: float,
        limit: int,
        *,
        sent: Sequence[int] = (),
        skip_requests: Collection[str] = (),
    ) -> list[OutboxMessage]:
        """Stamp ``sent``, then lease the oldest unsent messages that are free, expired or already
        ours, and not of a request in ``skip_requests`` or held by a peer (see :func:`claim_outbox_in`).

        ``SKIP LOCKED`` and try-locks: publishers on several hosts share the backlog instead of
        serializing on its head.
        """
        async with self._tx() as conn:
            return await claim_outbox_in(conn, owner, until, limit, sent=sent, skip_requests=skip_requests)

    async def mark_sent(self, ids: Sequence[int]) -> None:
        """Stamp the confirmed messages as sent; they leave the pending set."""
        if ids:
            await self._require().execute(
                "UPDATE outbox SET sent_at = $1 WHERE id = ANY($2::bigint[])", now(), list(ids)
            )

    async def claim_notifications(
        self, owner: str, until: float, limit: int, *, per_target: int, busy: Iterable[tuple[str, str]] = ()
    ) -> list[OwedNotification]:
        """Lease the chosen rows in one statement (see :func:`~videoworker.ledger.notifications_sql.claim`).

        Rows a peer is claiming right now are skipped, not waited for: that claim may return
        fewer than ``limit`` rows while the peer holds them, and the next one finds the rest.
        """
        text, args = nsql.claim(POSTGRES, owner, float(until), now(), limit_or_none(limit), per_target, list(busy))
        rows = await self._require().fetch(text, *args)
        return sorted((nsql.notification(r) for r in rows), key=lambda n: n.id or 0)  # RETURNING has no order

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
        """One compare-and-set on the lease owner; a row a peer has re-leased is left alone."""
        values = nsql.settle_values(notification_id, owner, state, attempts, next_at, error, now())
        return affected(await self._require().execute(_N.settle, *values)) == 1

    async def list_notifications(
        self, *, state: str | None = None, request_id: str | None = None, limit: int = 100
    ) -> list[OwedNotification]:
        text, args = nsql.listing(POSTGRES, state, request_id, limit_or_none(limit))
        return [nsql.notification(r) for r in await self._require().fetch(text, *args)]

    async def replay_notifications(self, ids: Sequence[int] | None, *, deadline: float) -> int:
        text, args = nsql.replay(POSTGRES, None if ids is None else list(ids), float(deadline), now())
        return affected(await self._require().execute(text, *args))

    async def notification_counts(self) -> dict[str, dict[str, int]]:
        return nsql.counts(await self._require().fetch(_N.counts))

    async def budget_day(self, day: str) -> tuple[float, float]:
        row = await self._require().fetchrow(_N.budget_read, day)
        return (0.0, 0.0) if row is None else (float(row[0]), float(row[1]))


# --- what PostgresLedger's transition and adopt write ------------------------------------
async def lock_move(conn: Queries, request_id: str, expect: str, owner: str) -> bool:
    """Lock the job row if the move's compare-and-set will succeed (``FOR UPDATE``: it cannot change until commit).

    Under ``READ COMMITTED`` a row being moved by another transaction is waited for, then
    re-checked on its latest version, so a lost race returns False here.
    """
    return await conn.fetchval(_N.lock_move, request_id, expect, owner) is not None


async def apply_budget(conn: Queries, change: BudgetChange) -> None:
    """Apply ``change`` in the caller's transaction; raise OverBudget if a limited reservation would pass.

    Why concurrent reservations cannot overshoot: ``INSERT … ON CONFLICT DO NOTHING``
    makes sure the day row exists (a concurrent inserter of the same day is waited for,
    so the row is there, committed or ours, when it returns). The ``UPDATE … WHERE day = ?
    AND spent + reserved + amount <= limit`` then takes the row lock; a reservation that
    finds the row locked waits for that transaction to end, and ``READ COMMITTED``
    re-evaluates the ``WHERE`` on the latest committed version before updating. So each
    check sees every reservation committed before it, and a refused one updates no row.
    The caller raises, and its transaction rolls back the day row with everything else.
    The job row is locked first (:func:`lock_move`) in every budgeted move, so the two
    locks are always taken in the same order.
    """
    await conn.execute(_N.budget_row, change.day)
    text, args = nsql.budget_update(POSTGRES, change)
    if affected(await conn.execute(text, *args)) != 1:
        raise nsql.over_budget(change, await conn.fetchrow(_N.budget_read, change.day))


async def insert_outbox(conn: Queries, messages: Sequence[OutboxMessage]) -> None:
    """Insert ``messages`` in order (ascending ids) with one statement."""
    if not messages:
        return
    await conn.execute(
        _INSERT_OUTBOX,
        [m.request_id for m in messages],
        [m.exchange for m in messages],
        [m.routing_key for m in messages],
        [m.message_id for m in messages],
        [m.correlation_id for m in messages],
        [m.body for m in messages],
        now(),
    )


async def insert_notifications(conn: Queries, items: Sequence[OwedNotification]) -> None:
    """Record ``items`` in order (ascending ids); one already owed is kept as it is."""
    if items:
        await conn.executemany(_N.insert, nsql.insert_values(items, now()))


async def free_notifications(conn: Queries, dead_owners: Sequence[str]) -> None:
    """Free the pending notifications ``dead_owners`` had leased."""
    text, args = nsql.free_leases(POSTGRES, dead_owners)
    await conn.execute(text, *args)


def affected(status: str) -> int:
    """Row count from a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


def limit_or_none(limit: int) -> int | None:
    """SQLite treats a negative LIMIT as none; PostgreSQL rejects it, so pass NULL (no limit)."""
    return limit if limit >= 0 else None
