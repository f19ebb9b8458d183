"""Ledger schema versioning, run against both backends: real SQLite files and the real PostgreSQL.

A version-1 ledger (the schema from before versioning, with rows in every kind of state)
is loaded from ``tests/fixtures/ledger_v1/`` with plain SQL, then opened by the current
code; a version-2 ledger is that fixture with migration 2 applied and stamped by hand,
as the version-2 code left it. PostgreSQL runs use a fresh schema per store (dropped afterwards) and are skipped,
with the reason, when the server cannot be reached (see ``test_ledger.py``).
"""

from __future__ import annotations

import abc
import asyncio
import json
import re
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest
import pytest_asyncio

from tests.integration.test_ledger import PG_URL, _pg_unreachable
from videoworker.core.states import TERMINAL, JobState
from videoworker.errors import ConfigError
from videoworker.ledger import SCHEMA_VERSION, sql
from videoworker.ledger import notifications_sql as nsql
from videoworker.ledger.base import BudgetChange, JobRecord, Ledger, OutboxMessage, OwedNotification, ReplyTarget
from videoworker.ledger.migrations import MIGRATIONS
from videoworker.ledger.postgres import PostgresLedger
from videoworker.ledger.sqlite import SQLiteLedger

pytestmark = pytest.mark.asyncio

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ledger_v1"
HOUR = 3600.0
ALL_VERSIONS = list(range(1, SCHEMA_VERSION + 1))
#: The tables migration 3 adds; a ledger upgraded from an older version has them, empty.
V3_TABLES = ("budget_days", "notifications")
V3_INDEXES = {"notifications_due", "notifications_order", "notifications_state"}
V4_INDEXES = {"jobs_updated", "jobs_untrimmed", "jobs_job_id", "outbox_sent", "notifications_delivered"}
V5_INDEXES = {"outbox_pending_request"}
#: When the version-2 code stamped the fixture (wall-clock seconds, as it records them).
V2_STAMPS = ((1, 1704067800.5), (2, 1704067800.5))
Rows = dict[str, list[tuple[Any, ...]]]


class Store(abc.ABC):
    """One ledger's storage (a file, a schema), reachable both raw and through the ledger code."""

    kind: str

    def __init__(self) -> None:
        self.opened: list[Ledger] = []

    @abc.abstractmethod
    def ledger(self) -> Ledger:
        """A ledger on this store, not yet open."""

    @abc.abstractmethod
    async def run(self, script: str) -> None:
        """Execute SQL statements directly, without the ledger code."""

    @abc.abstractmethod
    async def rows(self) -> Rows:
        """Every table's rows, in a stable order."""

    @abc.abstractmethod
    async def catalog(self) -> list[tuple[Any, ...]]:
        """The schema: tables, columns and indexes, as comparable tuples whose first two items are kind and name."""

    async def open(self) -> Ledger:
        led = self.ledger()
        await led.open()
        self.opened.append(led)
        return led

    @property
    def dialect(self) -> sql.Dialect:
        return sql.SQLITE if self.kind == "sqlite" else sql.POSTGRES

    async def load_v1(self) -> None:
        await self.run((FIXTURES / f"{self.kind}.sql").read_text(encoding="utf-8"))

    async def load(self, version: int) -> None:
        """The fixture's rows in a ledger of ``version`` (1 or 2), as the code of that version left it."""
        await self.load_v1()
        if version == 2:
            statements = [sql.version_table(self.dialect), *MIGRATIONS[1].statements(self.dialect)]
            stamps = ", ".join(f"({v}, {at})" for v, at in V2_STAMPS)
            statements.append(f"INSERT INTO schema_version (version, applied_at) VALUES {stamps}")
            await self.run(";\n".join(statements) + ";")

    async def indexes(self) -> set[str]:
        return {entry[1] for entry in await self.catalog() if entry[0] == "index"}

    async def versions(self) -> list[int]:
        return [row[0] for row in (await self.rows()).get("schema_version", [])]

    async def cleanup(self) -> None:
        for led in self.opened:
            await led.close()


def _squeeze(text: str | None) -> str | None:
    """DDL text without layout: the old schema string wrapped lines that the generated one does not."""
    if text is None:
        return None
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"\s*\)", ")", re.sub(r"\(\s*", "(", text)).strip()


