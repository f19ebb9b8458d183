"""The ledger contract, run against both backends: SQLite (a file in tmp_path) and PostgreSQL.

The PostgreSQL runs use a fresh schema per test (dropped afterwards) in the database named
by ``VIDEOWORKER_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``); they are
skipped, with the reason, when that server cannot be reached.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest
import pytest_asyncio

from tests.helpers import MemoryPublisher
from videoworker import metrics
from videoworker.core.states import IllegalTransition, JobState
from videoworker.errors import ConfigError
from videoworker.ledger import SCHEMA_VERSION, open_ledger
from videoworker.ledger.base import JobRecord, Ledger, OutboxMessage, ReplyTarget
from videoworker.ledger.outbox import OutboxRelay
from videoworker.ledger.postgres import PostgresLedger
from videoworker.ledger.postgres_extras import claim_outbox_in
from videoworker.ledger.sqlite import SQLiteLedger
from videoworker.testing.recorder import until

pytestmark = pytest.mark.asyncio

PG_URL = os.environ.get("VIDEOWORKER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
HOUR = 3600.0
_pg_state: dict[str, str | None] = {}

Opener = Callable[[], Awaitable[Ledger]]


async def _pg_unreachable() -> str | None:
    """Why PostgreSQL cannot be used (None if it can); checked once per session."""
    if "reason" not in _pg_state:
        try:
            conn = await asyncpg.connect(PG_URL, timeout=3)
            await conn.close()
            _pg_state["reason"] = None
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            _pg_state["reason"] = f"PostgreSQL unreachable at {PG_URL}: {type(exc).__name__}: {exc}"
    return _pg_state["reason"]


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """A factory of opened ledgers that share one store (same file / same schema), closed afterwards."""
    opened: list[Ledger] = []
    schema = f"t_{uuid.uuid4().hex}"
    if request.param == "postgres" and (reason := await _pg_unreachable()):
        pytest.skip(reason)

    async def open_one() -> Ledger:
        ledger: Ledger
        if request.param == "sqlite":
            ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
        else:
            ledger = PostgresLedger(PG_URL, schema=schema)
        await ledger.open()
        opened.append(ledger)
        return ledger

    try:
        yield open_one
    finally:
        for ledger in opened:
            await ledger.close()
        if request.param == "postgres":
            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()


@pytest_asyncio.fixture
async def ledger(store: Opener) -> Ledger:
    return await store()


def job(
    request_id: str | None = None,
    owner: str | None = "A",
    lease_until: float | None = None,
    state: JobState = JobState.RECEIVED,
    **request: Any,
) -> JobRecord:
    rid = request_id or f"req-{uuid.uuid4().hex[:12]}"
    return JobRecord(
        rid,
        state,
        "model-x",
        {"id": rid, "prompt": "a cat ☕", **request},
        data={"timestamps": {"received": "2024-01-01T00:00:00Z"}},
        owner=owner,
        lease_until=time.time() + HOUR if lease_until is None else lease_until,
    )


def msg(request_id: str, n: int, correlation_id: str | None = None) -> OutboxMessage:
    return OutboxMessage("events", f"video.{n}", b"\x00body-" + str(n).encode(), f"mid-{n}", request_id, correlation_id)


async def drain(ledger: Ledger, owner: str = "pub") -> list[OutboxMessage]:
    """Every pending outbox message (leased to ``owner``), oldest first."""
    return await ledger.claim_outbox(owner, time.time() + HOUR, 1000)


async def fail(ledger: Ledger, rid: str, owner: str = "A", **kwargs: Any) -> bool:
    """Move a received row to the terminal ``failed`` state."""
    return await ledger.transition(rid, owner, JobState.RECEIVED, JobState.FAILED, **kwargs)


# --- claim -------------------------------------------------------------------------------
async def test_claim_new_then_duplicate_returns_stored_row_unchanged(ledger: Ledger) -> None:
    first = job("r1", owner="A", extra={"nested": [1, 2.5, None, "é"]})
    created = await ledger.claim(first, None)
    assert created.created and created.record == first

    second = job("r1", owner="B", lease_until=1.0, other="x")
    second.model = "model-y"
    dup = await ledger.claim(second, ReplyTarget("q"))
    assert not dup.created
    assert dup.record == first  # owner, lease, model, request: the stored row, untouched
    assert await ledger.get("r1") == first
    assert await ledger.get("missing") is None


async def test_reply_targets_accumulate_and_are_deduplicated(ledger: Ledger) -> None:
    rec = job()
    await ledger.claim(rec, ReplyTarget("qa", "c1"))
    for reply in (ReplyTarget("qa", "c1"), ReplyTarget("qb"), ReplyTarget("qa", "c2"), None, ReplyTarget("qb", None)):
        assert not (await ledger.claim(job(rec.request_id), reply)).created
    assert await fail(ledger, rec.request_id, reply_body=b"final", reply_message_id="m-final")
    out = await drain(ledger)
    assert sorted((m.routing_key, m.correlation_id) for m in out) == [("qa", "c1"), ("qa", "c2"), ("qb", None)]
    for m in out:
        assert (m.exchange, m.body, m.message_id, m.request_id) == ("", b"final", "m-final", rec.request_id)


async def test_concurrent_claims_of_one_id_create_exactly_once(store: Opener) -> None:
    a, b = await store(), await store()  # two instances on one store, as two processes or hosts
    rid = "same-id"
    results = await asyncio.gather(
        *((a if i % 2 else b).claim(job(rid, owner=f"o{i}"), ReplyTarget(f"q{i}", f"c{i}")) for i in range(20))
    )
    winners = [r for r in results if r.created]
    assert len(winners) == 1
    owner = winners[0].record.owner
    assert all(r.record.owner == owner for r in results)
    assert (await a.get(rid)) == winners[0].record
    assert await fail(a, rid, owner or "", reply_body=b"x")
    assert len(await drain(a)) == 20  # every claimant's reply target was kept


async def test_duplicate_claim_racing_a_terminal_transition_never_loses_its_reply(store: Opener) -> None:
    a, b = await store(), await store()
    for i in range(25):
        rid = f"race-{i}"
        await a.claim(job(rid), ReplyTarget("first"))
        moved, dup = await asyncio.gather(
            fail(a, rid, reply_body=b"done", reply_message_id=f"m{i}"),
            b.claim(job(rid, owner="B"), ReplyTarget("late", str(i))),
        )
        assert moved and not dup.created
        replies = {m.routing_key for m in await drain(a) if m.request_id == rid}
        # either the transition saw the late target, or the duplicate saw the terminal row and answers itself
        assert "first" in replies
        assert "late" in replies or dup.record.state is JobState.FAILED


# --- transition --------------------------------------------------------------------------
async def test_transition_compare_and_set(ledger: Ledger) -> None:
    rec = job(owner="A")
    await ledger.claim(rec, None)
    rid = rec.request_id
    assert not await ledger.transition(rid, "A", JobState.SUBMITTING, JobState.SUBMITTED)  # wrong state
    assert not await ledger.transition(rid, "B", JobState.RECEIVED, JobState.SUBMITTING)  # wrong owner
    assert not await ledger.transition("nope", "A", JobState.RECEIVED, JobState.SUBMITTING)  # no row
    assert await ledger.get(rid) == rec

    assert await ledger.transition(rid, "A", JobState.RECEIVED, JobState.SUBMITTING, attempts=1)
    assert await ledger.transition(
        rid, "A", JobState.SUBMITTING, JobState.SUBMITTED, job_id="j-1", data={"k": [1, "ü"]}
    )
    got = await ledger.get(rid)
    assert got is not None
    assert (got.state, got.job_id, got.attempts, got.data) == (JobState.SUBMITTED, "j-1", 1, {"k": [1, "ü"]})
    # fields left out keep their values
    assert await ledger.transition(rid, "A", JobState.SUBMITTED, JobState.IN_PROGRESS)
    again = await ledger.get(rid)
    assert again is not None
    assert (again.state, again.job_id, again.attempts, again.data) == (JobState.IN_PROGRESS, "j-1", 1, {"k": [1, "ü"]})
    # a second identical move loses: the row is no longer in the expected state
    assert not await ledger.transition(rid, "A", JobState.SUBMITTED, JobState.IN_PROGRESS)


async def test_illegal_move_raises_before_touching_storage(ledger: Ledger) -> None:
    rec = job()
    await ledger.claim(rec, None)
    with pytest.raises(IllegalTransition):
        await ledger.transition(rec.request_id, "A", JobState.RECEIVED, JobState.DONE)
    with pytest.raises(IllegalTransition):
        await ledger.transition("absent", "A", JobState.DONE, JobState.RECEIVED)
    assert await ledger.get(rec.request_id) == rec


async def test_transition_records_outbox_and_reply_fan_out_atomically(ledger: Ledger) -> None:
    rec = job()
    await ledger.claim(rec, ReplyTarget("reply-a", "corr-a"))
    await ledger.claim(job(rec.request_id), ReplyTarget("reply-b"))
    rid = rec.request_id
    # a lost compare-and-set records nothing
    assert not await ledger.transition(
        rid, "B", JobState.RECEIVED, JobState.FAILED, outbox=[msg(rid, 0)], reply_body=b"no"
    )
    assert (await ledger.counts())["outbox_pending"] == 0

    assert await fail(ledger, rid, outbox=[msg(rid, 1), msg(rid, 2, "c2")], reply_body=b"final")
    out = await drain(ledger)
    assert [(m.exchange, m.routing_key, m.body, m.message_id, m.correlation_id) for m in out] == [
        ("events", "video.1", b"\x00body-1", "mid-1", None),
        ("events", "video.2", b"\x00body-2", "mid-2", "c2"),
        ("", "reply-a", b"final", rid, "corr-a"),  # reply_message_id defaults to the request id
        ("", "reply-b", b"final", rid, None),
    ]
    ids = [m.id for m in out if m.id is not None]
    assert len(ids) == 4 and ids == sorted(ids)


async def test_reply_body_without_targets_adds_nothing(ledger: Ledger) -> None:
    rec = job()
    await ledger.claim(rec, None)
    assert await fail(ledger, rec.request_id, reply_body=b"final")
    assert await drain(ledger) == []


# --- outbox ------------------------------------------------------------------------------
async def test_claim_outbox_leaves_out_the_requests_it_is_told_to_skip(ledger: Ledger) -> None:
    """``skip_requests``: no row of a request a relay round is still publishing is leased by its next round."""
    await ledger.enqueue([msg("r", 0), msg("s", 1), msg("r", 2), msg("t", 3)])
    first = await ledger.claim_outbox("A", time.time() + HOUR, 1)
    assert [m.message_id for m in first] == ["mid-0"]
    again = await ledger.claim_outbox("A", time.time() + HOUR, 10, skip_requests={"r"})
    assert [m.message_id for m in again] == ["mid-1", "mid-3"]
    # what is sent and what is skipped in one write: the sent rows are stamped, the skipped ones left alone
    rest = await ledger.claim_outbox("A", time.time() + HOUR, 10, sent=[again[0].id or 0], skip_requests=["t"])
    assert [m.message_id for m in rest] == ["mid-0", "mid-2"]


async def test_claim_outbox_leaves_a_request_to_the_peer_that_has_its_earlier_row(ledger: Ledger) -> None:
    """A row whose request has an earlier unsent row under another owner's live lease waits for that row.

    Otherwise a second instance publishes a job's ``completed`` while the first still has
    its ``submitted`` out, and a failed publish of the first puts them out of order.
    """
    await ledger.enqueue([msg("r", 0), msg("s", 1), msg("r", 2)])
    assert [m.message_id for m in await ledger.claim_outbox("A", time.time() + HOUR, 1)] == ["mid-0"]
    peer = await ledger.claim_outbox("B", time.time() + HOUR, 10)
    assert [m.message_id for m in peer] == ["mid-1"]
    # the owner of the earlier row takes the later one too, in order
    assert [m.message_id for m in await ledger.claim_outbox("A", time.time() + HOUR, 10)] == ["mid-0", "mid-2"]
    # A's lease runs out: B takes the request's rows, oldest first, beside its own
    await ledger.claim_outbox("A", time.time() - 10, 10)
    taken = await ledger.claim_outbox("B", time.time() + HOUR, 10)
    assert [m.message_id for m in taken] == ["mid-0", "mid-1", "mid-2"]
    # once the earlier row is sent, the later one is free to any claimer whose lease it is not under
    await ledger.enqueue([msg("q", 3), msg("q", 4)])
    first = await ledger.claim_outbox("A", time.time() + HOUR, 1, sent=[m.id or 0 for m in taken])
    assert [m.message_id for m in first] == ["mid-3"]
    assert await ledger.claim_outbox("C", time.time() + HOUR, 10) == []
    await ledger.mark_sent([first[0].id or 0])
    assert [m.message_id for m in await ledger.claim_outbox("C", time.time() + HOUR, 10)] == ["mid-4"]


async def test_enqueue_and_claim_outbox_leases(ledger: Ledger) -> None:
    await ledger.enqueue([msg(f"r{n}", n) for n in range(3)])
    await ledger.enqueue([])
    first = await ledger.claim_outbox("A", time.time() + HOUR, 2)
    assert [m.message_id for m in first] == ["mid-0", "mid-1"]  # oldest first
    assert first[0] == OutboxMessage("events", "video.0", b"\x00body-0", "mid-0", "r0", None, id=first[0].id)
    second = await ledger.claim_outbox("B", time.time() + HOUR, 10)
    assert [m.message_id for m in second] == ["mid-2"]  # A's leased rows are not B's
    assert await ledger.claim_outbox("C", time.time() + HOUR, 10) == []
    # an owner may claim its own leased rows again (a retry after a failed publish)
    assert [m.id for m in await ledger.claim_outbox("A", time.time() + HOUR, 10)] == [m.id for m in first]

    # A's lease runs out (explicit past expiry): B takes the rows
    await ledger.claim_outbox("A", time.time() - 10, 10)
    taken = await ledger.claim_outbox("B", time.time() + HOUR, 10)
    assert [m.message_id for m in taken] == ["mid-0", "mid-1", "mid-2"]
    assert await ledger.claim_outbox("A", time.time() + HOUR, 10) == []

    await ledger.mark_sent([m.id for m in taken[:2] if m.id is not None])
    await ledger.mark_sent([])
    assert (await ledger.counts())["outbox_pending"] == 1
    await ledger.claim_outbox("B", time.time() - 10, 10)  # expire, so anyone could take what is left
    assert [m.message_id for m in await ledger.claim_outbox("C", time.time() + HOUR, 10)] == ["mid-2"]


async def test_claim_outbox_records_the_last_rounds_confirms_in_the_same_write(ledger: Ledger) -> None:
    """``sent`` rows leave the pending set and are not leased again, though the claimer holds their lease."""
    await ledger.enqueue([msg("r", n) for n in range(4)])
    first = await ledger.claim_outbox("A", time.time() + HOUR, 2)
    sent = [m.id for m in first if m.id is not None]
    second = await ledger.claim_outbox("A", time.time() + HOUR, 10, sent=sent)
    assert [m.message_id for m in second] == ["mid-2", "mid-3"]
    assert (await ledger.counts())["outbox_pending"] == 2
    assert await ledger.claim_outbox("A", time.time() + HOUR, 10, sent=[m.id for m in second if m.id]) == []
    assert (await ledger.counts())["outbox_pending"] == 0


async def test_three_relays_share_one_outbox_and_publish_each_row_once(store: Opener) -> None:
    """Instances whose rounds record and claim in one write still split the backlog: no row twice, none left."""
    ledgers = [await store() for _ in range(3)]
    await ledgers[0].enqueue([msg(f"r{n}", n) for n in range(900)])
    publishers = [MemoryPublisher() for _ in ledgers]
    relays = [
        OutboxRelay(led, pub, f"inst-{i}", 30.0) for i, (led, pub) in enumerate(zip(ledgers, publishers, strict=True))
    ]
    loops = [asyncio.create_task(relay.run()) for relay in relays]

    async def all_recorded() -> bool:
        return (await ledgers[0].counts())["outbox_pending"] == 0

    try:
        await until(all_recorded, 20, "every row published and recorded")
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    published = collections.Counter(m.message_id for pub in publishers for m in pub.messages)
    assert len(published) == 900 and max(published.values()) == 1


async def test_claim_outbox_records_sent_rows_a_peer_has_taken_since(ledger: Ledger, store: Opener) -> None:
    """``sent`` ids whose lease ran out and a peer took are still recorded, and not leased back."""
    peer = await store()
    await ledger.enqueue([msg("r", n) for n in range(4)])
    first = await ledger.claim_outbox("A", time.time() - 1, 2)  # a lease that has already run out
    assert len(await peer.claim_outbox("B", time.time() + HOUR, 10)) == 4
    assert await ledger.claim_outbox("A", time.time() + HOUR, 10, sent=[m.id for m in first if m.id]) == []
    assert (await ledger.counts())["outbox_pending"] == 2


async def test_claim_outbox_from_two_instances_splits_rows(store: Opener) -> None:
    """Concurrent claims from two instances share the backlog: each row is published by one owner, once,
    and a request's unsent rows are never out with two owners at once."""
    a, b = await store(), await store()
    await a.enqueue([msg(f"r{n % 8}", n) for n in range(40)])
    claimers = [(f"p{i}", led) for i, led in enumerate([a, b] * 4)]
    out: dict[str, list[OutboxMessage]] = {owner: [] for owner, _ in claimers}  # claimed, published, not yet sent
    published: list[str] = []
    for _ in range(100):  # each claim records the owner's last batch as sent, as the relay does
        batches = await asyncio.gather(
            *(led.claim_outbox(o, time.time() + HOUR, 5, sent=[m.id or 0 for m in out[o]]) for o, led in claimers)
        )
        out = {owner: batch for (owner, _), batch in zip(claimers, batches, strict=True)}
        holders: dict[str, set[str]] = {}
        for owner, batch in out.items():
            published += [m.message_id for m in batch]
            for m in batch:
                holders.setdefault(m.request_id, set()).add(owner)
        assert all(len(h) == 1 for h in holders.values()), holders
        if len(published) >= 40:  # not "a round took nothing": claims that collide may all come back empty
            break
    assert sorted(published) == sorted(f"mid-{n}" for n in range(40))


