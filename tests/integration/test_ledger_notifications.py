"""Owed notifications and the daily budget, run against both ledger backends (schema version 3).

The stores are those of ``test_ledger.py``: a SQLite file in ``tmp_path`` and a fresh
PostgreSQL schema per test, skipped with the reason when PostgreSQL is unreachable.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from tests.integration import test_ledger as contract
from tests.integration.test_ledger import HOUR, Opener, job, msg
from videoworker.core.states import JobState
from videoworker.errors import OverBudget
from videoworker.ledger.base import BudgetChange, Ledger, OwedNotification

pytestmark = pytest.mark.asyncio

# the same fixtures as the ledger contract tests: both backends, one store per test
store = contract.store
ledger = contract.ledger

S = JobState
#: The move that emits each event status.
EMITS = {
    "submitted": (S.SUBMITTING, S.SUBMITTED),
    "in_progress": (S.SUBMITTED, S.IN_PROGRESS),
    "failed": (S.IN_PROGRESS, S.FAILED),
}
DAY = "2024-05-01"


def note(
    rid: str, status: str = "submitted", target: str = "t1", plugin: str = "hook", **fields: Any
) -> OwedNotification:
    """A notification of ``status`` owed to ``plugin``'s ``target``, due now, retried for an hour."""
    values: dict[str, Any] = {"deadline": time.time() + HOUR, **fields}
    return OwedNotification(
        rid,
        plugin,
        target,
        {"url": f"https://{target}.example.test/hook", "headers": {"x-ünï": "☕"}},
        status,
        {"payload": {"id": rid, "status": status}, "delivery": {"attempts": 3}, "prompt": "a cat ☕"},
        **values,
    )


async def new_job(ledger: Ledger, state: JobState = S.SUBMITTING, owner: str = "A") -> str:
    """A fresh job row in ``state``, held by ``owner``."""
    rec = job(owner=owner, state=state)
    assert (await ledger.claim(rec, None)).created
    return rec.request_id


async def owe(ledger: Ledger, rid: str, status: str, *notes: OwedNotification) -> None:
    """Make the move that emits ``status``, recording ``notes`` (default: one to hook/t1) with it."""
    expect, new = EMITS[status]
    assert await ledger.transition(rid, "A", expect, new, notifications=notes or [note(rid, status)])


async def claim(
    ledger: Ledger, owner: str = "D", limit: int = 100, per_target: int = 100, busy: Sequence[tuple[str, str]] = ()
) -> list[OwedNotification]:
    """Lease due notifications to ``owner`` for an hour."""
    return await ledger.claim_notifications(owner, time.time() + HOUR, limit, per_target=per_target, busy=busy)


def keys(rows: Sequence[OwedNotification]) -> list[tuple[str, str, str, str]]:
    return [(n.request_id, n.status, n.plugin, n.target_key) for n in rows]


def ident(row: OwedNotification) -> int:
    assert row.id is not None
    return row.id