class SQLiteStore(Store):
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def ledger(self) -> Ledger:
        return SQLiteLedger(self.path)

    def query(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            return fn(conn)
        finally:
            conn.close()

    async def run(self, script: str) -> None:
        self.query(lambda conn: conn.executescript(script))

    def explain(self, statement: str, args: tuple[Any, ...]) -> list[str]:
        """The query planner's steps for ``statement``."""
        return [
            row[-1] for row in self.query(lambda conn: conn.execute("EXPLAIN QUERY PLAN " + statement, args).fetchall())
        ]

    async def rows(self) -> Rows:
        def read(conn: sqlite3.Connection) -> Rows:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}

        result: Rows = self.query(read)
        return result

    async def catalog(self) -> list[tuple[Any, ...]]:
        found = self.query(lambda conn: conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall())
        return sorted((kind, name, table, _squeeze(text)) for kind, name, table, text in found)


class PostgresStore(Store):
    kind = "postgres"

    def __init__(self) -> None:
        super().__init__()
        self.schema = f"t_{uuid.uuid4().hex}"

    def ledger(self) -> Ledger:
        return PostgresLedger(PG_URL, schema=self.schema, max_size=2)

    async def _connect(self) -> Any:
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        await conn.execute(f'SET search_path TO "{self.schema}"')
        return conn

    async def run(self, script: str) -> None:
        conn = await self._connect()
        try:
            await conn.execute(script)
        finally:
            await conn.close()

    async def rows(self) -> Rows:
        conn = await self._connect()
        try:
            tables = [
                r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", self.schema)
            ]
            return {
                t: sorted((tuple(r.values()) for r in await conn.fetch(f'SELECT * FROM "{t}"')), key=repr)
                for t in tables
            }
        finally:
            await conn.close()

    async def catalog(self) -> list[tuple[Any, ...]]:
        conn = await self._connect()
        try:
            columns = await conn.fetch(
                "SELECT table_name || '.' || column_name, data_type, is_nullable, column_default, ordinal_position"
                " FROM information_schema.columns WHERE table_schema = $1",
                self.schema,
            )
            indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", self.schema)
        finally:
            await conn.close()
        entries = [("column", *r.values()) for r in columns]
        entries += [("index", r[0], r[1].replace(f"{self.schema}.", "")) for r in indexes]
        return sorted(entries, key=repr)

    async def cleanup(self) -> None:
        await super().cleanup()
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()


StoreFactory = Callable[[], Store]


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A factory of empty stores of one backend, each cleaned up afterwards."""
    if request.param == "postgres" and (reason := await _pg_unreachable()):
        pytest.skip(reason)
    made: list[Store] = []

    def make() -> Store:
        store: Store = (
            SQLiteStore(tmp_path / f"ledger-{len(made)}.sqlite3") if request.param == "sqlite" else PostgresStore()
        )
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            await store.cleanup()


def _record(row: tuple[Any, ...]) -> JobRecord:
    """A raw ``jobs`` row (``SELECT *``) as the JobRecord the ledger must return for it."""
    rid, state, model, request, job_id, attempts, data, owner, lease_until = row[:9]
    return JobRecord(
        rid, JobState(state), model, json.loads(request), job_id, attempts, json.loads(data), owner, lease_until
    )


def _unsent(rows: Rows) -> list[OutboxMessage]:
    """The raw outbox rows not yet sent, as claim_outbox must return them (oldest first)."""
    out = sorted(r for r in rows["outbox"] if r[10] is None)
    return [OutboxMessage(r[2], r[3], bytes(r[6]), r[4], r[1], r[5], id=r[0]) for r in out]


def _assert_carried_over(before: Rows, after: Rows) -> None:
    """Every row ``before`` held is still there (jobs gain ``trimmed = 0``), the old version stamps too, and
    migration 3's tables are empty."""
    kept = {table: after[table] for table in before}
    # migration 4 appends jobs.trimmed: every carried-over job is untrimmed
    width = len(before["jobs"][0])
    assert [row[width:] for row in kept["jobs"]] == [(0,)] * len(before["jobs"])
    kept["jobs"] = [row[:width] for row in kept["jobs"]]
    if "schema_version" in before:
        assert [row[0] for row in kept["schema_version"]] == ALL_VERSIONS
        kept["schema_version"] = kept["schema_version"][: len(before["schema_version"])]
    assert kept == before
    assert {table: after[table] for table in V3_TABLES} == {table: [] for table in V3_TABLES}
    assert set(after) == set(before) | set(V3_TABLES) | {"schema_version"}


