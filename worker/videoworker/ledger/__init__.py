"""The ledger: durable job state. ``open_ledger(url)`` picks the backend from the URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from videoworker.errors import ConfigError
from videoworker.ledger.base import ClaimResult, JobRecord, Ledger, OutboxMessage, ReplyTarget
from videoworker.ledger.migrations import SCHEMA_VERSION


def open_ledger(url: str) -> Ledger:
    """Build (not yet open) the ledger for ``sqlite:///path`` or ``postgresql://…[?schema=name]``."""
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
        rest = urlencode({k: v[-1] for k, v in query.items()})
        return PostgresLedger(urlunsplit(parts._replace(query=rest)), schema=schema)
    raise ConfigError(f"ledger_url: unsupported scheme {scheme!r} (sqlite or postgresql)")


__all__ = ["SCHEMA_VERSION", "ClaimResult", "JobRecord", "Ledger", "OutboxMessage", "ReplyTarget", "open_ledger"]
