"""Ledger schema versions and the ordered migrations between them, applied at ``open()``.

A ledger outlives the code that wrote it: an upgraded daemon opens the file or schema its
predecessor left, with the rows still in flight. So the schema is versioned, and each
change is a numbered :class:`Migration` appended to :data:`MIGRATIONS`, never edited
once released.

Bookkeeping: a ``schema_version`` table with one row per applied migration
(``version``, ``applied_at`` in wall-clock seconds). The ledger's version is the highest
row. Keeping the history, rather than one overwritten row, shows when each step ran, and
a step recorded twice fails on the primary key instead of passing unnoticed. Later
versions must keep that table and its ``version`` column: it is how older code
recognises a ledger that is too new.

How a ledger is recognised:

* no ``jobs`` table and no ``schema_version`` table: empty, version 0, every migration runs;
* ``jobs`` but no ``schema_version``: made before versioning existed, exactly migration 1,
  so it is stamped version 1 and the later migrations run;
* ``schema_version``: its highest version. Newer than :data:`SCHEMA_VERSION` is refused
  with :class:`~videoworker.errors.ConfigError` before anything is written: older code
  must not write rows a newer schema may not expect.

The backends run :func:`upgrade_sqlite` / :func:`upgrade_postgres` inside the transaction
that serialises opening (SQLite's ``BEGIN IMMEDIATE`` on its writer thread, PostgreSQL's
advisory lock), so processes opening one ledger at once migrate it exactly once, and a
migration that fails leaves the ledger at its previous version.

The partial indexes bake in :data:`videoworker.ledger.sql.LIVE`, which is generated from
the terminal states. Should those change, add a migration that drops and recreates
``jobs_live`` and ``jobs_live_owner``: otherwise the queries no longer match the indexes of
existing ledgers (still correct, but scanning). The migration tests flag such a change,
since migration 1 would then differ from the recorded version-1 schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from videoworker.errors import ConfigError
from videoworker.ledger import notifications_sql as nsql
from videoworker.ledger import operations_sql as osql
from videoworker.ledger import sql
from videoworker.ledger.base import now
from videoworker.ledger.pgtypes import Queries
from videoworker.ledger.sql import Dialect

log = structlog.get_logger("videoworker.ledger")


@dataclass(frozen=True)
class Migration:
    """One schema step: ``statements(dialect)`` brings version ``version - 1`` to ``version``."""

    version: int
    summary: str
    statements: Callable[[Dialect], list[str]]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs, reply_targets and outbox: the schema from before versioning", sql.schema_v1),
    # IF NOT EXISTS: PostgreSQL's version 1 already has this index
    Migration(2, "jobs_live_owner: an index for one owner's live rows", lambda d: [sql.live_owner_index()]),
    Migration(3, "notifications and budget_days: owed notifier deliveries and each day's spend", nsql.schema_v3),
    Migration(4, "retention and operations: jobs.trimmed, indexes by change time and provider job id", osql.schema_v4),
    Migration(5, "outbox_pending_request: a request's unsent outbox rows, so claims keep its order", sql.schema_v5),
)

#: The version this code creates and understands.
SCHEMA_VERSION = MIGRATIONS[-1].version

if [m.version for m in MIGRATIONS] != list(range(1, SCHEMA_VERSION + 1)):
    raise AssertionError("MIGRATIONS must be numbered 1, 2, 3 … in order")

Statement = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Found:
    """What a ledger holds before it is migrated."""

    recorded: int | None  # highest row of schema_version; None if that table is missing or empty
    has_jobs: bool

    @property
    def version(self) -> int:
        if self.recorded is not None:
            return self.recorded
        return 1 if self.has_jobs else 0


def plan(d: Dialect, found: Found, at: float) -> list[Statement]:
    """The statements that bring ``found`` to :data:`SCHEMA_VERSION` (none if it is there already).

    Raises :class:`ConfigError` for a ledger newer than this code, before anything is written.
    """
    version = found.version
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"ledger schema version {version} is newer than this videoworker understands ({SCHEMA_VERSION});"
            " upgrade videoworker"
        )
    if version == SCHEMA_VERSION and found.recorded is not None:
        return []
    steps: list[Statement] = [(sql.version_table(d), ())]
    if found.recorded is None and found.has_jobs:
        steps.append((sql.stamp(d), (1, at)))
    for migration in MIGRATIONS[version:]:
        steps += [(text, ()) for text in migration.statements(d)]
        steps.append((sql.stamp(d), (migration.version, at)))
    return steps


def report(backend: str, before: int, **where: str) -> None:
    """Log a completed upgrade, after its commit. ``where`` names the ledger: never a URL (it may hold a password)."""
    if before < SCHEMA_VERSION:
        log.info("ledger schema upgraded", backend=backend, from_version=before, to_version=SCHEMA_VERSION, **where)


# --- SQLite ------------------------------------------------------------------------------
def find_sqlite(conn: sqlite3.Connection) -> Found:
    """Read what the ledger holds (inside the caller's transaction)."""

    def exists(table: str) -> bool:
        return bool(conn.execute(sql.table_exists(sql.SQLITE), (table,)).fetchone()[0])

    recorded = conn.execute(sql.RECORDED_VERSION).fetchone()[0] if exists("schema_version") else None
    return Found(recorded, exists("jobs"))


def upgrade_sqlite(conn: sqlite3.Connection) -> int:
    """Migrate inside the caller's ``BEGIN IMMEDIATE`` transaction; returns the version found."""
    found = find_sqlite(conn)
    for text, args in plan(sql.SQLITE, found, now()):
        conn.execute(text, args)  # not executescript(): it would commit the caller's transaction first
    return found.version


# --- PostgreSQL --------------------------------------------------------------------------
async def find_postgres(conn: Queries) -> Found:
    """Read what the ledger holds, in the first schema of the connection's ``search_path``."""

    async def exists(table: str) -> bool:
        return bool(await conn.fetchval(sql.table_exists(sql.POSTGRES), table))

    recorded = await conn.fetchval(sql.RECORDED_VERSION) if await exists("schema_version") else None
    return Found(recorded, await exists("jobs"))


async def upgrade_postgres(conn: Queries) -> int:
    """Migrate inside the caller's transaction (which holds the schema lock); returns the version found."""
    found = await find_postgres(conn)
    for text, args in plan(sql.POSTGRES, found, now()):
        await conn.execute(text, *args)
    return found.version