# --- the schema itself -------------------------------------------------------------------
async def test_live_predicate_is_generated_from_the_terminal_states() -> None:
    """The live-rows predicate names exactly the terminal states, sorted, as literals the planner can match."""
    generated = "state NOT IN (" + ", ".join(f"'{s.value}'" for s in sorted(TERMINAL)) + ")"
    assert sql.LIVE == generated == "state NOT IN ('done', 'failed', 'submit_unknown')"
    assert [m.version for m in MIGRATIONS] == ALL_VERSIONS


async def test_migration_1_is_the_schema_from_before_versioning(stores: StoreFactory) -> None:
    """Migration 1 alone builds exactly the tables and indexes the pre-versioning code created."""
    old, generated = stores(), stores()
    await old.load_v1()
    statements = MIGRATIONS[0].statements(sql.SQLITE if old.kind == "sqlite" else sql.POSTGRES)
    await generated.run(";\n".join(statements) + ";")
    assert await generated.catalog() == await old.catalog()


# --- upgrading a version-1 ledger --------------------------------------------------------
async def test_v1_ledger_is_upgraded_with_every_row_intact(stores: StoreFactory) -> None:
    """Opening a version-1 ledger stamps and migrates it to the latest version and keeps every row as it was."""
    store, fresh = stores(), stores()
    await store.load_v1()
    before = await store.rows()
    assert "schema_version" not in before and len(before["jobs"]) == 7 and len(before["outbox"]) == 4
    if store.kind == "sqlite":
        assert "jobs_live_owner" not in await store.indexes()

    led = await store.open()
    assert await led.schema_version() == SCHEMA_VERSION
    assert await store.versions() == ALL_VERSIONS
    _assert_carried_over(before, await store.rows())
    assert {"jobs_live_owner", *V3_INDEXES} <= await store.indexes()
    await fresh.open()
    assert await store.catalog() == await fresh.catalog()  # upgraded and new ledgers have one schema

    for row in before["jobs"]:
        assert await led.get(row[0]) == _record(row)
    done = await led.get("v1-done")
    assert done is not None and done.state is JobState.DONE and done.job_id == "job-ghi789"
    assert done.data["final"]["status"] == "completed" and done.data["outputs"][0]["bytes"] == 123456
    # one row in each state the fixture holds; its two unsent outbox rows are pending
    held = {"received", "submitting", "submitted", "completed", "done", "failed", "submit_unknown"}
    assert await led.counts() == {**{s.value: int(s.value in held) for s in JobState}, "outbox_pending": 2}
    assert sorted(before["reply_targets"]) == [
        ("v1-done", "replies", ""),
        ("v1-received", "amq.rabbitmq.reply-to.g1h2", "corr-1"),
        ("v1-submitted", "other-replies", ""),
        ("v1-submitted", "replies", "corr-2"),
    ]


async def test_v2_ledger_is_upgraded_with_every_row_intact(stores: StoreFactory) -> None:
    """Opening a version-2 ledger runs migrations 3 to 5 only, keeps every row and stamp, and matches a new one."""
    store, fresh = stores(), stores()
    await store.load(2)
    before = await store.rows()
    assert [row[0] for row in before["schema_version"]] == [1, 2] and not set(V3_TABLES) & set(before)

    led = await store.open()
    assert await led.schema_version() == SCHEMA_VERSION == 5
    after = await store.rows()
    _assert_carried_over(before, after)
    assert after["schema_version"][:2] == [(v, at) for v, at in V2_STAMPS]
    assert all(abs(at - time.time()) < HOUR for _, at in after["schema_version"][2:])
    assert await store.indexes() >= V3_INDEXES | V4_INDEXES | V5_INDEXES
    await fresh.open()
    assert await store.catalog() == await fresh.catalog()


async def test_upgraded_ledger_records_notifications_and_budget_on_old_rows(stores: StoreFactory) -> None:
    """An old job row moved after the upgrade records its notification and budget change in the new tables."""
    store = stores()
    await store.load(2)
    led = await store.open()
    owed = OwedNotification("v1-received", "webhooks", "hook-1", {"url": "https://example.test/h"}, "failed", {})
    assert await led.transition(
        "v1-received",
        "old-host-101",
        JobState.RECEIVED,
        JobState.FAILED,
        notifications=[owed],
        budget=BudgetChange("2024-01-01", 0.5, limit=1.0),
    )
    [row] = await led.list_notifications()
    assert (row.request_id, row.plugin, row.target_key, row.state) == ("v1-received", "webhooks", "hook-1", "pending")
    assert await led.budget_day("2024-01-01") == (0.0, 0.5)