# --- leases ------------------------------------------------------------------------------
async def test_renew_leases(ledger: Ledger) -> None:
    past = time.time() - 100
    a1, a2, b1, done = job(owner="A", lease_until=past), job(owner="A"), job(owner="B", lease_until=past), job()
    for rec in (a1, a2, b1, done):
        await ledger.claim(rec, None)
    assert await fail(ledger, done.request_id)
    until = time.time() + 2 * HOUR
    assert await ledger.renew_leases("A", until) == 2  # not the terminal row
    for rec, expected in ((a1, until), (a2, until), (b1, past), (done, done.lease_until)):
        got = await ledger.get(rec.request_id)
        assert got is not None and got.lease_until == pytest.approx(expected)
    assert await ledger.renew_leases("nobody", until) == 0


async def test_release_and_live_owners(ledger: Ledger) -> None:
    a1, a2, b1, c_done, free = job(owner="A"), job(owner="A"), job(owner="B"), job(owner="C"), job(owner=None)
    for rec in (a1, a2, b1, c_done, free):
        await ledger.claim(rec, None)
    assert await fail(ledger, c_done.request_id, owner="C")
    assert sorted(await ledger.live_owners()) == ["A", "B"]
    assert await ledger.release("A") == 2
    got = await ledger.get(a1.request_id)
    assert got is not None and (got.owner, got.lease_until) == ("A", 0)
    assert await ledger.release("C") == 0  # terminal rows keep their lease


