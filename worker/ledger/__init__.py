"""The ledger: durable job state. ``open_ledger(url)`` picks the backend from the URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from worker.errors import ConfigError
from worker.ledger.base import ClaimResult, JobRecord, Ledger, OutboxMessage, ReplyTarget


def open_ledger(url: str) -> Ledger:
    """Build (not yet open) the ledger for ``sqlite:///path`` or ``postgresql://…``."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from worker.ledger.sqlite import SQLiteLedger

        path = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError("ledger_url: use sqlite:///relative/path or sqlite:////absolute/path")
        return SQLiteLedger(Path(path))
    if scheme in ("postgresql", "postgres"):
        from worker.ledger.postgres import PostgresLedger

        return PostgresLedger(url)
    raise ConfigError(f"ledger_url: unsupported scheme {scheme!r} (sqlite or postgresql)")


__all__ = ["ClaimResult", "JobRecord", "Ledger", "OutboxMessage", "ReplyTarget", "open_ledger"]