async def settle(ledger: Ledger, row: OwedNotification, state: str, owner: str = "D", **kwargs: Any) -> bool:
    return await ledger.settle_notification(ident(row), owner, state=state, attempts=row.attempts + 1, **kwargs)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """The first truthy result of ``check()``, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
    return result


# --- recording ---------------------------------------------------------------------------
async def test_transition_records_notifications_with_the_move(ledger: Ledger) -> None:
    """A move records its notifications, every field intact, in the same call as the state change."""
    rid = await new_job(ledger)
    before = time.time()
    owed = [note(rid, target="t1"), note(rid, target="t2", plugin="mail", next_at=5.0, created_at=123.5)]
    assert await ledger.transition(rid, "A", S.SUBMITTING, S.SUBMITTED, outbox=[msg(rid, 1)], notifications=owed)
    rows = await ledger.list_notifications()
    assert [n.target_key for n in rows] == ["t2", "t1"]  # newest first
    first, second = rows[1], rows[0]
    assert ident(first) < ident(second)
    assert first.created_at >= before and second.created_at == 123.5  # unset: the time of recording
    for got, want in ((first, owed[0]), (second, owed[1])):
        assert (got.target, got.event, got.deadline, got.next_at) == (
            want.target,
            want.event,
            want.deadline,
            want.next_at,
        )
        assert (got.state, got.attempts, got.last_error, got.delivered_at) == ("pending", 0, None, None)
    assert second.stable_id == f"{rid}:submitted:mail:t2"
    assert (await ledger.counts())["outbox_pending"] == 1


async def test_lost_compare_and_set_records_no_notification(ledger: Ledger) -> None:
    """A move that loses its compare-and-set (other owner, other state) records no notification."""
    rid = await new_job(ledger)
    assert not await ledger.transition(rid, "B", S.SUBMITTING, S.SUBMITTED, notifications=[note(rid)])
    assert not await ledger.transition(rid, "A", S.SUBMITTED, S.IN_PROGRESS, notifications=[note(rid)])
    assert await ledger.list_notifications() == []
    assert await ledger.notification_counts() == {}


async def test_recording_the_same_notification_twice_keeps_one_row(ledger: Ledger) -> None:
    """The same request, status, plugin and target recorded again keeps the first row as it is, even delivered."""
    rid = await new_job(ledger)
    again = note(rid)
    again.event = {"payload": {"other": True}}
    await owe(ledger, rid, "submitted", note(rid), again, note(rid, target="t2"))
    assert len(await ledger.list_notifications()) == 2
    t1 = (await claim(ledger))[0]
    assert await settle(ledger, t1, "delivered")
    # a crash after the move re-records what it owed, along with what the next move owes
    await owe(ledger, rid, "in_progress", again, note(rid, target="t2"), note(rid, "in_progress"))
    rows = sorted(await ledger.list_notifications(), key=ident)
    assert keys(rows) == [
        (rid, "submitted", "hook", "t1"),
        (rid, "submitted", "hook", "t2"),
        (rid, "in_progress", "hook", "t1"),
    ]
    assert [n.state for n in rows] == ["delivered", "pending", "pending"]
    assert rows[0].event == note(rid).event  # the first recording's
    assert rows[0].delivered_at is not None and rows[0].attempts == 1


# --- claiming ----------------------------------------------------------------------------
async def test_claim_leases_due_rows_oldest_first(ledger: Ledger) -> None:
    """Due rows are leased oldest first, sorted by id; nobody takes a leased row again, not even its holder."""
    rids = [await new_job(ledger) for _ in range(4)]
    for rid in rids:
        await owe(ledger, rid, "submitted")
    first = await claim(ledger, "D", limit=2)
    assert [n.request_id for n in first] == rids[:2] and ident(first[0]) < ident(first[1])
    assert [n.request_id for n in await claim(ledger, "E", limit=10)] == rids[2:]
    assert await claim(ledger, "F") == []
    assert await claim(ledger, "D", limit=-1) == []  # negative: no limit; its own rows are being delivered


async def test_older_pending_notification_holds_back_newer_for_same_target(ledger: Ledger) -> None:
    """A request's newer notification to a target waits while an older one to that target is pending, even in retry."""
    rid = await new_job(ledger)
    await owe(ledger, rid, "submitted", note(rid, target="t1"))
    await owe(ledger, rid, "in_progress", note(rid, "in_progress", "t1"), note(rid, "in_progress", "t2"))
    other = await new_job(ledger)
    await owe(ledger, other, "submitted", note(other, target="t1"))

    got = await claim(ledger, "D")  # not rid's in_progress to t1; other targets and requests are free
    assert keys(got) == [
        (rid, "submitted", "hook", "t1"),
        (rid, "in_progress", "hook", "t2"),
        (other, "submitted", "hook", "t1"),
    ]
    assert await claim(ledger, "E") == []  # leased elsewhere: the older row still holds the newer back

    # a failed attempt waiting for its retry keeps holding back its successor
    assert await settle(ledger, got[0], "pending", next_at=time.time() + HOUR, error="503")
    assert await claim(ledger, "E") == []
    assert await claim(ledger, "D") == []  # a row in its lease is being delivered: not even its owner takes it twice


