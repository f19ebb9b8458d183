"""The ledger: durable job state. ``open_ledger(url)`` picks the backend from the URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from videoworker.errors import ConfigError
from videoworker.ledger.base import ClaimResult, JobRecord, Ledger, OutboxMessage, ReplyTarget
from videoworker.ledger.migrations import SCHEMA_VERSION


def open_ledger(url: str) -> Ledger:
    """Build (not yet open) the ledger for ``sqlite:///path`` or ``postgresql://…[?schema=name&pool_size=N]``.

    ``pool_size`` (1–100, default 10) caps this instance's PostgreSQL connections: with many
    instances, their pools together must fit the server's ``max_connections``.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from videoworker.ledger.sqlite import SQLiteLedger

        path = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError("ledger_url: use sqlite:///relative/path or sqlite:////absolute/path")
        return SQLiteLedger(Path(path))
    if scheme in ("postgresql", "postgres"):
        from videoworker.ledger.postgres import PostgresLedger

        parts = urlsplit(url)
        query = parse_qs(parts.query)
        schema = query.pop("schema", [None])[0]
        size = query.pop("pool_size", ["10"])[-1]
        if not size.isdigit() or not 1 <= int(size) <= 100:
            raise ConfigError(f"ledger_url: pool_size must be a whole number from 1 to 100, not {size!r}")
        rest = urlencode({k: v[-1] for k, v in query.items()})
        ledger = urlunsplit(parts._replace(query=rest))
        return PostgresLedger(ledger, schema=schema, min_size=1, max_size=int(size))
    raise ConfigError(f"ledger_url: unsupported scheme {scheme!r} (sqlite or postgresql)")


__all__ = ["SCHEMA_VERSION", "ClaimResult", "JobRecord", "Ledger", "OutboxMessage", "ReplyTarget", "open_ledger"]