async def test_migration_3_statements_are_idempotent(stores: StoreFactory) -> None:
    """Running migration 3's statements again on a migrated ledger changes neither its schema nor its rows."""
    store = stores()
    await store.load_v1()
    await (await store.open()).close()
    rows, catalog = await store.rows(), await store.catalog()
    await store.run(";\n".join(MIGRATIONS[2].statements(store.dialect)) + ";")
    assert await store.catalog() == catalog
    assert await store.rows() == rows


async def test_upgraded_v1_ledger_serves_its_old_rows(stores: StoreFactory) -> None:
    """After the upgrade the old rows move, lease, publish and answer duplicates like new ones."""
    store = stores()
    await store.load_v1()
    before = await store.rows()
    led = await store.open()

    unsent = await led.claim_outbox("relay", time.time() + HOUR, 100)
    assert unsent == _unsent(before) and len(unsent) == 2
    assert unsent[-1].body.startswith(b"\x00\xff") and unsent[-1].correlation_id == "corr-9"
    await led.mark_sent([m.id for m in unsent if m.id is not None])
    assert (await led.counts())["outbox_pending"] == 0

    dup = await led.claim(JobRecord("v1-done", JobState.RECEIVED, "other", {"id": "v1-done"}, owner="new"), None)
    assert not dup.created and dup.record == _record(next(r for r in before["jobs"] if r[0] == "v1-done"))

    assert sorted(await led.live_owners()) == ["old-host-101", "old-host-102"]
    assert await led.renew_leases("old-host-101", time.time() + HOUR) == 3  # received, submitted, completed
    # old reply targets get the final event, after the old outbox rows
    assert await led.transition(
        "v1-submitted", "old-host-101", JobState.SUBMITTED, JobState.FAILED, data={"e": 1}, reply_body=b"final"
    )
    replies = await led.claim_outbox("relay", time.time() + HOUR, 100)
    assert sorted((m.routing_key, m.correlation_id) for m in replies) == [
        ("other-replies", None),
        ("replies", "corr-2"),
    ]
    assert min(m.id or 0 for m in replies) > max(r[0] for r in before["outbox"])

    adopted = await led.adopt("new-host", time.time() + HOUR, ["old-host-102"], 100)
    assert [r.request_id for r in adopted] == ["v1-submitting"]  # the terminal v1-unknown stays put
    assert await led.transition("v1-submitting", "new-host", JobState.SUBMITTING, JobState.SUBMITTED, job_id="j-new")
    assert await led.release("old-host-101") == 2


async def test_reopening_changes_nothing(stores: StoreFactory) -> None:
    """A second open of an upgraded ledger keeps its version, its rows and its schema exactly."""
    store = stores()
    await store.load_v1()
    first = await store.open()
    await first.close()
    rows, catalog = await store.rows(), await store.catalog()
    second = await store.open()
    assert await second.schema_version() == SCHEMA_VERSION
    await second.close()
    assert await store.rows() == rows
    assert await store.catalog() == catalog
    assert await store.versions() == ALL_VERSIONS


async def test_fresh_ledger_starts_at_the_latest_version(stores: StoreFactory) -> None:
    """A new ledger runs every migration once, in order, and records each of them."""
    store = stores()
    led = await store.open()
    assert await led.schema_version() == SCHEMA_VERSION
    assert await store.versions() == ALL_VERSIONS
    assert {"jobs_live", "jobs_live_owner", "outbox_pending", *V3_INDEXES} <= await store.indexes()
    assert {table: (await store.rows())[table] for table in V3_TABLES} == {table: [] for table in V3_TABLES}
    stamps = [row[1] for row in (await store.rows())["schema_version"]]
    assert all(abs(stamp - time.time()) < HOUR for stamp in stamps)


async def test_newer_ledger_is_refused_and_left_untouched(stores: StoreFactory) -> None:
    """A ledger whose version is newer than the code fails to open with ConfigError and is not written."""
    store = stores()
    await store.load_v1()
    await (await store.open()).close()
    newer = SCHEMA_VERSION + 3
    await store.run(f"INSERT INTO schema_version (version, applied_at) VALUES ({newer}, 0)")
    rows, catalog = await store.rows(), await store.catalog()

    led = store.ledger()
    message = f"ledger schema version {newer} is newer than this videoworker understands ({SCHEMA_VERSION})"
    with pytest.raises(ConfigError, match=re.escape(message) + ".*upgrade videoworker"):
        await led.open()
    with pytest.raises(RuntimeError):
        await led.get("v1-done")  # a refused ledger is closed, not half open
    assert await store.rows() == rows
    assert await store.catalog() == catalog


