"""Typed views of the parts of asyncpg the ledger uses: asyncpg ships no type hints.

Kept apart from :mod:`videoworker.ledger.postgres` so :mod:`videoworker.ledger.migrations`
can take a connection without importing asyncpg.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from videoworker.ledger.sql import Row


class Queries(Protocol):
    """What ``asyncpg.Connection`` and ``asyncpg.Pool`` share."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, query: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, query: str, *args: Any) -> Row | None: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


class Connection(Queries, Protocol):
    """The part of ``asyncpg.Connection`` the ledger uses."""

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...


class Pool(Queries, Protocol):
    """The part of ``asyncpg.Pool`` the ledger uses."""

    def acquire(self) -> AbstractAsyncContextManager[Connection]: ...

    async def close(self) -> None: ...