async def test_release_keeps_the_leases_it_is_told_to_keep(ledger: Ledger) -> None:
    """At a stop, a job whose step still runs in a thread keeps its lease, and so does a notification in delivery."""
    busy, idle = job(owner="A"), job(owner="A")
    for rec in (busy, idle):
        await ledger.claim(rec, None)
    assert await ledger.release("A", keep_jobs={busy.request_id}) == 1
    kept, freed = await ledger.get(busy.request_id), await ledger.get(idle.request_id)
    assert kept is not None and kept.lease_until == pytest.approx(busy.lease_until)
    assert freed is not None and freed.lease_until == 0


async def test_adopt_takes_only_free_unfinished_rows(ledger: Ledger) -> None:
    past, future = time.time() - 100, time.time() + HOUR
    expired = job(owner="X", lease_until=past)
    released = job(owner="Y", lease_until=future)
    dead = job(owner="D", lease_until=future)
    orphan = job(owner=None, lease_until=future)
    live = job(owner="L", lease_until=future)
    terminal = job(owner="X", lease_until=past)
    for rec in (expired, released, dead, orphan, live, terminal):
        await ledger.claim(rec, None)
    assert await ledger.release("Y") == 1
    assert await ledger.transition(terminal.request_id, "X", JobState.RECEIVED, JobState.FAILED)

    until = time.time() + 2 * HOUR
    adopted = await ledger.adopt("me", until, ["D"], 100)
    by_id = {r.request_id: r for r in adopted}
    assert set(by_id) == {expired.request_id, released.request_id, dead.request_id, orphan.request_id}
    for original in (expired, released, dead, orphan):
        got = by_id[original.request_id]
        assert got.owner == "me" and got.lease_until == pytest.approx(until)
        assert (got.state, got.model, got.request, got.data) == (
            original.state,
            original.model,
            original.request,
            original.data,
        )
        assert await ledger.get(original.request_id) == got
    assert await ledger.get(live.request_id) == live
    still = await ledger.get(terminal.request_id)
    assert still is not None and (still.owner, still.state) == ("X", JobState.FAILED)
    # adopted rows now carry live leases: nobody adopts them again, the old owner's moves lose
    assert await ledger.adopt("other", until, [], 100) == []
    assert not await ledger.transition(expired.request_id, "X", JobState.RECEIVED, JobState.SUBMITTING)
    assert await ledger.transition(expired.request_id, "me", JobState.RECEIVED, JobState.SUBMITTING)


