"""What every subcommand shares: the context object that builds settings, and the one way to fail."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from videoworker.config import Settings, load_settings
from videoworker.errors import WorkerError

if TYPE_CHECKING:
    from videoworker.ledger.base import Ledger

T = TypeVar("T")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Ctx:
    """The ``--config`` choice, carried to subcommands; settings are built when a command needs them."""

    def __init__(self, config: Path | None) -> None:
        self.config = config

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.config, **overrides)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line naming the problem to stderr and exit with ``code``."""
    click.echo(f"videoworker: {message}", err=True)
    sys.exit(code)


def with_ledger(obj: Ctx, work: Callable[[Ledger], Awaitable[T]]) -> T:
    """Open the configured ledger, run ``work`` on it, close it; a failure is one line and exit 2."""
    from videoworker.ledger import open_ledger

    async def run() -> T:
        ledger = open_ledger(obj.settings().effective_ledger_url)
        await ledger.open()
        try:
            return await work(ledger)
        finally:
            await ledger.close()

    try:
        return asyncio.run(run())
    except WorkerError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot reach the ledger: {type(exc).__name__}: {exc.strerror or exc}")


def parse_age(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``1h`` or ``2d``; raises click's usage error otherwise."""
    found = _AGE.match(text)
    if found is None:
        raise click.BadParameter(f"{text!r} is not an age such as 30s, 15m, 1h or 2d")
    return float(found.group(1)) * _UNITS[found.group(2)]


def when(ts: float | None) -> str:
    """A wall-clock time for tables (UTC), or an empty cell."""
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
