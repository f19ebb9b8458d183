"""SQLite ledger: one file, one host, group-committed from a single writer thread.

Every call becomes a small function run on a dedicated thread. The thread takes all
calls waiting at that moment, runs each inside its own savepoint of one transaction and
commits once (``synchronous=FULL``: the submit decision survives power loss, not only
SIGKILL). Under load thousands of state changes share one fsync, so the ledger does not
become the bottleneck; when idle a call commits alone. Several processes on one host may
share the file (WAL, ``busy_timeout``).
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from videoworker.core.states import JobState
from videoworker.ledger.base import (
    ClaimResult,
    JobRecord,
    Ledger,
    OutboxMessage,
    ReplyTarget,
    now,
    validate_move,
)

T = TypeVar("T")
_BATCH = 512
_TERMINAL = ("done", "failed", "submit_unknown")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    request_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    job_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL DEFAULT '{}',
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_live ON jobs (state, lease_until)
    WHERE state NOT IN ('done', 'failed', 'submit_unknown');
CREATE TABLE IF NOT EXISTS reply_targets (
    request_id TEXT NOT NULL,
    reply_to TEXT NOT NULL,
    correlation_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (request_id, reply_to, correlation_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    correlation_id TEXT,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE sent_at IS NULL;
"""

_Call = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class SQLiteLedger(Ledger):
    """The embedded default (``sqlite:///path``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # --- plumbing ------------------------------------------------------------------------
    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(target=self._serve, args=(ready, asyncio.get_running_loop()), daemon=True)
        self._thread.start()
        await ready

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
        _wait_for_wal(conn)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(SCHEMA)
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
        for (_, fut, loop), (ok, value) in zip(batch, results, strict=True):
            loop.call_soon_threadsafe(_settle, fut, ok, value)

    # --- the contract --------------------------------------------------------------------
    async def claim(self, record: JobRecord, reply: ReplyTarget | None) -> ClaimResult:
        def op(conn: sqlite3.Connection) -> ClaimResult:
            t = now()
            cur = conn.execute(
                "INSERT OR IGNORE INTO jobs (request_id, state, model, request, data, owner, lease_until,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    record.request_id,
                    record.state.value,
                    record.model,
                    json.dumps(record.request),
                    json.dumps(record.data),
                    record.owner,
                    record.lease_until,
                    t,
                    t,
                ),
            )
            if reply is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO reply_targets VALUES (?,?,?)",
                    (record.request_id, reply.reply_to, reply.correlation_id or ""),
                )
            if cur.rowcount == 1:
                return ClaimResult(True, record)
            existing = _get(conn, record.request_id)
            assert existing is not None
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
    ) -> bool:
        validate_move(expect, new)

        def op(conn: sqlite3.Connection) -> bool:
            sets = ["state = ?", "updated_at = ?"]
            args: list[Any] = [new.value, now()]
            for column, value in (("job_id", job_id), ("attempts", attempts)):
                if value is not None:
                    sets.append(f"{column} = ?")
                    args.append(value)
            if data is not None:
                sets.append("data = ?")
                args.append(json.dumps(data))
            cur = conn.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE request_id = ? AND state = ? AND owner = ?",
                (*args, request_id, expect.value, owner),
            )
            if cur.rowcount != 1:
                return False
            messages = list(outbox)
            if reply_body is not None:
                messages += _replies(conn, request_id, reply_body, reply_message_id or request_id)
            _insert_outbox(conn, messages)
            return True

        return await self._run(op)

    async def get(self, request_id: str) -> JobRecord | None:
        return await self._run(lambda conn: _get(conn, request_id))

    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        await self._run(lambda conn: _insert_outbox(conn, list(messages)))

    async def renew_leases(self, owner: str, until: float) -> int:
        return await self._run(
            lambda conn: (
                conn.execute(
                    f"UPDATE jobs SET lease_until = ? WHERE owner = ? AND state NOT IN {_TERMINAL}", (until, owner)
                ).rowcount
            )
        )

    async def adopt(self, owner: str, until: float, dead_owners: Iterable[str], limit: int) -> list[JobRecord]:
        dead = list(dead_owners)

        def op(conn: sqlite3.Connection) -> list[JobRecord]:
            marks = ",".join("?" * len(dead)) or "NULL"
            # a dead owner's leased, unsent events are free too, not only its jobs
            conn.execute(f"UPDATE outbox SET lease_until = 0 WHERE sent_at IS NULL AND lease_owner IN ({marks})", dead)
            rows = conn.execute(
                f"SELECT request_id FROM jobs WHERE state NOT IN {_TERMINAL}"
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
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT DISTINCT owner FROM jobs WHERE state NOT IN {_TERMINAL} AND owner IS NOT NULL"
                " UNION SELECT DISTINCT lease_owner FROM outbox WHERE sent_at IS NULL AND lease_owner IS NOT NULL"
            ).fetchall()
        )
        return [r[0] for r in rows]

    async def release(self, owner: str) -> int:
        return await self._run(
            lambda conn: (
                conn.execute(
                    f"UPDATE jobs SET lease_until = 0 WHERE owner = ? AND state NOT IN {_TERMINAL}", (owner,)
                ).rowcount
            )
        )

    async def claim_outbox(self, owner: str, until: float, limit: int) -> list[OutboxMessage]:
        def op(conn: sqlite3.Connection) -> list[OutboxMessage]:
            rows = conn.execute(
                "SELECT id, exchange, routing_key, body, message_id, request_id, correlation_id FROM outbox"
                " WHERE sent_at IS NULL AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)"
                " ORDER BY id LIMIT ?",
                (owner, now(), limit),
            ).fetchall()
            conn.executemany(
                "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id = ?", [(owner, until, r[0]) for r in rows]
            )
            return [OutboxMessage(r[1], r[2], bytes(r[3]), r[4], r[5], r[6], id=r[0]) for r in rows]

        return await self._run(op)

    async def mark_sent(self, ids: Sequence[int]) -> None:
        t = now()
        await self._run(
            lambda conn: conn.executemany("UPDATE outbox SET sent_at = ? WHERE id = ?", [(t, i) for i in ids])
        )

    async def counts(self) -> dict[str, int]:
        def op(conn: sqlite3.Connection) -> dict[str, int]:
            result = {state.value: 0 for state in JobState}
            result.update(dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()))
            result["outbox_pending"] = conn.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
            return result

        return await self._run(op)


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


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _get(conn: sqlite3.Connection, request_id: str) -> JobRecord | None:
    row = conn.execute(
        "SELECT request_id, state, model, request, job_id, attempts, data, owner, lease_until FROM jobs"
        " WHERE request_id = ?",
        (request_id,),
    ).fetchone()
    if row is None:
        return None
    return JobRecord(
        row[0], JobState(row[1]), row[2], json.loads(row[3]), row[4], row[5], json.loads(row[6]), row[7], row[8]
    )


def _replies(conn: sqlite3.Connection, request_id: str, body: bytes, message_id: str) -> list[OutboxMessage]:
    rows = conn.execute("SELECT reply_to, correlation_id FROM reply_targets WHERE request_id = ?", (request_id,))
    return [OutboxMessage("", r[0], body, message_id, request_id, r[1] or None) for r in rows.fetchall()]


def _insert_outbox(conn: sqlite3.Connection, messages: list[OutboxMessage]) -> None:
    t = now()
    conn.executemany(
        "INSERT INTO outbox (request_id, exchange, routing_key, message_id, correlation_id, body, created_at)"
        " VALUES (?,?,?,?,?,?,?)",
        [(m.request_id, m.exchange, m.routing_key, m.message_id, m.correlation_id, m.body, t) for m in messages],
    )