async def test_adopt_respects_limit_and_concurrent_adopters_split_rows(store: Opener) -> None:
    a, b = await store(), await store()
    recs = [job(owner="gone", lease_until=time.time() - 100) for _ in range(30)]
    for rec in recs:
        await a.claim(rec, None)
    assert len(await a.adopt("solo", time.time() - 1, [], 3)) == 3  # limit; lease already over
    got = await asyncio.gather(*(led.adopt(f"o{i}", time.time() + HOUR, [], 4) for i, led in enumerate([a, b] * 5)))
    ids = [r.request_id for batch in got for r in batch]
    assert len(ids) == len(set(ids))  # no row adopted twice
    rest = await a.adopt("last", time.time() + HOUR, [], 100)
    assert sorted(ids + [r.request_id for r in rest]) == sorted(r.request_id for r in recs)


# --- counts, persistence -----------------------------------------------------------------
async def test_counts(ledger: Ledger) -> None:
    empty = await ledger.counts()
    assert empty == {**{s.value: 0 for s in JobState}, "outbox_pending": 0}
    recs = [job() for _ in range(3)]
    for rec in recs:
        await ledger.claim(rec, ReplyTarget("q"))
    await ledger.transition(recs[0].request_id, "A", JobState.RECEIVED, JobState.SUBMITTING)
    await fail(ledger, recs[1].request_id, reply_body=b"x", outbox=[msg(recs[1].request_id, 1)])
    counts = await ledger.counts()
    assert counts["received"] == 1 and counts["submitting"] == 1 and counts["failed"] == 1
    assert counts["outbox_pending"] == 2
    assert sum(v for k, v in counts.items() if k != "outbox_pending") == 3


