"""SQL for operating on a ledger rather than running jobs: listing, retrying, and retention.

Both backends run these statements as they are (placeholders aside), so a listing or a
pruning round means the same on SQLite and PostgreSQL.

Retention works in three kinds of batch, each of at most ``batch`` rows in one short
transaction, so pruning never holds a lock the hot path waits on for long:

* **sent outbox rows and delivered notifications** older than ``outbox_retention``: they
  only served to publish or deliver once, which is done;
* **trimming** finished jobs older than ``trim_after``: the request body becomes
  ``{"model": …}``, the job's data keeps only :data:`COMPACT_KEYS`, enough to answer a
  duplicate id (the final event) and to show what it produced and cost, and its reply
  targets go (a duplicate is answered on its own ``reply_to``);
* **forgetting** finished jobs older than ``dedupe_days``, with their reply targets and
  notifications: the id may then be accepted again. That is the documented dedup window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from videoworker.ledger.sql import FINISHED, JOBS_SELECT, Dialect

#: What a trimmed job keeps of its data: the final event (answers duplicates; it holds the
#: outputs, cost, error and timestamps), the usage, and the producer (keeps other producers out).
COMPACT_KEYS = ("final", "usage", "producer", "retries")


def schema_v4(d: Dialect) -> list[str]:
    """Migration 4: the ``trimmed`` mark and the indexes listing, retrying and pruning read."""
    return [
        "ALTER TABLE jobs ADD COLUMN trimmed INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated_at)",
        f"CREATE INDEX IF NOT EXISTS jobs_untrimmed ON jobs (updated_at) WHERE trimmed = 0 AND {FINISHED}",
        "CREATE INDEX IF NOT EXISTS jobs_job_id ON jobs (job_id) WHERE job_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS notifications_delivered ON notifications (delivered_at) WHERE state = 'delivered'",
    ]


def list_jobs(
    d: Dialect, *, state: str | None, since: float | None, model: str | None, limit: int
) -> tuple[str, list[Any]]:
    """``SELECT`` of :meth:`Ledger.list_jobs`, newest change first."""
    where: list[str] = []
    args: list[Any] = []
    for clause, value in (("state = ?", state), ("updated_at >= ?", since), ("model = ?", model)):
        if value is not None:
            where.append(clause)
            args.append(value)
    text = f"SELECT {JOBS_SELECT} FROM jobs"
    if where:
        text += " WHERE " + " AND ".join(where)
    text += " ORDER BY updated_at DESC LIMIT ?"
    return d.q(text), [*args, limit]


def by_job_id(d: Dialect) -> str:
    return d.q(f"SELECT {JOBS_SELECT} FROM jobs WHERE job_id = ? LIMIT 1")


def reopen(d: Dialect, *, clear_job_id: bool) -> str:
    """The compare-and-set of :meth:`Ledger.reopen`: args ``(state, data, updated_at, request_id, expect)``."""
    job_id = ", job_id = NULL, attempts = 0" if clear_job_id else ""
    return d.q(
        f"UPDATE jobs SET state = ?, data = ?, updated_at = ?, owner = NULL, lease_until = 0{job_id}"
        " WHERE request_id = ? AND state = ? AND trimmed = 0"
    )


# --- retention ---------------------------------------------------------------------------
def delete_sent_outbox(d: Dialect) -> str:
    """Args ``(sent_before, batch)``."""
    return d.q(
        "DELETE FROM outbox WHERE id IN"
        " (SELECT id FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ? ORDER BY sent_at LIMIT ?)"
    )


def delete_delivered_notifications(d: Dialect) -> str:
    """Args ``(delivered_before, batch)``."""
    return d.q(
        "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications"
        " WHERE state = 'delivered' AND delivered_at < ? ORDER BY delivered_at LIMIT ?)"
    )


def untrimmed(d: Dialect) -> str:
    """Args ``(trim_before, batch)``: ``(request_id, model, data)`` of finished rows to trim."""
    lock = " FOR UPDATE SKIP LOCKED" if d.row_locks else ""
    return d.q(
        "SELECT request_id, model, data FROM jobs"
        f" WHERE trimmed = 0 AND {FINISHED} AND updated_at < ? ORDER BY updated_at LIMIT ?{lock}"
    )


def trim(d: Dialect) -> str:
    """Args ``(request, data, request_id)``; keeps ``updated_at``, which the dedup window counts from."""
    return d.q(f"UPDATE jobs SET request = ?, data = ?, trimmed = 1 WHERE request_id = ? AND {FINISHED}")


def forgettable(d: Dialect) -> str:
    """Args ``(forget_before, batch)``: ids of finished rows past the dedup window."""
    lock = " FOR UPDATE SKIP LOCKED" if d.row_locks else ""
    return d.q(f"SELECT request_id FROM jobs WHERE {FINISHED} AND updated_at < ? ORDER BY updated_at LIMIT ?{lock}")


def forget(d: Dialect, table: str, count: int) -> str:
    """Delete ``table``'s rows of ``count`` request ids (one array parameter on PostgreSQL)."""
    if d.arrays:
        return f"DELETE FROM {table} WHERE request_id = ANY($1::text[])"
    return f"DELETE FROM {table} WHERE request_id IN ({', '.join('?' * count)})"


FORGET_TABLES = ("reply_targets", "notifications", "jobs")
#: A trimmed job cannot be retried, so nothing will be sent to its reply targets again.
TRIM_TABLES = ("reply_targets",)


@dataclass(frozen=True)
class Statements:
    """The statements whose text does not depend on the call's arguments, in one dialect."""

    by_job_id: str
    reopen: str
    reopen_from_start: str
    delete_sent_outbox: str
    delete_delivered_notifications: str
    untrimmed: str
    trim: str
    forgettable: str


def statements(d: Dialect) -> Statements:
    return Statements(
        by_job_id=by_job_id(d),
        reopen=reopen(d, clear_job_id=False),
        reopen_from_start=reopen(d, clear_job_id=True),
        delete_sent_outbox=delete_sent_outbox(d),
        delete_delivered_notifications=delete_delivered_notifications(d),
        untrimmed=untrimmed(d),
        trim=trim(d),
        forgettable=forgettable(d),
    )


def compact(model: str, data_text: str) -> tuple[str, str]:
    """The trimmed ``(request, data)`` columns of one finished row."""
    try:
        data = json.loads(data_text)
    except ValueError:
        data = {}
    kept = {key: data[key] for key in COMPACT_KEYS if isinstance(data, dict) and key in data}
    kept["trimmed"] = True
    return json.dumps({"model": model}), json.dumps(kept)
