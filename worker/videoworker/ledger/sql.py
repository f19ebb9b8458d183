"""SQL text shared by the ledger backends: schema, column lists, row mapping, common statements.

SQLite and PostgreSQL hold the same rows and answer the same calls; they differ only in a
few column types, the placeholder style and how they lock. Everything both write is
generated here from one description per :class:`Dialect`, so a column, an index or a
terminal state cannot drift between the backends. Statements are written with ``?``
placeholders; :meth:`Dialect.q` numbers them (``$1``, ``$2`` …) for PostgreSQL.

The "live rows" predicate is spelled out as literals, not bound parameters, so the
planner can match it to the partial indexes; it is generated from
:data:`videoworker.core.states.TERMINAL`, sorted so the text (and thus the index
definitions) is stable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from videoworker.core.states import TERMINAL, JobState
from videoworker.ledger.base import JobRecord, OutboxMessage


class Row(Protocol):
    """A fetched row: a ``sqlite3`` tuple or an ``asyncpg.Record``."""

    def __getitem__(self, index: int) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    """What differs between the backends' SQL text."""

    name: str
    real: str
    blob: str
    serial_key: str
    numbered: bool
    #: PostgreSQL's schema had the owner index before versioning; SQLite's gets it from migration 2.
    owner_index_in_v1: bool
    #: The larger of two values (SQLite's two-argument ``MAX`` is a scalar function, not the aggregate).
    greatest: str
    #: One array parameter stands for a list of values (``= ANY(?)``); otherwise one placeholder per value.
    arrays: bool
    #: Row locks (``FOR UPDATE``, ``SKIP LOCKED``); without them the single writer's transaction serialises.
    row_locks: bool

    def q(self, text: str) -> str:
        """``text`` with its ``?`` placeholders in this dialect's style (no ``?`` may appear in literals)."""
        if not self.numbered:
            return text
        parts = text.split("?")
        return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


SQLITE = Dialect(
    "sqlite",
    real="REAL",
    blob="BLOB",
    serial_key="INTEGER PRIMARY KEY AUTOINCREMENT",
    numbered=False,
    owner_index_in_v1=False,
    greatest="MAX",
    arrays=False,
    row_locks=False,
)
POSTGRES = Dialect(
    "postgresql",
    real="DOUBLE PRECISION",
    blob="BYTEA",
    serial_key="BIGSERIAL PRIMARY KEY",
    numbered=True,
    owner_index_in_v1=True,
    greatest="GREATEST",
    arrays=True,
    row_locks=True,
)

TERMINAL_VALUES: tuple[str, ...] = tuple(sorted(state.value for state in TERMINAL))
LIVE = "state NOT IN (" + ", ".join(f"'{value}'" for value in TERMINAL_VALUES) + ")"
FINISHED = "state IN (" + ", ".join(f"'{value}'" for value in TERMINAL_VALUES) + ")"

JOB_COLUMNS = (
    "request_id",
    "state",
    "model",
    "request",
    "job_id",
    "attempts",
    "data",
    "owner",
    "lease_until",
    "created_at",
    "updated_at",
)
OUTBOX_COLUMNS = ("id", "exchange", "routing_key", "body", "message_id", "request_id", "correlation_id")
JOBS_SELECT = ", ".join(JOB_COLUMNS)
OUTBOX_SELECT = ", ".join(OUTBOX_COLUMNS)
_CLAIM_COLUMNS = ("request_id", "state", "model", "request", "data", "owner", "lease_until", "created_at", "updated_at")


# --- schema ------------------------------------------------------------------------------
def schema_v1(d: Dialect) -> list[str]:
    """The schema as it was before versioning, statement for statement, in ``d``'s types."""
    statements = [
        f"""CREATE TABLE IF NOT EXISTS jobs (
    request_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    job_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL DEFAULT '{{}}',
    owner TEXT,
    lease_until {d.real} NOT NULL DEFAULT 0,
    created_at {d.real} NOT NULL,
    updated_at {d.real} NOT NULL
)""",
        f"CREATE INDEX IF NOT EXISTS jobs_live ON jobs (state, lease_until) WHERE {LIVE}",
    ]
    if d.owner_index_in_v1:
        statements.append(live_owner_index())
    statements += [
        """CREATE TABLE IF NOT EXISTS reply_targets (
    request_id TEXT NOT NULL,
    reply_to TEXT NOT NULL,
    correlation_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (request_id, reply_to, correlation_id)
)""",
        f"""CREATE TABLE IF NOT EXISTS outbox (
    id {d.serial_key},
    request_id TEXT NOT NULL,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    correlation_id TEXT,
    body {d.blob} NOT NULL,
    created_at {d.real} NOT NULL,
    lease_owner TEXT,
    lease_until {d.real} NOT NULL DEFAULT 0,
    sent_at {d.real}
)""",
        "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE sent_at IS NULL",
    ]
    return statements