async def test_rows_survive_reopen(store: Opener) -> None:
    first = await store()
    rec = job()
    await first.claim(rec, ReplyTarget("q", "c"))
    await first.close()
    second = await store()
    assert await second.get(rec.request_id) == rec
    assert not (await second.claim(job(rec.request_id), None)).created


async def test_open_ledger_is_at_the_latest_schema_version(ledger: Ledger) -> None:
    """An opened ledger reports the schema version this code creates."""
    assert await ledger.schema_version() == SCHEMA_VERSION


async def test_closed_ledger_refuses_calls(store: Opener) -> None:
    led = await store()
    await led.close()
    with pytest.raises(RuntimeError):
        await led.get("x")


# --- PostgreSQL specifics ----------------------------------------------------------------
async def test_postgres_url_schemes() -> None:
    assert isinstance(open_ledger("postgres://u@h/db"), PostgresLedger)
    assert isinstance(open_ledger("postgresql://u@h/db"), PostgresLedger)
    with pytest.raises(ValueError):
        PostgresLedger("mysql://u@h/db")


async def test_postgres_pool_size_from_the_url() -> None:
    """``?pool_size=N`` caps one instance's connections (many instances must fit max_connections)."""
    ledger = open_ledger("postgresql://u@h/db?schema=s&pool_size=3&sslmode=require")
    assert isinstance(ledger, PostgresLedger)
    assert (ledger.max_size, ledger.schema) == (3, "s")
    assert "pool_size" not in ledger.url and "sslmode=require" in ledger.url
    assert isinstance(default := open_ledger("postgresql://u@h/db"), PostgresLedger) and default.max_size == 10
    for bad in ("0", "101", "x", "-1"):
        with pytest.raises(ConfigError, match="pool_size"):
            open_ledger(f"postgresql://u@h/db?pool_size={bad}")