async def test_dead_or_delivered_older_row_does_not_hold_back_newer(ledger: Ledger) -> None:
    """Once the older notification to a target is delivered or dead, the request's next one to it is claimed."""
    delivered, dead = await new_job(ledger), await new_job(ledger)
    for rid in (delivered, dead):
        await owe(ledger, rid, "submitted")
        await owe(ledger, rid, "in_progress", note(rid, "in_progress"))
    first = await claim(ledger, "D")
    assert keys(first) == [(delivered, "submitted", "hook", "t1"), (dead, "submitted", "hook", "t1")]
    assert await settle(ledger, first[0], "delivered")
    assert await settle(ledger, first[1], "dead", error="410 gone")
    assert keys(await claim(ledger, "E")) == [
        (delivered, "in_progress", "hook", "t1"),
        (dead, "in_progress", "hook", "t1"),
    ]


async def test_per_target_cap_and_busy_targets(ledger: Ledger) -> None:
    """One claim takes at most per_target rows of each (plugin, target) and none of a busy one."""
    rids = [await new_job(ledger) for _ in range(5)]
    for i, rid in enumerate(rids):
        owed = [note(rid, target="t1")]
        owed += [note(rid, target="t2")] if i < 2 else []
        owed += [note(rid, target="t1", plugin="mail")] if i == 4 else []
        await owe(ledger, rid, "submitted", *owed)

    capped = await claim(ledger, "D", per_target=2)
    assert sorted(keys(capped), key=lambda k: (k[2], k[3], rids.index(k[0]))) == [
        (rids[0], "submitted", "hook", "t1"),
        (rids[1], "submitted", "hook", "t1"),  # the oldest two of hook/t1's five
        (rids[0], "submitted", "hook", "t2"),
        (rids[1], "submitted", "hook", "t2"),
        (rids[4], "submitted", "mail", "t1"),  # same key, other plugin: another target
    ]
    assert [ident(n) for n in capped] == sorted(ident(n) for n in capped)
    assert await claim(ledger, "E", busy=[("hook", "t1")]) == []
    rest = await claim(ledger, "E", per_target=1, busy=[("hook", "t2"), ("mail", "t1")])
    assert keys(rest) == [(rids[2], "submitted", "hook", "t1")]


async def test_expired_lease_lets_another_owner_claim(ledger: Ledger) -> None:
    """A lease past its time is free: another owner claims the row and the first one's settle then fails."""
    rid = await new_job(ledger)
    await owe(ledger, rid, "submitted")
    [row] = await ledger.claim_notifications("D", time.time() - 1, 10, per_target=10)
    [taken] = await claim(ledger, "E")
    assert ident(taken) == ident(row)
    assert not await settle(ledger, row, "delivered", owner="D")
    [still] = await ledger.list_notifications()
    assert (still.state, still.attempts) == ("pending", 0)
    assert await settle(ledger, taken, "delivered", owner="E")


async def test_settle_with_a_lost_lease_returns_false_changing_nothing(ledger: Ledger) -> None:
    """Settling a row its caller does not hold (never held, or already settled) changes nothing and returns False."""
    rid = await new_job(ledger)
    await owe(ledger, rid, "submitted")
    [row] = await claim(ledger, "D")
    assert not await settle(ledger, row, "dead", owner="stranger", error="x")
    assert not await ledger.settle_notification(10**9, "D", state="delivered", attempts=1)
    assert (await ledger.list_notifications())[0].state == "pending"
    with pytest.raises(ValueError):
        await settle(ledger, row, "sent")
    assert await settle(ledger, row, "delivered")
    assert not await settle(ledger, row, "dead")  # the lease went with the first settle
    [done] = await ledger.list_notifications()
    assert (done.state, done.attempts, done.last_error) == ("delivered", 1, None)
    assert done.delivered_at is not None and abs(done.delivered_at - time.time()) < HOUR


