"""The PostgreSQL ledger's pooled connections: every statement counted, and no reset round trip.

**Counted.** Each connection gets asyncpg's query logger, which adds one counter
increment per statement (``videoworker_ledger_statements_total{kind}``, the statement's
first word): the figure that sizes a shared database (docs/scaling.md). ``BEGIN`` and
``COMMIT`` are statements too; an ``executemany`` counts once.

**Not reset.** By default asyncpg's pool sends a reset script each time a connection
goes back to the pool (unlock advisory locks, close cursors, unlisten, reset settings):
one more round trip per ledger call, about 8 per job. The ledger keeps no session state
(no ``SET``, ``LISTEN``, cursors or session-level locks; its one advisory lock is
transaction-scoped, and the schema's ``search_path`` is a connection setting), so
:class:`LedgerConnection` has nothing to reset. An open transaction is still rolled back
on release, as asyncpg always does.
"""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from videoworker import metrics

_KINDS = frozenset(
    {"select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "savepoint", "release"}
)


class LedgerConnection(asyncpg.Connection):  # type: ignore[misc, unused-ignore]
    """A pooled connection released without a reset script (see the module's docstring)."""

    def get_reset_query(self) -> str:
        return ""


def kind_of(query: str) -> str:
    """The label a statement is counted under."""
    words = query.split(None, 1)
    kind = words[0].lower().rstrip(";") if words else "other"
    return kind if kind in _KINDS else "other"


async def count_statements(conn: Any) -> None:
    """The pool's ``init``: count every statement ``conn`` sends from now on."""
    conn.add_query_logger(lambda logged: metrics.LEDGER_STATEMENTS.labels(kind=kind_of(logged.query)).inc())