@pytest_asyncio.fixture
async def pg_schema() -> AsyncIterator[str]:
    if reason := await _pg_unreachable():
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex}"
    yield schema
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_a_claim_leaves_alone_a_request_a_peer_is_claiming_right_now(pg_schema: str) -> None:
    """PostgreSQL: a peer's claim not yet committed holds its requests; another claim takes none of their rows.

    The peer's claim is paused inside its transaction, after it leased the request's first
    row and before its commit. Before, ``SKIP LOCKED`` passed over that locked row and the
    second claim leased the request's next row, which then went out ahead of the first.
    """
    ledger = PostgresLedger(PG_URL, schema=pg_schema)
    await ledger.open()
    peer = await asyncpg.connect(PG_URL, server_settings={"search_path": pg_schema})
    try:
        await ledger.enqueue([msg("r", 0), msg("s", 1), msg("r", 2)])
        async with peer.transaction():
            mine = await claim_outbox_in(peer, "A", time.time() + HOUR, 1)
            assert [m.message_id for m in mine] == ["mid-0"]
            assert [m.message_id for m in await ledger.claim_outbox("B", time.time() + HOUR, 10)] == ["mid-1"]
        # committed: the lease on r's first row now keeps r's later row from B
        assert [m.message_id for m in await ledger.claim_outbox("B", time.time() + HOUR, 10)] == ["mid-1"]
        assert [m.message_id for m in await ledger.claim_outbox("A", time.time() + HOUR, 10)] == ["mid-0", "mid-2"]
    finally:
        await peer.close()
        await ledger.close()


