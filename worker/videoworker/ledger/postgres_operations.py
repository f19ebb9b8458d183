"""The PostgreSQL ledger's operator calls: listing jobs, retrying one, and pruning (schema version 4).

Every call is one short transaction, like the rest of that backend. Pruning picks its
rows with ``FOR UPDATE SKIP LOCKED``, so instances on several hosts pruning at the same
moment split the work instead of waiting on each other, and a row a job step holds is
skipped for this round rather than waited for.
"""

from __future__ import annotations

import abc
import json
from contextlib import AbstractAsyncContextManager
from typing import Any

from videoworker.core.states import JobState, check_retry
from videoworker.ledger import operations_sql as osql
from videoworker.ledger import sql
from videoworker.ledger.base import JobRecord, Ledger, now
from videoworker.ledger.pgtypes import Connection, Pool
from videoworker.ledger.retention import Pruned, Retention
from videoworker.ledger.sql import POSTGRES

_O = osql.statements(POSTGRES)


class PostgresOperations(Ledger):
    """Listing, retry and retention calls of :class:`~videoworker.ledger.postgres.PostgresLedger`."""

    @abc.abstractmethod
    def _require(self) -> Pool:
        """The open pool."""

    @abc.abstractmethod
    def _tx(self) -> AbstractAsyncContextManager[Connection]:
        """One connection inside one transaction."""

    async def list_jobs(
        self, *, state: JobState | None = None, since: float | None = None, model: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        text, args = osql.list_jobs(
            POSTGRES, state=state.value if state else None, since=since, model=model, limit=limit
        )
        rows = await self._require().fetch(text, *args)
        return [sql.job_record(row) for row in rows]

    async def by_job_id(self, job_id: str) -> JobRecord | None:
        row = await self._require().fetchrow(_O.by_job_id, job_id)
        return None if row is None else sql.job_record(row)

    async def reopen(self, request_id: str, expect: JobState, new: JobState, data: dict[str, Any]) -> bool:
        check_retry(expect, new)
        text = _O.reopen_from_start if new is JobState.RECEIVED else _O.reopen
        status = await self._require().execute(text, new.value, json.dumps(data), now(), request_id, expect.value)
        return bool(status.endswith(" 1"))

    async def prune(self, retention: Retention) -> Pruned:
        done = Pruned()
        async with self._tx() as conn:
            done.outbox = _count(await conn.execute(_O.delete_sent_outbox, retention.sent_before, retention.batch))
            done.notifications = _count(
                await conn.execute(_O.delete_delivered_notifications, retention.sent_before, retention.batch)
            )
        async with self._tx() as conn:
            rows = await conn.fetch(_O.untrimmed, retention.trim_before, retention.batch)
            if rows:
                await conn.executemany(_O.trim, [(*osql.compact(r[1], r[2]), r[0]) for r in rows])
                for table in osql.TRIM_TABLES:
                    await conn.execute(osql.forget(POSTGRES, table, len(rows)), [r[0] for r in rows])
            done.trimmed = len(rows)
        async with self._tx() as conn:
            ids = [r[0] for r in await conn.fetch(_O.forgettable, retention.forget_before, retention.batch)]
            for table in osql.FORGET_TABLES if ids else ():
                await conn.execute(osql.forget(POSTGRES, table, len(ids)), ids)
            done.forgotten = len(ids)
        return done


def _count(status: str) -> int:
    """The row count of a command tag such as ``DELETE 12``."""
    return int(status.rsplit(" ", 1)[-1])
