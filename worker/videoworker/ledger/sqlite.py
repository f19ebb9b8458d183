"""SQLite ledger: one file, one host, group-committed from a single writer thread.

Every call becomes a small function run on a dedicated thread. The thread takes all
calls waiting at that moment, runs each inside its own savepoint of one transaction and
commits once (``synchronous=FULL``: the submit decision survives power loss, not only
SIGKILL). Under load thousands of state changes share one fsync, so the ledger does not
become the bottleneck; when idle a call commits alone. Several processes on one host may
share the file (WAL, ``busy_timeout``).

The schema is created or upgraded by the first call on the writer thread, inside the
same ``BEGIN IMMEDIATE`` as every batch, so processes opening one file at once take
turns and migrate it once (see :mod:`videoworker.ledger.migrations`).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from videoworker.core.states import JobState
from videoworker.ledger import migrations, sql
from videoworker.ledger import sqlite_extras as extras
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
from videoworker.ledger.sqlite_operations import SQLiteOperations

T = TypeVar("T")
_BATCH = 512
_Q = sql.common(sql.SQLITE)
_CLAIM = sql.claim_insert(sql.SQLITE, "INSERT OR IGNORE")

_Call = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class SQLiteLedger(extras.SQLiteExtras, SQLiteOperations):
    """The embedded default (``sqlite:///path``).

    Notifications and the budget are in :mod:`.sqlite_extras`; listing, retry and
    retention in :mod:`.sqlite_operations`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # --- plumbing ------------------------------------------------------------------------
    async def open(self) -> None:
        """Start the writer thread, then create or upgrade the schema as its first call.

        Raises :class:`~videoworker.errors.ConfigError`, leaving the file as it was, if the
        ledger's schema is newer than this code.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._calls = queue.SimpleQueue()  # a failed open may have left its stop marker in the old one
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(target=self._serve, args=(ready, asyncio.get_running_loop()), daemon=True)
        self._thread.start()
        try:
            await ready
            before = await self._run(migrations.upgrade_sqlite)
        except BaseException:
            await self.close()
            raise
        migrations.report("sqlite", before, path=str(self.path))

    async def close(self) -> None:
        if self._thread is not None:
            self._calls.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None:
            raise RuntimeError("ledger is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._calls.put((fn, fut, loop))
        return await fut

    def _serve(self, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn = self._connect()
        except Exception as exc:  # noqa: BLE001 - handed to the caller of open()
            loop.call_soon_threadsafe(ready.set_exception, exc)
            return
        loop.call_soon_threadsafe(ready.set_result, None)
        with conn:
            while (batch := self._take_batch()) is not None:
                self._execute(conn, batch)
        conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            _wait_for_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            # 1 MiB of pages, not 2: the kernel's page cache holds the file as well, and a miss is one pread
            conn.execute("PRAGMA cache_size=-1024")
        except BaseException:
            conn.close()
            raise
        return conn

    def _take_batch(self) -> list[_Call] | None:
        first = self._calls.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < _BATCH:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._calls.put(None)
                break
            batch.append(item)
        return batch

    def _execute(self, conn: sqlite3.Connection, batch: list[_Call]) -> None:
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _, _ in batch:
                conn.execute("SAVEPOINT call")
                try:
                    results.append((True, fn(conn)))
                    conn.execute("RELEASE call")
                except Exception as exc:  # noqa: BLE001 - one failing call must not fail its neighbours
                    conn.execute("ROLLBACK TO call")
                    conn.execute("RELEASE call")
                    results.append((False, exc))
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - the whole batch failed to commit
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [(False, exc)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, fut, loop), (ok, value) in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, settled in by_loop.items():  # one wake-up (a self-pipe write) per batch, not one per call
            loop.call_soon_threadsafe(_settle_all, settled)

    # --- the contract --------------------------------------------------------------------
    async def claim(self, record: JobRecord, reply: ReplyTarget | None) -> ClaimResult:
        def op(conn: sqlite3.Connection) -> ClaimResult:
            created = conn.execute(_CLAIM, sql.claim_values(record, now())).rowcount == 1
            existing = None if created else _get(conn, record.request_id)
            if reply is not None and (existing is None or existing.producer == record.producer):
                conn.execute(
                    "INSERT OR IGNORE INTO reply_targets VALUES (?,?,?)",
                    (record.request_id, reply.reply_to, reply.correlation_id or ""),
                )
            if existing is None:
                assert created, f"job {record.request_id!r} conflicted but cannot be read"
                return ClaimResult(True, record)
            return ClaimResult(False, existing)

        return await self._run(op)

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
        """Compare-and-set one row and record what it owes, in one savepoint.

        With a ``budget`` the move is checked, then the budget changed, before any other write:
        a lost compare-and-set writes nothing, and OverBudget rolls the savepoint back.
        """
        validate_move(expect, new)

        def op(conn: sqlite3.Connection) -> bool:
            if budget is not None:
                if not extras.check_move(conn, request_id, expect.value, owner):
                    return False
                extras.apply_budget(conn, budget)
            update, args = sql.transition_update(
                sql.SQLITE, request_id, owner, expect, new, job_id=job_id, attempts=attempts, data=data, at=now()
            )
            if conn.execute(update, args).rowcount != 1:
                if budget is not None:  # checked above, under the same write lock: cannot happen
                    raise RuntimeError(f"job {request_id!r} changed under the write lock")
                return False
            messages = list(outbox)
            if reply_body is not None:
                messages += extras.replies(conn, request_id, reply_body, reply_message_id or request_id)
            extras.insert_outbox(conn, messages)
            extras.insert_notifications(conn, notifications)
            return True

        return await self._run(op)

    async def get(self, request_id: str) -> JobRecord | None:
        return await self._run(lambda conn: _get(conn, request_id))

    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        await self._run(lambda conn: extras.insert_outbox(conn, list(messages)))

    async def renew_leases(self, owner: str, until: float) -> int:
        return await self._run(lambda conn: conn.execute(_Q.renew_leases, (until, owner)).rowcount)

    async def adopt(self, owner: str, until: float, dead_owners: Iterable[str], limit: int) -> list[JobRecord]:
        dead = list(dead_owners)

        def op(conn: sqlite3.Connection) -> list[JobRecord]:
            marks = ",".join("?" * len(dead)) or "NULL"
            # a dead owner's leased, unsent events and notifications are free too, not only its jobs
            conn.execute(f"UPDATE outbox SET lease_until = 0 WHERE sent_at IS NULL AND lease_owner IN ({marks})", dead)
            extras.free_notifications(conn, dead)
            rows = conn.execute(
                f"SELECT request_id FROM jobs WHERE {sql.LIVE}"
                f" AND (owner IS NULL OR lease_until < ? OR owner IN ({marks})) LIMIT ?",
                (now(), *dead, limit),
            ).fetchall()
            ids = [r[0] for r in rows]
            conn.executemany(
                "UPDATE jobs SET owner = ?, lease_until = ? WHERE request_id = ?", [(owner, until, i) for i in ids]
            )
            return [r for i in ids if (r := _get(conn, i)) is not None]

        return await self._run(op)

    async def live_owners(self) -> list[str]:
        rows = await self._run(lambda conn: conn.execute(_Q.live_owners).fetchall())
        return [r[0] for r in rows]

    async def release(
        self, owner: str, *, keep_jobs: Collection[str] = (), keep_notifications: Collection[int] = ()
    ) -> int:
        jobs, rows = list(keep_jobs), list(keep_notifications)

        def op(conn: sqlite3.Connection) -> int:
            notifications = f"{_Q.release_notifications} AND id NOT IN ({', '.join('?' * len(rows))})"
            conn.execute(notifications, (owner, *rows))
            return conn.execute(
                f"{_Q.release} AND request_id NOT IN ({', '.join('?' * len(jobs))})", (owner, *jobs)
            ).rowcount

        return await self._run(op)

    async def counts(self) -> dict[str, int]:
        def op(conn: sqlite3.Connection) -> dict[str, int]:
            result = {state.value: 0 for state in JobState}
            result.update(dict(conn.execute(_Q.count_states).fetchall()))
            result["outbox_pending"] = conn.execute(_Q.count_pending).fetchone()[0]
            return result

        return await self._run(op)

    async def schema_version(self) -> int:
        """The highest applied migration (1 for a ledger made before versioning)."""
        return await self._run(lambda conn: migrations.find_sqlite(conn).version)


def _wait_for_wal(conn: sqlite3.Connection, patience: float = 30.0) -> None:
    """Switch to WAL; a peer creating the same new file may hold it briefly, and this pragma does not wait."""
    deadline = time.monotonic() + patience
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in settled:
        if fut.done():  # its caller was cancelled meanwhile
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _get(conn: sqlite3.Connection, request_id: str) -> JobRecord | None:
    row = conn.execute(_Q.get, (request_id,)).fetchone()
    return None if row is None else sql.job_record(row)