async def test_retry_is_not_claimed_until_due(ledger: Ledger) -> None:
    """A row settled for a retry at next_at is left alone until then and claimable from then on."""
    rid, later = await new_job(ledger), await new_job(ledger)
    await owe(ledger, rid, "submitted")
    await owe(ledger, later, "submitted", note(later, target="t2"))
    [a, b] = await claim(ledger, "D")
    assert await settle(ledger, a, "pending", next_at=time.time() + HOUR, error="e" * 5000)
    due_at = time.time() + 0.3
    assert await settle(ledger, b, "pending", next_at=due_at, error="timeout")
    [waiting] = await ledger.list_notifications(request_id=rid)
    assert (waiting.state, waiting.attempts, waiting.last_error) == ("pending", 1, "e" * 1000)  # truncated
    assert await claim(ledger, "E") == [] or time.time() >= due_at

    retried = await eventually(lambda: claim(ledger, "E"))
    assert time.time() >= due_at
    assert keys(retried) == [(later, "submitted", "hook", "t2")]
    assert (retried[0].attempts, retried[0].last_error, retried[0].next_at) == (1, "timeout", pytest.approx(due_at))


# --- replay, listing, counts -------------------------------------------------------------
async def test_replay_one_dead_notification_then_all(ledger: Ledger) -> None:
    """Replay makes dead rows (one id, or all) pending, due now, with fresh attempts and deadline, error kept."""
    rids = [await new_job(ledger) for _ in range(4)]
    for rid in rids:
        await owe(ledger, rid, "submitted")
    rows = await claim(ledger, "D")
    for row in rows[:3]:
        assert await settle(ledger, row, "dead", error=f"gone {row.request_id}")
    assert await settle(ledger, rows[3], "delivered")
    dead_ids = [ident(n) for n in rows[:3]]

    deadline = time.time() + 2 * HOUR
    assert await ledger.replay_notifications([dead_ids[1], ident(rows[3]), 10**9], deadline=deadline) == 1
    [replayed] = await ledger.list_notifications(state="pending")
    assert ident(replayed) == dead_ids[1]
    assert (replayed.attempts, replayed.deadline, replayed.last_error) == (0, deadline, f"gone {rids[1]}")
    assert replayed.next_at <= time.time()
    assert [ident(n) for n in await claim(ledger, "E")] == [dead_ids[1]]

    assert await ledger.replay_notifications([], deadline=deadline) == 0
    assert await ledger.replay_notifications(None, deadline=deadline) == 2
    assert await ledger.replay_notifications(None, deadline=deadline) == 0
    assert [ident(n) for n in await claim(ledger, "F")] == [dead_ids[0], dead_ids[2]]
    assert [n.state for n in await ledger.list_notifications(state="delivered")] == ["delivered"]


async def test_list_notifications_filters_newest_first(ledger: Ledger) -> None:
    """Listing filters by state and request, newest first, up to the limit."""
    a, b = await new_job(ledger), await new_job(ledger)
    await owe(ledger, a, "submitted", note(a, target="t1"), note(a, target="t2"))
    await owe(ledger, b, "submitted", note(b, target="t1"))
    [first, *_] = await claim(ledger, "D", limit=1)
    assert await settle(ledger, first, "dead", error="no")
    every = await ledger.list_notifications()
    assert [n.target_key for n in every] == ["t1", "t2", "t1"] and every[0].request_id == b
    assert keys(await ledger.list_notifications(request_id=a)) == keys(every[1:])
    assert keys(await ledger.list_notifications(state="dead")) == [(a, "submitted", "hook", "t1")]
    assert keys(await ledger.list_notifications(state="pending", request_id=a)) == [(a, "submitted", "hook", "t2")]
    assert keys(await ledger.list_notifications(limit=1)) == keys(every[:1])
    assert await ledger.list_notifications(request_id="absent") == []


