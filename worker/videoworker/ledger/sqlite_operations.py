"""The SQLite ledger's operator calls: listing jobs, retrying one, and pruning (schema version 4).

Each call runs on the writer thread like any other (see :mod:`videoworker.ledger.sqlite`),
so a pruning batch is one savepoint in a group commit: with batches of a few hundred
rows it adds milliseconds to that commit, never a long lock.
"""

from __future__ import annotations

import abc
import json
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from videoworker.core.states import JobState, check_retry
from videoworker.ledger import operations_sql as osql
from videoworker.ledger import sql
from videoworker.ledger.base import JobRecord, Ledger, now
from videoworker.ledger.retention import Pruned, Retention
from videoworker.ledger.sql import SQLITE

T = TypeVar("T")
_O = osql.statements(SQLITE)


class SQLiteOperations(Ledger):
    """Listing, retry and retention calls of :class:`~videoworker.ledger.sqlite.SQLiteLedger`."""

    @abc.abstractmethod
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread, in its own savepoint."""

    async def list_jobs(
        self, *, state: JobState | None = None, since: float | None = None, model: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        text, args = osql.list_jobs(SQLITE, state=state.value if state else None, since=since, model=model, limit=limit)
        rows = await self._run(lambda conn: conn.execute(text, args).fetchall())
        return [sql.job_record(row) for row in rows]

    async def by_job_id(self, job_id: str) -> JobRecord | None:
        row = await self._run(lambda conn: conn.execute(_O.by_job_id, (job_id,)).fetchone())
        return None if row is None else sql.job_record(row)

    async def reopen(self, request_id: str, expect: JobState, new: JobState, data: dict[str, Any]) -> bool:
        check_retry(expect, new)
        text = _O.reopen_from_start if new is JobState.RECEIVED else _O.reopen
        args = (new.value, json.dumps(data), now(), request_id, expect.value)
        return bool(await self._run(lambda conn: conn.execute(text, args).rowcount))

    async def prune(self, retention: Retention) -> Pruned:
        def op(conn: sqlite3.Connection) -> Pruned:
            done = Pruned()
            sent = (retention.sent_before, retention.batch)
            done.outbox = conn.execute(_O.delete_sent_outbox, sent).rowcount
            done.notifications = conn.execute(_O.delete_delivered_notifications, sent).rowcount
            rows = conn.execute(_O.untrimmed, (retention.trim_before, retention.batch)).fetchall()
            for request_id, model, data in rows:
                conn.execute(_O.trim, (*osql.compact(model, data), request_id))
            if rows:
                for table in osql.TRIM_TABLES:
                    conn.execute(osql.forget(SQLITE, table, len(rows)), [r[0] for r in rows])
            done.trimmed = len(rows)
            ids = [r[0] for r in conn.execute(_O.forgettable, (retention.forget_before, retention.batch)).fetchall()]
            if ids:
                for table in osql.FORGET_TABLES:
                    conn.execute(osql.forget(SQLITE, table, len(ids)), ids)
            done.forgotten = len(ids)
            return done

        return await self._run(op)
