"""The ledger's operator calls on both backends: listing, retry (reopen), producer isolation, retention."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration import test_ledger as contract
from tests.integration.test_ledger import HOUR, drain, job
from videoworker.core.states import IllegalTransition, JobState
from videoworker.ledger.base import Ledger, OutboxMessage, OwedNotification, ReplyTarget
from videoworker.ledger.retention import Retention

pytestmark = pytest.mark.asyncio
# the same fixtures as the ledger contract tests: both backends, one store per test
store = contract.store
ledger = contract.ledger
S = JobState
FINAL = {"id": "x", "status": "failed", "error": {"code": "storage_failed", "message": "disk", "retryable": True}}


async def finish(ledger: Ledger, rid: str, *, to: JobState = S.FAILED, job_id: str | None = "job-1", **kw: Any) -> None:
    """Claim ``rid`` and walk it to a finished state through the real moves, with an event and a reply."""
    await ledger.claim(job(rid, **kw), ReplyTarget("amq.gen-reply"))
    assert await ledger.transition(rid, "A", S.RECEIVED, S.SUBMITTING)
    assert await ledger.transition(rid, "A", S.SUBMITTING, S.SUBMITTED, job_id=job_id, attempts=1)
    assert await ledger.transition(rid, "A", S.SUBMITTED, S.COMPLETED, data={"outputs": [{"index": 0}]})
    data = {"final": {**FINAL, "id": rid}, "history": [{"state": "x"}] * 5, "outputs": [{"index": 0}], "big": "b" * 999}
    notification = OwedNotification(rid, "webhooks", "t", {}, "failed", {"payload": {}}, time.time(), HOUR, 0)
    assert await ledger.transition(
        rid,
        "A",
        S.COMPLETED,
        to if to is S.FAILED else S.STORED,
        data=data,
        outbox=[OutboxMessage("events", "video.failed", b"{}", f"{rid}:failed", rid)],
        reply_body=b"{}",
        reply_message_id=f"{rid}:failed",
        notifications=[notification],
    )
    if to is S.DONE:
        assert await ledger.transition(rid, "A", S.STORED, S.DONE)


def after(moment: float) -> float:
    """Wait until the wall clock has passed ``moment``: rows written from now on are strictly newer."""
    while time.time() <= moment:
        pass
    return time.time()


# --- listing -----------------------------------------------------------------------------
async def test_list_jobs_filters_by_state_model_and_time_newest_first(ledger: Ledger) -> None:
    await finish(ledger, "old")
    cut = after(time.time())
    await ledger.claim(job("live"), None)
    other = job("other-model")
    other.model = "model-z"
    await ledger.claim(other, None)

    everything = await ledger.list_jobs()
    assert [r.request_id for r in everything][-1] == "old" and len(everything) == 3
    assert everything[0].updated_at >= everything[-1].updated_at > 0
    assert [r.request_id for r in await ledger.list_jobs(state=S.FAILED)] == ["old"]
    assert [r.request_id for r in await ledger.list_jobs(model="model-z")] == ["other-model"]
    assert {r.request_id for r in await ledger.list_jobs(since=cut)} == {"live", "other-model"}
    assert len(await ledger.list_jobs(limit=1)) == 1


async def test_by_job_id_finds_the_row_holding_a_provider_job(ledger: Ledger) -> None:
    await finish(ledger, "r1", job_id="prov-77")
    found = await ledger.by_job_id("prov-77")
    assert found is not None and found.request_id == "r1"
    assert await ledger.by_job_id("prov-unknown") is None


# --- retry -------------------------------------------------------------------------------
async def test_reopen_sends_a_failed_job_back_unowned_for_adoption(ledger: Ledger) -> None:
    await finish(ledger, "r1", job_id="prov-1")
    assert await ledger.reopen("r1", S.FAILED, S.COMPLETED, {"outputs": [], "retries": 1})
    row = await ledger.get("r1")
    assert row is not None and row.state is S.COMPLETED and row.owner is None and row.lease_until == 0
    assert row.job_id == "prov-1" and row.data == {"outputs": [], "retries": 1}
    # a second operator retrying at once loses the compare-and-set
    assert not await ledger.reopen("r1", S.FAILED, S.COMPLETED, {})
    adopted = await ledger.adopt("B", time.time() + HOUR, [], 10)
    assert [r.request_id for r in adopted] == ["r1"] and adopted[0].owner == "B"


async def test_reopen_to_received_clears_the_provider_job(ledger: Ledger) -> None:
    await finish(ledger, "r1", job_id="prov-1")
    assert await ledger.reopen("r1", S.FAILED, S.RECEIVED, {"retries": 1})
    row = await ledger.get("r1")
    assert row is not None and row.state is S.RECEIVED and row.job_id is None and row.attempts == 0


async def test_reopen_refuses_moves_that_are_not_retries(ledger: Ledger) -> None:
    await finish(ledger, "r1", to=S.DONE)
    with pytest.raises(IllegalTransition):
        await ledger.reopen("r1", S.DONE, S.RECEIVED, {})
    with pytest.raises(IllegalTransition):
        await ledger.reopen("r1", S.SUBMIT_UNKNOWN, S.COMPLETED, {})
    row = await ledger.get("r1")
    assert row is not None and row.state is S.DONE


# --- producers ---------------------------------------------------------------------------
async def test_a_duplicate_from_another_producer_gets_no_reply_target(ledger: Ledger) -> None:
    """Another producer reusing an id must not be sent the first producer's result."""
    first = job("shared")
    first.data["producer"] = "team-a"
    await ledger.claim(first, ReplyTarget("amq.gen-a"))
    intruder = job("shared")
    intruder.data["producer"] = "team-b"
    dup = await ledger.claim(intruder, ReplyTarget("amq.gen-b"))
    assert not dup.created and dup.record.producer == "team-a"
    same = job("shared")
    same.data["producer"] = "team-a"
    await ledger.claim(same, ReplyTarget("amq.gen-a2"))

    assert await ledger.transition("shared", "A", S.RECEIVED, S.FAILED, reply_body=b"{}", reply_message_id="m")
    replies = sorted(m.routing_key for m in await drain(ledger) if m.exchange == "")
    assert replies == ["amq.gen-a", "amq.gen-a2"]