def live_owner_index() -> str:
    """Lease renewal and release scan one owner's live rows; without this index they scan all live rows."""
    return f"CREATE INDEX IF NOT EXISTS jobs_live_owner ON jobs (owner) WHERE {LIVE}"


def version_table(d: Dialect) -> str:
    """One row per applied migration (see :mod:`videoworker.ledger.migrations`)."""
    return f"CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at {d.real} NOT NULL)"


def table_exists(d: Dialect) -> str:
    """Counts tables named by the one parameter, where ``CREATE TABLE`` without a schema would put them."""
    if d.numbered:
        return "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1"
    return "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"


RECORDED_VERSION = "SELECT MAX(version) FROM schema_version"


def stamp(d: Dialect) -> str:
    return d.q("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)")


# --- statements both backends run as they are --------------------------------------------
@dataclass(frozen=True)
class Common:
    """The statements whose text is the same for both backends but for placeholders."""

    get: str
    renew_leases: str
    release: str
    release_notifications: str
    live_owners: str
    count_states: str
    count_pending: str


def common(d: Dialect) -> Common:
    return Common(
        get=d.q(f"SELECT {JOBS_SELECT} FROM jobs WHERE request_id = ?"),
        renew_leases=d.q(f"UPDATE jobs SET lease_until = ? WHERE owner = ? AND {LIVE}"),
        release=d.q(f"UPDATE jobs SET lease_until = 0 WHERE owner = ? AND {LIVE}"),
        release_notifications=d.q(
            "UPDATE notifications SET lease_owner = NULL, lease_until = 0 WHERE state = 'pending' AND lease_owner = ?"
        ),
        live_owners=(
            f"SELECT DISTINCT owner FROM jobs WHERE {LIVE} AND owner IS NOT NULL"
            " UNION SELECT DISTINCT lease_owner FROM outbox WHERE sent_at IS NULL AND lease_owner IS NOT NULL"
            " UNION SELECT DISTINCT lease_owner FROM notifications WHERE state = 'pending' AND lease_owner IS NOT NULL"
        ),
        count_states="SELECT state, COUNT(*) FROM jobs GROUP BY state",
        count_pending="SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL",
    )


def claim_insert(d: Dialect, verb: str = "INSERT") -> str:
    """``<verb> INTO jobs (…) VALUES (…)`` for :func:`claim_values`; each backend adds its conflict handling."""
    return d.q(f"{verb} INTO jobs ({', '.join(_CLAIM_COLUMNS)}) VALUES ({', '.join('?' * len(_CLAIM_COLUMNS))})")


#: Every backend inserts outbox rows with these columns, in this order.
OUTBOX_INSERT = "INSERT INTO outbox (request_id, exchange, routing_key, message_id, correlation_id, body, created_at)"


def schema_v5(d: Dialect) -> list[str]:
    """Migration 5: a request's unsent outbox rows by id: a claim looks for an earlier one leased to a peer."""
    return ["CREATE INDEX IF NOT EXISTS outbox_pending_request ON outbox (request_id, id) WHERE sent_at IS NULL"]


def claim_values(record: JobRecord, at: float) -> tuple[Any, ...]:
    """The values of a new row for :func:`claim_insert` (created and updated at ``at``)."""
    return (
        record.request_id,
        record.state.value,
        record.model,
        json.dumps(record.request),
        json.dumps(record.data),
        record.owner,
        float(record.lease_until),
        at,
        at,
    )


def transition_update(
    d: Dialect,
    request_id: str,
    owner: str,
    expect: JobState,
    new: JobState,
    *,
    job_id: str | None,
    attempts: int | None,
    data: dict[str, Any] | None,
    at: float,
) -> tuple[str, list[Any]]:
    """The compare-and-set ``UPDATE`` of :meth:`Ledger.transition`: fields left as None keep their values."""
    sets = ["state = ?", "updated_at = ?"]
    args: list[Any] = [new.value, at]
    for column, value in (("job_id", job_id), ("attempts", attempts)):
        if value is not None:
            sets.append(f"{column} = ?")
            args.append(value)
    if data is not None:
        sets.append("data = ?")
        args.append(json.dumps(data))
    text = f"UPDATE jobs SET {', '.join(sets)} WHERE request_id = ? AND state = ? AND owner = ?"
    return d.q(text), [*args, request_id, expect.value, owner]


# --- rows --------------------------------------------------------------------------------
def job_record(row: Row) -> JobRecord:
    """A row selected as :data:`JOBS_SELECT`."""
    return JobRecord(
        row[0],
        JobState(row[1]),
        row[2],
        json.loads(row[3]),
        row[4],
        row[5],
        json.loads(row[6]),
        row[7],
        row[8],
        row[9],
        row[10],
    )


def outbox_message(row: Row) -> OutboxMessage:
    """A row selected as :data:`OUTBOX_SELECT`."""
    return OutboxMessage(row[1], row[2], bytes(row[3]), row[4], row[5], row[6], id=row[0])