async def test_notification_counts_per_plugin_and_state(ledger: Ledger) -> None:
    """Counts name every state for each plugin with rows, zero where there are none."""
    assert await ledger.notification_counts() == {}
    rid = await new_job(ledger)
    owed = [note(rid, target=t) for t in ("t1", "t2", "t3")] + [note(rid, plugin="mail")]
    await owe(ledger, rid, "submitted", *owed)
    rows = await claim(ledger, "D")
    assert await settle(ledger, rows[0], "delivered")
    assert await settle(ledger, rows[1], "dead")
    assert await ledger.notification_counts() == {
        "hook": {"pending": 1, "delivered": 1, "dead": 1},
        "mail": {"pending": 1, "delivered": 0, "dead": 0},
    }


# --- owners ------------------------------------------------------------------------------
async def test_adopt_frees_a_dead_owners_notification_leases(ledger: Ledger) -> None:
    """Leased pending notifications name live owners; adopt frees a dead owner's leases for anyone to claim."""
    rid = await new_job(ledger, owner="A")
    await owe(ledger, rid, "submitted", note(rid, target="t1"), note(rid, target="t2"))
    [dead_one] = await claim(ledger, "D", limit=1)
    [live_one] = await claim(ledger, "L", limit=1)
    assert sorted(await ledger.live_owners()) == ["A", "D", "L"]
    assert await claim(ledger, "X") == []

    await ledger.adopt("me", time.time() + HOUR, ["D"], 100)
    assert [ident(n) for n in await claim(ledger, "X")] == [ident(dead_one)]  # L's lease is untouched
    assert not await settle(ledger, dead_one, "delivered", owner="D")
    assert await settle(ledger, live_one, "delivered", owner="L")
    assert "L" not in await ledger.live_owners()  # a settled row holds no lease


async def test_release_frees_an_owners_notification_leases(ledger: Ledger) -> None:
    """A clean stop hands the notifications it was delivering to anyone at once, not after the lease."""
    rid = await new_job(ledger, owner="A")
    await owe(ledger, rid, "submitted", note(rid, target="t1"))
    [leased] = await claim(ledger, "A", limit=1)
    assert await claim(ledger, "X") == []
    await ledger.release("A")
    assert [ident(n) for n in await claim(ledger, "X")] == [ident(leased)]


async def test_release_keeps_a_notification_still_in_delivery(ledger: Ledger) -> None:
    """A delivery the stop let go (its thread still sends) keeps its row: nobody sends it beside that."""
    rid = await new_job(ledger, owner="A")
    await owe(ledger, rid, "submitted", note(rid, target="t1"), note(rid, target="t2"))
    first, second = await claim(ledger, "A", limit=2)
    await ledger.release("A", keep_notifications={first.id or 0})
    assert [ident(n) for n in await claim(ledger, "X")] == [ident(second)]


# --- budget ------------------------------------------------------------------------------
def reserve(amount: float, limit: float | None = 10.0) -> BudgetChange:
    return BudgetChange(DAY, amount, limit=limit)


async def test_reservations_within_the_limit_move_and_add_up(ledger: Ledger) -> None:
    """Reservations up to exactly the limit are recorded with their moves; an unlimited one always passes."""
    assert await ledger.budget_day(DAY) == (0.0, 0.0)
    a, b, c = [await new_job(ledger, S.RECEIVED) for _ in range(3)]
    assert await ledger.transition(a, "A", S.RECEIVED, S.SUBMITTING, budget=reserve(4.0))
    assert await ledger.transition(b, "A", S.RECEIVED, S.SUBMITTING, budget=reserve(6.0))
    assert await ledger.budget_day(DAY) == (0.0, 10.0)
    assert await ledger.transition(c, "A", S.RECEIVED, S.SUBMITTING, budget=reserve(5.0, limit=None))
    assert await ledger.budget_day(DAY) == (0.0, 15.0)
    assert await ledger.budget_day("2024-05-02") == (0.0, 0.0)
    assert {(await ledger.get(r) or job()).state for r in (a, b, c)} == {S.SUBMITTING}