# --- retention ---------------------------------------------------------------------------
def everything_before(moment: float, batch: int = 100) -> Retention:
    return Retention(sent_before=moment, trim_before=moment, forget_before=moment, batch=batch)


async def test_prune_removes_sent_outbox_rows_only(ledger: Ledger) -> None:
    await finish(ledger, "r1")
    sent = await drain(ledger)
    await ledger.mark_sent([m.id for m in sent if m.id is not None and m.exchange])
    cut = after(time.time())
    done = await ledger.prune(Retention(sent_before=cut, trim_before=0, forget_before=0, batch=100))
    assert done.outbox == 1
    # the reply was leased but never confirmed: it stays owed
    left = await drain(ledger, owner="pub2")
    assert [m.exchange for m in left] == [""] or left == []
    counts = await ledger.counts()
    assert counts["outbox_pending"] == 1


async def test_prune_trims_finished_jobs_to_a_compact_row(ledger: Ledger) -> None:
    await finish(ledger, "old")
    cut = after(time.time())
    await finish(ledger, "new")
    await ledger.claim(job("live"), None)

    done = await ledger.prune(Retention(sent_before=0, trim_before=cut, forget_before=0, batch=100))
    assert done.trimmed == 1
    old, new, live = [await ledger.get(i) for i in ("old", "new", "live")]
    assert old is not None and new is not None and live is not None
    assert old.request == {"model": "model-x"} and old.state is S.FAILED and old.job_id == "job-1"
    assert old.data == {"final": {**FINAL, "id": "old"}, "trimmed": True}
    assert "history" in new.data and new.request["prompt"] == "a cat ☕"
    assert live.request["prompt"] == "a cat ☕"
    # a trimmed job still answers duplicates, but cannot be retried: its request is gone
    dup = await ledger.claim(job("old"), None)
    assert not dup.created and dup.record.data["final"]["id"] == "old"
    assert not await ledger.reopen("old", S.FAILED, S.COMPLETED, {})
    assert (await ledger.prune(Retention(sent_before=0, trim_before=cut, forget_before=0, batch=100))).trimmed == 0


async def test_prune_forgets_old_finished_jobs_and_the_id_is_free_again(ledger: Ledger) -> None:
    await finish(ledger, "old")
    cut = after(time.time())
    await ledger.claim(job("live"), ReplyTarget("amq.gen-live"))

    done = await ledger.prune(everything_before(cut))
    assert done.forgotten == 1 and done.notifications == 0
    assert await ledger.get("old") is None and await ledger.get("live") is not None
    assert await ledger.list_notifications(request_id="old") == []
    again = await ledger.claim(job("old"), None)
    assert again.created
    # the forgotten job's reply target went with it: finishing the new one answers nobody else
    assert await ledger.transition("old", "A", S.RECEIVED, S.FAILED, reply_body=b"{}", reply_message_id="m")
    assert [m for m in await drain(ledger) if m.message_id == "m"] == []


async def test_prune_works_in_bounded_batches(ledger: Ledger) -> None:
    for n in range(7):
        await finish(ledger, f"r{n}")
    cut = after(time.time())
    rounds = []
    while (done := await ledger.prune(Retention(sent_before=0, trim_before=0, forget_before=cut, batch=3))).total:
        rounds.append(done.forgotten)
    assert rounds == [3, 3, 1]
    assert await ledger.list_jobs() == []


async def test_prune_removes_delivered_notifications(ledger: Ledger) -> None:
    await finish(ledger, "r1")
    [row] = await ledger.claim_notifications("D", time.time() + HOUR, 10, per_target=10)
    assert row.id is not None
    assert await ledger.settle_notification(row.id, "D", state="delivered", attempts=1)
    cut = after(time.time())
    done = await ledger.prune(Retention(sent_before=cut, trim_before=0, forget_before=0, batch=100))
    assert done.notifications == 1
    assert await ledger.list_notifications(request_id="r1") == []