async def test_a_claim_takes_no_row_behind_one_another_writer_has_locked(pg_schema: str) -> None:
    """PostgreSQL: a request's earlier row locked by a writer that is not a claim (here the release
    of a dead owner's leases) keeps the claim off the request's later rows.

    Before, ``SKIP LOCKED`` passed over the locked row and the claim leased the later one; the
    next claim then leased the earlier row, and both were out at once (a review found it).
    """
    ledger = PostgresLedger(PG_URL, schema=pg_schema)
    await ledger.open()
    other = await asyncpg.connect(PG_URL, server_settings={"search_path": pg_schema})
    try:
        await ledger.enqueue([msg("r", 0)])
        assert [m.message_id for m in await ledger.claim_outbox("dead", time.time() - 1, 10)] == ["mid-0"]
        await ledger.enqueue([msg("r", 1), msg("s", 2)])
        async with other.transaction():  # as adopt() frees the dead owner's rows
            await other.execute("UPDATE outbox SET lease_until = 0 WHERE lease_owner = 'dead'")
            assert [m.message_id for m in await ledger.claim_outbox("B", time.time() + HOUR, 10)] == ["mid-2"]
        assert [m.message_id for m in await ledger.claim_outbox("C", time.time() + HOUR, 10)] == ["mid-0", "mid-1"]
    finally:
        await other.close()
        await ledger.close()