async def test_over_budget_raises_and_writes_nothing(ledger: Ledger) -> None:
    """A reservation past the limit raises OverBudget and neither the move nor anything it owed is recorded."""
    rid = await new_job(ledger, S.RECEIVED)
    assert await ledger.transition(rid, "A", S.RECEIVED, S.SUBMITTING, budget=reserve(8.0))
    other = await new_job(ledger, S.RECEIVED)
    before = await ledger.get(other)
    with pytest.raises(OverBudget) as refused:
        await ledger.transition(
            other,
            "A",
            S.RECEIVED,
            S.SUBMITTING,
            attempts=1,
            outbox=[msg(other, 1)],
            notifications=[note(other)],
            budget=reserve(2.5),
        )
    assert (refused.value.day, refused.value.amount, refused.value.committed, refused.value.limit) == (
        DAY,
        2.5,
        8.0,
        10.0,
    )
    assert await ledger.get(other) == before
    assert await ledger.budget_day(DAY) == (0.0, 8.0)
    assert (await ledger.counts())["outbox_pending"] == 0
    assert await ledger.list_notifications() == []
    # a first reservation of a new day that alone passes the limit leaves no day row behind either
    with pytest.raises(OverBudget) as alone:
        await ledger.transition(
            other, "A", S.RECEIVED, S.SUBMITTING, budget=BudgetChange("2024-05-09", 11.0, limit=10.0)
        )
    assert alone.value.committed == 0.0
    assert await ledger.budget_day("2024-05-09") == (0.0, 0.0)
    assert await ledger.transition(other, "A", S.RECEIVED, S.SUBMITTING, budget=reserve(2.0))


async def test_lost_compare_and_set_changes_no_budget(ledger: Ledger) -> None:
    """A budgeted move that loses its compare-and-set returns False, the day untouched, even when past the limit."""
    rid = await new_job(ledger, S.RECEIVED)
    assert not await ledger.transition(rid, "B", S.RECEIVED, S.SUBMITTING, budget=reserve(1.0))
    assert not await ledger.transition(rid, "A", S.SUBMITTING, S.SUBMITTED, budget=reserve(-1.0, limit=None))
    assert not await ledger.transition(rid, "B", S.RECEIVED, S.SUBMITTING, budget=reserve(50.0))  # no OverBudget
    assert not await ledger.transition("absent", "A", S.RECEIVED, S.SUBMITTING, budget=reserve(1.0))
    assert await ledger.budget_day(DAY) == (0.0, 0.0)
    assert (await ledger.get(rid) or job()).state is S.RECEIVED


async def test_settle_and_release_arithmetic(ledger: Ledger) -> None:
    """Settling turns a reservation into the actual spend, releasing returns it, and the limit counts both."""
    settled, released, last = [await new_job(ledger, S.RECEIVED) for _ in range(3)]
    assert await ledger.transition(settled, "A", S.RECEIVED, S.SUBMITTING, budget=reserve(2.5))
    assert await ledger.transition(released, "A", S.RECEIVED, S.SUBMITTING, budget=reserve(3.0))
    assert await ledger.budget_day(DAY) == (0.0, 5.5)
    assert await ledger.transition(settled, "A", S.SUBMITTING, S.SUBMITTED, budget=BudgetChange(DAY, -2.5, spent=1.75))
    assert await ledger.budget_day(DAY) == (1.75, 3.0)
    assert await ledger.transition(released, "A", S.SUBMITTING, S.RECEIVED, budget=BudgetChange(DAY, -3.0))
    assert await ledger.budget_day(DAY) == (1.75, 0.0)
    # spent counts against the limit: 1.75 + 8.25 is exactly 10
    with pytest.raises(OverBudget) as refused:
        await ledger.transition(last, "A", S.RECEIVED, S.SUBMITTING, budget=reserve(8.5))
    assert refused.value.committed == 1.75
    assert await ledger.transition(last, "A", S.RECEIVED, S.SUBMITTING, budget=reserve(8.25))
    assert await ledger.budget_day(DAY) == (1.75, 8.25)


