"""PostgreSQL ledger: the same rows as the SQLite one, shared by several hosts.

SQLite serves the instances of one host; when instances run on several hosts they need
one ledger they can all reach, with row locks instead of a single writer. This module
owns that backend (``postgresql://`` or ``postgres://``). Its semantics are those of
:mod:`videoworker.ledger.sqlite`, call for call; only the locking differs:

* every change is one short transaction (``READ COMMITTED``) on a pooled connection;
* :meth:`PostgresLedger.adopt` and :meth:`PostgresLedger.claim_outbox` pick their rows
  with ``FOR UPDATE SKIP LOCKED``, so instances on different hosts adopting or
  publishing at the same moment split the rows between them instead of queueing
  behind each other or taking the same row twice;
* the schema is created or upgraded (:mod:`videoworker.ledger.migrations`) at
  :meth:`PostgresLedger.open` under a transaction-scoped advisory lock, because
  ``CREATE TABLE IF NOT EXISTS`` run by two sessions at once can still fail on the
  catalogue's unique indexes, and a migration must run once.

JSON columns are ``TEXT`` (as in SQLite), not ``JSONB``: the round trip is exact and a
provider's odd payload (``NaN``, a ``\\u0000`` in a string) cannot make a state change fail.
Operators can still query them with ``data::jsonb``. Lease times are the callers' wall
clock (``time.time()``), like everywhere else in the daemon.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from videoworker.core.states import JobState
from videoworker.ledger import migrations, sql
from videoworker.ledger import postgres_extras as extras
from videoworker.ledger.base import (
    BudgetChange,
    ClaimResult,
    JobRecord,
    OutboxMessage,
    OwedNotification,
    ReplyTarget,
    now,
    validate_move,
)
from videoworker.ledger.pgconnections import LedgerConnection, count_statements
from videoworker.ledger.pgtypes import Connection, Pool
from videoworker.ledger.postgres_operations import PostgresOperations

_SCHEMA_LOCK = 0x5649_4445_4F4C_4544  # "VIDEOLED": one advisory lock key for schema creation and migration
_Q = sql.common(sql.POSTGRES)
_CLAIM = sql.claim_insert(sql.POSTGRES) + " ON CONFLICT (request_id) DO NOTHING RETURNING true"

# One final event per reply target. A statement of its own, run after the UPDATE of the
# job row: see the race note in PostgresLedger.transition.
_INSERT_REPLIES = (
    sql.OUTBOX_INSERT + " SELECT request_id, '', reply_to, $2, NULLIF(correlation_id, ''), $3, $4 FROM reply_targets"
    " WHERE request_id = $1 ORDER BY reply_to, correlation_id"
)


class PostgresLedger(extras.PostgresExtras, PostgresOperations):
    """The several-hosts backend (``postgresql://user@host/db``), on an asyncpg pool.

    Notifications and the daily budget are in :mod:`videoworker.ledger.postgres_extras`;
    listing, retry and retention in :mod:`videoworker.ledger.postgres_operations`.

    ``schema`` puts the tables in that schema (created if missing) instead of the
    connection's default ``search_path``: for tests, or several deployments in one database.
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, schema: str | None = None) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(f"not a PostgreSQL URL (postgresql:// or postgres://): scheme {scheme!r}")
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.schema = schema
        self._pool: Pool | None = None

    # --- plumbing ------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect the pool, then create or upgrade the schema (once, whoever comes first).

        Raises :class:`~videoworker.errors.ConfigError`, changing nothing, if the ledger's
        schema is newer than this code.
        """
        settings = {"search_path": _ident(self.schema)} if self.schema else None
        pool: Pool = await asyncpg.create_pool(
            self.url,
            min_size=self.min_size,
            max_size=self.max_size,
            server_settings=settings,
            init=count_statements,
            connection_class=LedgerConnection,
        )
        try:
            async with pool.acquire() as conn, conn.transaction():
                # concurrent CREATE ... IF NOT EXISTS can still collide in the catalogue: serialize them
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                if self.schema:
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(self.schema)}")
                before = await migrations.upgrade_postgres(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        migrations.report("postgresql", before, **({"schema": self.schema} if self.schema else {}))

    async def close(self) -> None:
        """Close the pool; it waits for calls that hold a connection to finish."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _require(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("ledger is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Connection]:
        """One connection inside one transaction: committed on exit, rolled back on error."""
        async with self._require().acquire() as conn, conn.transaction():
            yield conn

    # --- the contract --------------------------------------------------------------------
    async def claim(self, record: JobRecord, reply: ReplyTarget | None) -> ClaimResult:
        """Insert-if-absent; remember ``reply`` either way; a duplicate gets the stored row.

        Race with a terminal :meth:`transition` (which fans ``reply_body`` out to the reply
        targets): for a duplicate, the job row is locked (``FOR UPDATE``) *before* the
        reply target is inserted. Either this claim locks first, and the transition's
        UPDATE waits for our commit and then sees the new target; or the transition
        commits first, and the row we return is already terminal, so the caller answers
        the duplicate itself from the ledger. A target is never left unanswered.
        """
        async with self._tx() as conn:
            inserted = await conn.fetchval(_CLAIM, *sql.claim_values(record, now()))
            existing: JobRecord | None = None
            if inserted is None:
                # ON CONFLICT waited for any concurrent inserter, so the row is committed and visible now
                row = await conn.fetchrow(_Q.get + " FOR UPDATE", record.request_id)
                if row is None:
                    raise RuntimeError(f"job {record.request_id!r} conflicted but cannot be read")
                existing = sql.job_record(row)
            if reply is not None and (existing is None or existing.producer == record.producer):
                await conn.execute(
                    "INSERT INTO reply_targets (request_id, reply_to, correlation_id) VALUES ($1, $2, $3)"
                    " ON CONFLICT DO NOTHING",
                    record.request_id,
                    reply.reply_to,
                    reply.correlation_id or "",
                )
        if existing is None:
            return ClaimResult(True, record)
        return ClaimResult(False, existing)

    async def transition(
        self,
        request_id: str,
        owner: str,
        expect: JobState,
        new: JobState,
        *,
        job_id: str | None = None,
        attempts: int | None = None,
        data: dict[str, Any] | None = None,
        outbox: Sequence[OutboxMessage] = (),
        reply_body: bytes | None = None,
        reply_message_id: str | None = None,
        notifications: Sequence[OwedNotification] = (),
        budget: BudgetChange | None = None,
    ) -> bool:
        """Compare-and-set one row and record its messages and notifications in the same transaction.

        The reply targets are read by a statement *after* the UPDATE, never within it: the
        UPDATE may have waited for a duplicate :meth:`claim` holding the row lock, and under
        ``READ COMMITTED`` only a new statement sees the target that claim committed.

        With a ``budget``, the job row is locked and checked first, then the budget changed,
        before any other write: a lost compare-and-set writes nothing, and OverBudget rolls
        the transaction back (:func:`~videoworker.ledger.postgres_extras.apply_budget`).
        """
        validate_move(expect, new)
        update, args = sql.transition_update(
            sql.POSTGRES, request_id, owner, expect, new, job_id=job_id, attempts=attempts, data=data, at=now()
        )
        async with self._tx() as conn:
            if budget is not None:
                if not await extras.lock_move(conn, request_id, expect.value, owner):
                    return False
                await extras.apply_budget(conn, budget)
            moved = await conn.fetchval(update + " RETURNING true", *args)
            if moved is None:
                if budget is not None:  # locked above: cannot happen; roll the budget back with everything
                    raise RuntimeError(f"job {request_id!r} changed under its row lock")
                return False
            await extras.insert_outbox(conn, outbox)
            if reply_body is not None:
                await conn.execute(_INSERT_REPLIES, request_id, reply_message_id or request_id, reply_body, now())
            await extras.insert_notifications(conn, notifications)
        return True

    async def get(self, request_id: str) -> JobRecord | None:
        """Read one row (latest committed version)."""
        row = await self._require().fetchrow(_Q.get, request_id)
        return None if row is None else sql.job_record(row)

    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        """Record messages without a state change, in one statement."""
        await extras.insert_outbox(self._require(), messages)

    async def renew_leases(self, owner: str, until: float) -> int:
        """Extend all of ``owner``'s unfinished rows in one UPDATE; returns how many."""
        status = await self._require().execute(_Q.renew_leases, float(until), owner)
        return extras.affected(status)

    async def adopt(self, owner: str, until: float, dead_owners: Iterable[str], limit: int) -> list[JobRecord]:
        """Take up to ``limit`` free unfinished rows in one statement.

        ``SKIP LOCKED`` lets peers adopt at the same time without waiting for each other or
        taking the same row; rows a peer is moving right now are simply left for later.
        """
        dead = list(dead_owners)
        if dead:
            # a dead owner's leased, unsent events and notifications are free too, not only its jobs
            await self._require().execute(
                "UPDATE outbox SET lease_until = 0 WHERE sent_at IS NULL AND lease_owner = ANY($1::text[])", dead
            )
            await extras.free_notifications(self._require(), dead)
        rows = await self._require().fetch(
            "WITH picked AS ("
            f" SELECT request_id FROM jobs WHERE {sql.LIVE}"
            " AND (owner IS NULL OR lease_until < $3 OR owner = ANY($4::text[]))"
            " LIMIT $5 FOR UPDATE SKIP LOCKED)"
            " UPDATE jobs SET owner = $1, lease_until = $2 FROM picked WHERE jobs.request_id = picked.request_id"
            " RETURNING " + ", ".join(f"jobs.{c}" for c in sql.JOB_COLUMNS),
            owner,
            float(until),
            now(),
            dead,
            extras.limit_or_none(limit),
        )
        return [sql.job_record(r) for r in rows]

    async def live_owners(self) -> list[str]:
        """Distinct owners of unfinished rows and of leased, unsent outbox messages."""
        rows = await self._require().fetch(_Q.live_owners)
        return [r[0] for r in rows]

    async def release(
        self, owner: str, *, keep_jobs: Collection[str] = (), keep_notifications: Collection[int] = ()
    ) -> int:
        """Expire ``owner``'s job leases now (owner kept) and free its notifications, so anyone may take them."""
        pool = self._require()
        await pool.execute(_Q.release_notifications + " AND id <> ALL($2::bigint[])", owner, list(keep_notifications))
        status = await pool.execute(_Q.release + " AND request_id <> ALL($2::text[])", owner, list(keep_jobs))
        return extras.affected(status)

    async def counts(self) -> dict[str, int]:
        """Rows per state (every state present, zero if none) plus ``outbox_pending``."""
        async with self._tx() as conn:  # one snapshot for both reads
            rows = await conn.fetch(_Q.count_states)
            pending = await conn.fetchval(_Q.count_pending)
        result = {state.value: 0 for state in JobState}
        result.update({r[0]: int(r[1]) for r in rows})
        result["outbox_pending"] = int(pending)
        return result

    async def schema_version(self) -> int:
        """The highest applied migration (1 for a ledger made before versioning)."""
        async with self._tx() as conn:  # one snapshot for the table checks and the read
            return (await migrations.find_postgres(conn)).version


def _ident(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
