"""Counting the statements the PostgreSQL ledger sends: the figure that sizes a shared database.

Every pooled connection gets asyncpg's query logger, which adds one counter increment
per statement (``videoworker_ledger_statements_total{kind}``, the statement's first
word). Transactions' ``BEGIN`` and ``COMMIT`` are statements too and are counted.
"""

from __future__ import annotations

from typing import Any

from videoworker import metrics

_KINDS = frozenset(
    {"select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "savepoint", "release"}
)


def _count(query: Any) -> None:
    words = query.query.split(None, 1)
    kind = words[0].lower().rstrip(";") if words else "other"
    metrics.LEDGER_STATEMENTS.labels(kind=kind if kind in _KINDS else "other").inc()


async def count_statements(conn: Any) -> None:
    """The pool's ``init``: count every statement ``conn`` sends from now on."""
    conn.add_query_logger(_count)