async def test_reserved_is_clamped_at_zero(ledger: Ledger) -> None:
    """Releases that overshoot the reservation, by float error or more, leave reserved at exactly zero."""
    rid = await new_job(ledger, S.RECEIVED)
    assert 0.3 - 0.1 - 0.2 < 0  # the float error this guards against
    assert await ledger.transition(rid, "A", S.RECEIVED, S.SUBMITTING, budget=reserve(0.3))
    assert await ledger.transition(rid, "A", S.SUBMITTING, S.RECEIVED, budget=BudgetChange(DAY, -0.1))
    assert await ledger.transition(rid, "A", S.RECEIVED, S.SUBMITTING, budget=BudgetChange(DAY, -0.2))
    assert await ledger.budget_day(DAY) == (0.0, 0.0)
    assert await ledger.transition(rid, "A", S.SUBMITTING, S.RECEIVED, budget=BudgetChange(DAY, -5.0, spent=0.5))
    assert await ledger.budget_day(DAY) == (0.5, 0.0)


# --- concurrency -------------------------------------------------------------------------
async def test_concurrent_reservations_never_pass_the_limit(store: Opener) -> None:
    """48 reservations racing from 3 ledger instances commit exactly floor(limit / estimate) of them, no more."""
    ledgers = [await store() for _ in range(3)]
    estimate, limit, per_ledger = 0.75, 20.0, 16
    day = f"race-{uuid.uuid4().hex[:8]}"
    rids = [[await new_job(led, S.RECEIVED, owner=f"o{i}") for _ in range(per_ledger)] for i, led in enumerate(ledgers)]
    results = await asyncio.gather(
        *(
            led.transition(rid, f"o{i}", S.RECEIVED, S.SUBMITTING, budget=BudgetChange(day, estimate, limit=limit))
            for i, led in enumerate(ledgers)
            for rid in rids[i]
        ),
        return_exceptions=True,
    )
    moved = [r for r in results if r is True]
    refused = [r for r in results if isinstance(r, OverBudget)]
    assert len(moved) + len(refused) == len(results), [
        r for r in results if r is not True and not isinstance(r, OverBudget)
    ]
    assert len(moved) == math.floor(limit / estimate) == 26
    spent, reserved = await ledgers[0].budget_day(day)
    assert spent == 0.0 and reserved == len(moved) * estimate <= limit
    states = [(await ledgers[0].get(rid) or job()).state for batch in rids for rid in batch]
    assert states.count(S.SUBMITTING) == len(moved) and states.count(S.RECEIVED) == len(refused)
    assert all(r.committed + r.amount > limit for r in refused)


async def test_concurrent_claims_never_lease_a_row_twice(store: Opener) -> None:
    """Claims racing from 3 ledger instances split the due notifications; no row is leased to two owners."""
    ledgers = [await store() for _ in range(3)]
    for i in range(30):
        rid = await new_job(ledgers[0])
        await owe(
            ledgers[0], rid, "submitted", note(rid, target=f"t{i % 6}"), note(rid, target=f"t{i % 6}", plugin="mail")
        )
    batches = await asyncio.gather(*(claim(led, f"c{i}", limit=7, per_target=3) for i, led in enumerate(ledgers * 4)))
    ids = [ident(n) for batch in batches for n in batch]
    assert len(ids) == len(set(ids)) and ids
    assert all(
        max(
            sum(1 for n in batch if (n.plugin, n.target_key) == pair)
            for pair in {(n.plugin, n.target_key) for n in batch}
        )
        <= 3
        for batch in batches
        if batch
    )
    rest = await claim(ledgers[0], "last")
    assert sorted(ids + [ident(n) for n in rest]) == [
        ident(n) for n in sorted(await ledgers[0].list_notifications(), key=ident)
    ]