async def test_postgres_concurrent_schema_creation(pg_schema: str) -> None:
    url = "postgres://" + PG_URL.split("://", 1)[1]  # the short scheme works as well
    ledgers = [PostgresLedger(url, schema=pg_schema, max_size=2) for _ in range(6)]
    try:
        await asyncio.gather(*(led.open() for led in ledgers))
        rec = job()
        assert (await ledgers[0].claim(rec, None)).created
        assert await ledgers[5].get(rec.request_id) == rec
    finally:
        await asyncio.gather(*(led.close() for led in ledgers))


async def test_postgres_statements_are_counted(ledger: Ledger) -> None:
    """``videoworker_ledger_statements_total`` counts each statement a PostgreSQL ledger sends (SQLite: none)."""

    def counted(kind: str) -> float:
        return metrics.LEDGER_STATEMENTS.labels(kind=kind)._value.get()  # type: ignore[no-any-return]

    before = {kind: counted(kind) for kind in ("insert", "begin", "commit", "select")}
    await ledger.claim(job(), None)
    grew = {kind: counted(kind) - before[kind] for kind in before}
    if isinstance(ledger, PostgresLedger):
        assert grew["insert"] >= 1 and grew["begin"] >= 1 and grew["commit"] >= 1, grew
        # no reset script when the connection goes back to the pool (it would count as a select)
        assert grew["select"] == 0, grew
    else:
        assert grew == {"insert": 0, "begin": 0, "commit": 0, "select": 0}


async def test_a_small_pool_serves_many_concurrent_calls() -> None:
    """With ``pool_size=2``, twenty concurrent claims wait their turn for a connection and all succeed."""
    if reason := await _pg_unreachable():
        pytest.skip(reason)
    schema = f"pool_{uuid.uuid4().hex[:8]}"
    ledger = open_ledger(f"{PG_URL}?schema={schema}&pool_size=2")
    await ledger.open()
    try:
        results = await asyncio.gather(*(ledger.claim(job(), None) for _ in range(20)))
        assert all(r.created for r in results)
        assert ledger._require().get_max_size() == 2  # type: ignore[attr-defined]
    finally:
        await ledger.close()
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