# --- concurrency -------------------------------------------------------------------------
@pytest.mark.parametrize("version", [1, 2])
async def test_concurrent_opens_of_an_old_ledger_migrate_it_once(stores: StoreFactory, version: int) -> None:
    """Several instances opening one version-1 or version-2 ledger at once all succeed and it is migrated once."""
    store = stores()
    await store.load(version)
    before = await store.rows()
    ledgers = [store.ledger() for _ in range(6)]
    store.opened += ledgers
    await asyncio.gather(*(led.open() for led in ledgers))
    assert [await led.schema_version() for led in ledgers] == [SCHEMA_VERSION] * 6
    assert await store.versions() == ALL_VERSIONS
    _assert_carried_over(before, await store.rows())


async def test_concurrent_opens_of_a_new_sqlite_file(tmp_path: Path) -> None:
    """Several ledgers creating the same new SQLite file at once all open it, and it is migrated once."""
    store = SQLiteStore(tmp_path / "new" / "ledger.sqlite3")
    ledgers = [store.ledger() for _ in range(8)]
    store.opened += ledgers
    try:
        await asyncio.gather(*(led.open() for led in ledgers))
        created = await asyncio.gather(
            *(
                led.claim(JobRecord(f"r{i}", JobState.RECEIVED, "m", {}), ReplyTarget("q"))
                for i, led in enumerate(ledgers)
            )
        )
        assert all(c.created for c in created)
        assert await store.versions() == ALL_VERSIONS
    finally:
        await store.cleanup()


_CHILD = """
import asyncio, sys
from pathlib import Path
from videoworker.core.states import JobState
from videoworker.ledger.base import JobRecord
from videoworker.ledger.sqlite import SQLiteLedger

async def main() -> None:
    led = SQLiteLedger(Path(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()  # the parent's go: every child opens at once
    await led.open()
    try:
        rid = sys.argv[2]
        created = (await led.claim(JobRecord(rid, JobState.RECEIVED, "m", {"id": rid}, owner=rid), None)).created
        print("result", await led.schema_version(), created, flush=True)
    finally:
        await led.close()

asyncio.run(main())
"""


async def test_processes_opening_a_new_sqlite_file_together_all_succeed(tmp_path: Path) -> None:
    """Separate processes released at the same instant onto one new SQLite file all open it at the latest version."""
    path = tmp_path / "shared.sqlite3"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            str(path),
            f"p{i}",
            cwd=tmp_path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for i in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate(b"go\n") for p in procs)), 120)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        assert f"result {SCHEMA_VERSION} True" in out.decode().splitlines(), out.decode()
    store = SQLiteStore(path)
    assert await store.versions() == ALL_VERSIONS
    assert sorted(r[0] for r in (await store.rows())["jobs"]) == ["p0", "p1", "p2", "p3"]


async def test_sqlite_owner_scans_use_the_new_index(tmp_path: Path) -> None:
    """On an upgraded SQLite ledger, lease renewal and release find one owner's live rows through jobs_live_owner."""
    store = SQLiteStore(tmp_path / "ledger.sqlite3")
    await store.load_v1()
    try:
        await store.open()
        q = sql.common(sql.SQLITE)
        for statement, args in ((q.renew_leases, (1.0, "old-host-101")), (q.release, ("old-host-101",))):
            plan = store.explain(statement, args)
            assert any("jobs_live_owner" in step for step in plan), plan
    finally:
        await store.cleanup()


async def test_sqlite_notification_claim_uses_the_new_indexes(tmp_path: Path) -> None:
    """On SQLite the claim finds due rows by notifications_due and probes for older ones by notifications_order."""
    store = SQLiteStore(tmp_path / "ledger.sqlite3")
    try:
        await store.open()
        text, args = nsql.claim(sql.SQLITE, "me", time.time() + HOUR, time.time(), 10, 2, [("p", "k")])
        plan = store.explain(text, tuple(args))
        assert any("notifications_due" in step for step in plan), plan
        assert any("notifications_order" in step for step in plan), plan
    finally:
        await store.cleanup()
