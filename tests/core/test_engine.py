"""The engine loop without a broker: jobs run to their final event, adopted jobs resume from their state,
retries and timeouts end as they should, and a job another instance takes is let go.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog

from tests.core.conftest import Rig
from tests.helpers import make_request
from videoworker.core import steps
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Move
from videoworker.core.ownership import Leases
from videoworker.core.states import JobState, Step
from videoworker.ledger.base import JobRecord, ReplyTarget
from videoworker.testing.recorder import until

RigFactory = Callable[..., Awaitable[Rig]]


async def accept(r: Rig, request_id: str, reply: ReplyTarget | None = None) -> None:
    """Claim a request as intake would, and hand it to the engine."""
    job = await r.claim(request_id, reply)
    r.engine.accept(job.record, job.request)


async def recorded_job_id(r: Rig, request_id: str) -> str:
    """The provider's job id, once the submit's answer is in the ledger."""
    found = ""

    async def recorded() -> bool:
        nonlocal found
        row = await r.ledger.get(request_id)
        found = row.job_id if row is not None and row.job_id else ""
        return bool(found)

    await until(recorded, 10, "the submit recorded")
    return found


async def outbox(r: Rig, request_id: str) -> list[str]:
    """Routing keys the relay published for ``request_id``, after flushing everything owed."""
    while await r.relay.flush():
        pass
    return r.publisher.keys(request_id)


async def test_a_job_runs_to_its_final_event(rig: RigFactory) -> None:
    """received → … → done: the ledger row, the events in order, the reply, the stored video."""
    r = await rig()
    # long enough that a poll sees it running (in_progress) even on a loaded machine; the rig's
    # 0.05-0.15 s jobs can be over before the first poll, which then skips straight to completed
    r.sim.configure(job_seconds=[1.0, 1.2])
    await accept(r, "e-ok", ReplyTarget("reply-q", "corr-1"))
    row = await r.final("e-ok")
    assert row.state is JobState.DONE and row.job_id and row.data["outputs"][0]["bytes"] > 0
    assert await outbox(r, "e-ok") == ["video.submitted", "video.in_progress", "video.completed", "reply-q"]
    reply = next(m for m in r.publisher.messages if m.routing_key == "reply-q")
    assert reply.correlation_id == "corr-1" and json.loads(reply.body) == row.data["final"]
    folder = r.settings.data_dir / "tmp" / "e-ok"
    await until(lambda: not folder.exists(), 5, "the job's downloads to go with it")
    assert r.sim.stats()["submits"] == 1


async def test_submits_that_are_not_taken_are_retried_until_they_are(rig: RigFactory) -> None:
    """503s on submit send the job back to `received`; it completes once the provider takes it."""
    r = await rig()
    r.sim.configure(error_rate=1.0, error_statuses=[503], retry_after=0)
    await accept(r, "e-retry")
    await until(lambda: r.sim.stats()["errors_injected"] >= 2, 10, "two refused submits")
    r.sim.configure(error_rate=0.0)
    row = await r.final("e-retry")
    assert row.state is JobState.DONE and row.attempts >= 3


async def test_a_job_that_never_finishes_fails_with_timeout(rig: RigFactory) -> None:
    """job_timeout ends a job the provider never finishes, with a failed event."""
    r = await rig(job_timeout=0.5)
    r.sim.configure(never_finish_rate=1.0)
    await accept(r, "e-slow")
    row = await r.final("e-slow")
    assert row.state is JobState.FAILED and row.data["final"]["error"]["code"] == "timeout"
    assert (await outbox(r, "e-slow"))[-1] == "video.failed"


async def test_a_failing_observer_never_fails_the_job(rig: RigFactory) -> None:
    """Observers run on their own: an exception in one is counted and the job completes."""
    from videoworker import JobEvent, hookimpl

    seen: list[str] = []

    class Crashing:
        @hookimpl
        def videoworker_job_event(self, event: JobEvent) -> None:
            seen.append(event.status)
            raise RuntimeError("observer down")

    r = await rig(plugins={"crashing": Crashing()})
    await accept(r, "e-observer")
    assert (await r.final("e-observer")).state is JobState.DONE
    # `running` is seen only when a poll finds the job running, so the count is what was observed
    await until(
        lambda: "completed" in seen and r.hooks.plugin_errors == len(seen), 5, "each observed event to count a failure"
    )
    assert {"submitted", "completed"} <= set(seen)


# --- adoption --------------------------------------------------------------------------------


def _finished(r: Rig, job_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await r.client.poll(job_id)).status == "completed"

    return check


async def dead_row(r: Rig, request_id: str, state: JobState, **data: Any) -> None:
    """A row left in ``state`` by an instance that is gone (its lease long expired)."""
    request = make_request(request_id, model="google/veo-3.1", duration=4)
    record = JobRecord(request_id, JobState.RECEIVED, request.model, request.wire(), owner="gone-1", lease_until=0)
    await r.ledger.claim(record, None)
    path = {
        JobState.SUBMITTING: [JobState.SUBMITTING],
        JobState.SUBMITTED: [JobState.SUBMITTING, JobState.SUBMITTED],
        JobState.COMPLETED: [JobState.SUBMITTING, JobState.SUBMITTED, JobState.COMPLETED],
        JobState.STORED: [JobState.SUBMITTING, JobState.SUBMITTED, JobState.COMPLETED, JobState.STORED],
    }.get(state, [])
    job = Job(record, request)
    for step in path:
        fields = {"job_id": data.get("job_id")} if step is JobState.SUBMITTED else {}
        assert await r.ledger.transition(request_id, "gone-1", job.record.state, step, data=data or None, **fields)
        job.record.state = step


@pytest.mark.parametrize(
    ("state", "ends"),
    [
        (JobState.RECEIVED, JobState.DONE),
        (JobState.SUBMITTING, JobState.SUBMIT_UNKNOWN),
        (JobState.SUBMITTED, JobState.DONE),
        (JobState.COMPLETED, JobState.DONE),
        (JobState.STORED, JobState.DONE),
    ],
    ids=lambda s: s.value,
)
async def test_adopted_jobs_resume_with_their_states_step(rig: RigFactory, state: JobState, ends: JobState) -> None:
    """Each unfinished state is picked up where the dead owner left it, and ends in one final event."""
    r = await rig()
    data: dict[str, Any] = {"timestamps": {}}
    if state in (JobState.SUBMITTED, JobState.COMPLETED, JobState.STORED):
        job_id = (await r.client.submit({"model": "google/veo-3.1", "prompt": "adopted", "duration": 4})).id
        await until(_finished(r, job_id), 10, "the provider to finish the job")
        data.update(job_id=job_id, submitted_at=time.time(), output_count=1)
    if state is JobState.STORED:
        output = {"index": 0, "location": "file:///x", "locations": {"local": "file:///x"}, "bytes": 1}
        data["outputs"] = [{**output, "content_type": "video/mp4", "sha256": "0" * 64}]
    await dead_row(r, "adopt-1", state, **data)
    submits = r.sim.stats()["submits"]
    assert await Leases(r.settings, r.ledger, r.engine).adopt() == 1
    row = await r.final("adopt-1")
    assert row.state is ends and row.owner == r.settings.instance_id
    # only a job that never reached the provider is submitted by its adopter
    assert r.sim.stats()["submits"] - submits == (1 if state is JobState.RECEIVED else 0)
    assert len([k for k in await outbox(r, "adopt-1") if k in ("video.completed", "video.failed")]) == 1


async def test_a_job_another_instance_took_is_let_go(rig: RigFactory) -> None:
    """A lost compare-and-set (a peer adopted the job) drops it from memory without writing anything."""
    r = await rig()
    r.sim.configure(never_finish_rate=1.0)
    await accept(r, "e-stolen")
    await until(lambda: r.engine.jobs.get("e-stolen") and r.engine.jobs.get("e-stolen").record.job_id, 5, "a submit")
    await r.ledger.adopt("peer-1", time.time() + 60, [r.settings.instance_id], 10)
    await until(lambda: "e-stolen" not in r.engine.jobs, 5, "the engine to let the job go")
    row = await r.ledger.get("e-stolen")
    assert row is not None and row.owner == "peer-1" and not row.state.terminal


async def test_a_write_that_landed_unseen_is_picked_up_from_the_ledger(rig: RigFactory) -> None:
    """If the ledger is ahead of memory under our own name, the engine continues from the ledger."""
    r = await rig()
    r.sim.configure(never_finish_rate=1.0)
    await accept(r, "e-ahead")
    await until(lambda: (j := r.engine.jobs.get("e-ahead")) and j.record.state is JobState.IN_PROGRESS, 5, "polling")
    job = r.engine.jobs.get("e-ahead")
    assert job is not None
    stale = Job(JobRecord(**{**vars(job.record), "state": JobState.SUBMITTED}), job.request)
    r.engine.jobs.hold(stale)  # memory now lags the ledger, as after a lost commit answer
    await r.engine.apply(stale, Step.POLL, Move(JobState.IN_PROGRESS))
    assert "e-ahead" in r.engine.jobs and stale.record.state is JobState.IN_PROGRESS
    r.sim.configure(never_finish_rate=0.0)


async def test_finishing_a_job_leaves_a_neighbours_downloads_alone(rig: RigFactory) -> None:
    """Job `order` finishing removes its own temp folder only, never the downloads of job `order.1`."""
    from videoworker import OutputFile, StoredOutput, hookimpl

    class HoldsOrder1:
        @hookimpl(tryfirst=True)
        def videoworker_store_output(self, output: OutputFile) -> StoredOutput | None:
            if output.request_id == "order.1":
                raise RuntimeError("not yet")
            return None

    r = await rig(plugins={"holds": HoldsOrder1()}, storage_retry_seconds=60)
    neighbour = r.settings.data_dir / "tmp" / "order.1" / "0.part"
    await accept(r, "order.1")
    await until(neighbour.exists, 10, "order.1 to be downloaded (and held in storage)")
    await accept(r, "order")
    assert (await r.final("order")).state is JobState.DONE
    folder = r.settings.data_dir / "tmp" / "order"
    await until(lambda: not folder.exists() and r.engine.jobs.get("order") is None, 5, "order's folder gone")
    assert neighbour.exists(), "finishing `order` deleted the downloads of `order.1`"


async def test_a_finished_jobs_files_are_removed_off_the_event_loop(rig: RigFactory) -> None:
    """Unlinking a real video frees its blocks, which takes a while: the loop keeps turning meanwhile,
    and the job is let go only once its folder is gone."""
    r = await rig()
    clear = r.engine.ctx.workdir.clear
    removing = threading.Event()

    def slow_clear(request_id: str) -> None:
        removing.set()
        time.sleep(0.5)  # a blocking call, as an unlink of a large file is
        clear(request_id)

    r.engine.ctx.workdir.clear = slow_clear  # type: ignore[method-assign]
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    ticker = asyncio.create_task(tick())
    try:
        await accept(r, "e-slow-clear")
        await until(removing.is_set, 10, "the job to finish and its files to be removed")
        assert r.engine.jobs.get("e-slow-clear") is not None, "let go before its folder was gone"
        await until(lambda: r.engine.jobs.get("e-slow-clear") is None, 5, "the job let go after the removal")
    finally:
        ticker.cancel()
    assert not (r.settings.data_dir / "tmp" / "e-slow-clear").exists()
    assert max(gaps) < 0.3, f"the event loop stood still for {max(gaps):.2f} s"


async def test_a_submitting_record_that_landed_unseen_is_resolved_never_sent(rig: RigFactory) -> None:
    """If `submitting` is in the ledger but memory says `received`, nothing is POSTed: the job is resolved."""
    r = await rig()
    job = await r.claim("e-intent")
    me = r.settings.instance_id
    assert await r.ledger.transition("e-intent", me, JobState.RECEIVED, JobState.SUBMITTING, attempts=1)
    r.engine.accept(job.record, job.request)  # memory lags: it still says `received`
    row = await r.final("e-intent")
    assert row.state is JobState.SUBMIT_UNKNOWN
    assert r.sim.stats()["submits"] == 0


async def test_a_callback_that_beats_the_recording_of_the_submit_is_kept_for_it(rig: RigFactory) -> None:
    """A fast job on a slow ledger: its callback arrives while the submit's answer is being recorded.
    Dropping it would leave the job to the reconciliation poll (60 s here); kept, it is polled at once."""
    r = await rig(callback_public_url="http://127.0.0.1:9/cb", reconcile_interval=60)
    recording, release = asyncio.Event(), asyncio.Event()
    move = r.engine.recorder.move

    async def slow_move(job: Job, m: Move) -> bool:
        if m.to is JobState.SUBMITTED:
            recording.set()
            await release.wait()
        return await move(job, m)

    r.engine.recorder.move = slow_move  # type: ignore[method-assign]
    await accept(r, "e-early")
    await until(recording.is_set, 10, "the submit's answer in hand, not yet recorded")
    ((job_id, sim_job),) = r.sim.stats()["jobs"].items()
    await until(lambda: time.time() > sim_job["ends_at"], 5, "the job to end at the provider")
    assert r.engine.hint("e-early", job_id)  # as the callback receiver would pass it on
    release.set()
    row = await r.final("e-early", timeout=10)
    assert row.state is JobState.DONE and row.job_id == job_id


async def test_a_callback_that_comes_while_the_job_is_being_polled_is_not_lost(rig: RigFactory) -> None:
    """The poll read "in progress", the job ended, its callback came before the poll's answer was
    handled: the hinted poll goes straight to the queue, so the planner's gap that the answer sets
    (here the 60 s reconciliation) does not replace it."""
    r = await rig(callback_public_url="http://127.0.0.1:9/cb", reconcile_interval=60, poll_interval=0.05)
    r.sim.configure(job_seconds=[1.0, 1.0])
    polled, release = asyncio.Event(), asyncio.Event()
    poll = r.client.poll

    async def stale_poll(job_id: str) -> Any:
        answer = await poll(job_id)
        if answer.status != "completed" and not release.is_set():
            polled.set()
            await release.wait()  # handled only after the job ended and its callback came
        return answer

    r.client.poll = stale_poll  # type: ignore[method-assign]
    await accept(r, "e-during")
    job_id = await recorded_job_id(r, "e-during")
    assert r.engine.hint("e-during", job_id)  # an early (or forged) callback: a poll now, which sees it running
    await until(polled.is_set, 10, "a poll that saw the job running")
    sim_job = r.sim.stats()["jobs"][job_id]
    await until(lambda: time.time() > sim_job["ends_at"], 5, "the job to end at the provider")
    assert r.engine.hint("e-during", job_id)  # the real callback, while that poll is still out
    release.set()
    assert (await r.final("e-during", timeout=10)).state is JobState.DONE


def spy_moves(r: Rig, request_id: str) -> list[tuple[JobState, JobState]]:
    """The (from, to) of every move the ledger records for ``request_id`` from now on (the real ledger writes them)."""
    moves: list[tuple[JobState, JobState]] = []
    transition = r.ledger.transition

    async def spied(rid: str, owner: str, expect: JobState, new: JobState, **kwargs: Any) -> bool:
        if rid == request_id:
            moves.append((expect, new))
        return await transition(rid, owner, expect, new, **kwargs)

    r.ledger.transition = spied  # type: ignore[method-assign]
    return moves


async def test_a_polls_completed_is_written_with_the_final_move(rig: RigFactory) -> None:
    """The happy path writes no `completed` row of its own: `done` comes straight from the polled state,
    and carries what the poll found (history entry, output count, usage)."""
    r = await rig()
    r.sim.configure(job_seconds=[1.0, 1.2])
    moves = spy_moves(r, "e-held")
    await accept(r, "e-held")
    row = await r.final("e-held")
    assert row.state is JobState.DONE
    assert JobState.COMPLETED not in [new for _, new in moves], moves
    assert moves[-1] in {(JobState.IN_PROGRESS, JobState.DONE), (JobState.SUBMITTED, JobState.DONE)}
    states = [entry["state"] for entry in row.data["history"]]
    assert states[-2:] == ["completed", "done"] and row.data["output_count"] == 1
    assert "completed" in row.data["timestamps"] and row.data["final"]["status"] == "completed"


async def test_a_delivery_that_must_wait_writes_the_held_completed_first(rig: RigFactory) -> None:
    """A storage retry records `completed` before it waits (status shows it; a restart resumes at deliver)."""
    from videoworker import OutputFile, StoredOutput, hookimpl

    seen: list[JobState | None] = []
    r: Rig

    class FailsOnce:
        @hookimpl(tryfirst=True)
        async def videoworker_store_output(self, output: OutputFile) -> StoredOutput | None:
            row = await r.ledger.get(output.request_id)
            seen.append(row.state if row else None)
            if len(seen) == 1:
                raise RuntimeError("bucket unreachable")
            return None

    r = await rig(plugins={"fails-once": FailsOnce()}, storage_retry_seconds=60, retry_backoff_base=0.01)
    moves = spy_moves(r, "e-wait")
    await accept(r, "e-wait")
    row = await r.final("e-wait")
    assert row.state is JobState.DONE and len(seen) == 2
    assert seen[0] is not JobState.COMPLETED and seen[1] is JobState.COMPLETED
    assert moves[-1] == (JobState.COMPLETED, JobState.DONE)
    assert [entry["state"] for entry in row.data["history"]].count("completed") == 1


async def test_a_delivery_that_fails_for_good_fails_from_the_polled_state(rig: RigFactory) -> None:
    """A download refused for good ends the job `failed` straight from the polled state, with what the poll found."""
    r = await rig()
    r.sim.configure(hostile=["content_gzip"])  # refused for good: a coded body
    moves = spy_moves(r, "e-gone")
    await accept(r, "e-gone")
    row = await r.final("e-gone")
    assert row.state is JobState.FAILED and row.data["final"]["error"]["code"] == "download_failed"
    assert moves[-1][1] is JobState.FAILED and JobState.COMPLETED not in [new for _, new in moves]
    assert "completed" in [entry["state"] for entry in row.data["history"]] and row.data["output_count"] == 1


async def test_a_delivery_that_crashes_writes_the_held_completed_before_it_waits(
    rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deliver step that raises (a bug, not a refusal) records `completed` before its retry waits, as a retry does.

    Before, the move stayed in memory only: the ledger said `submitted` through every retry.
    """
    seen: list[JobState | None] = []
    deliver = steps.STEPS[Step.DELIVER]
    r: Rig

    async def crashes_once(job: Job, ctx: Any) -> Any:
        row = await r.ledger.get(job.id)
        seen.append(row.state if row else None)
        if len(seen) == 1:
            raise RuntimeError("a bug in delivery")
        return await deliver(job, ctx)

    monkeypatch.setitem(steps.STEPS, Step.DELIVER, crashes_once)
    r = await rig()
    await accept(r, "e-crash")
    row = await r.final("e-crash", timeout=15)
    assert row.state is JobState.DONE and len(seen) == 2
    assert seen[0] is not JobState.COMPLETED and seen[1] is JobState.COMPLETED


async def test_the_stop_records_a_held_completed(rig: RigFactory) -> None:
    """A delivery cut by the stop leaves the job `completed` in the ledger: the next owner does not poll again."""
    from videoworker import OutputFile, StoredOutput, hookimpl

    entered = asyncio.Event()

    class Hangs:
        @hookimpl(tryfirst=True)
        async def videoworker_store_output(self, output: OutputFile) -> StoredOutput | None:
            entered.set()
            await asyncio.Event().wait()
            return None

    r = await rig(plugins={"hangs": Hangs()})
    await accept(r, "e-stop")
    await asyncio.wait_for(entered.wait(), 15)
    row = await r.ledger.get("e-stop")
    assert row is not None and row.state is not JobState.COMPLETED  # held in memory only
    await r.engine.stop(0)
    assert await r.engine.record_held() == 1
    row = await r.ledger.get("e-stop")
    assert row is not None and row.state is JobState.COMPLETED and row.data["output_count"] == 1


async def test_the_stop_records_every_held_move_it_can_though_one_write_fails(rig: RigFactory) -> None:
    """One held move the ledger refuses is logged and left to a poll; the others are still written."""
    from videoworker import OutputFile, StoredOutput, hookimpl

    entered: set[str] = set()

    class Hangs:
        @hookimpl(tryfirst=True)
        async def videoworker_store_output(self, output: OutputFile) -> StoredOutput | None:
            entered.add(output.request_id)
            await asyncio.Event().wait()
            return None

    r = await rig(plugins={"hangs": Hangs()})
    for request_id in ("e-held-1", "e-held-2", "e-held-3"):
        await accept(r, request_id)
    await until(lambda: len(entered) == 3, 15, "three deliveries under way")
    transition = r.ledger.transition

    async def refuses_one(request_id: str, *args: Any, **kwargs: Any) -> bool:
        if request_id == "e-held-2":
            raise OSError("disk I/O error")
        return await transition(request_id, *args, **kwargs)

    r.ledger.transition = refuses_one  # type: ignore[method-assign]
    await r.engine.stop(0)
    with structlog.testing.capture_logs() as logs:
        assert await r.engine.record_held() == 2
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["request_id"], e["error"]) for e in warned] == [("e-held-2", "OSError: disk I/O error")]
    for request_id, state in (("e-held-1", JobState.COMPLETED), ("e-held-2", None), ("e-held-3", JobState.COMPLETED)):
        row = await r.ledger.get(request_id)
        assert row is not None and (row.state is state if state else row.state is not JobState.COMPLETED)


async def test_the_stop_does_not_wait_for_a_store_whose_thread_works_on(rig: RigFactory) -> None:
    """A store hook in ``run_in_thread`` (the local store, a plugin) cannot be cut short, so the
    engine's stop lets it go after a moment rather than spend the stop's whole budget on it."""
    import threading

    from videoworker import OutputFile, StoredOutput, hookimpl, run_in_thread

    started, gate = threading.Event(), threading.Event()

    class Copies:
        @hookimpl(tryfirst=True)
        async def videoworker_store_output(self, output: OutputFile) -> StoredOutput | None:
            await run_in_thread(lambda: (started.set(), gate.wait(10)))
            return None

    r = await rig(plugins={"copies": Copies()})
    await accept(r, "e-copying")
    await until(started.is_set, 15, "the store's thread to start")
    try:
        await asyncio.wait_for(r.engine.stop(0), 5)
        assert not gate.is_set() and started.is_set()  # the thread was still at work when the stop moved on
        assert r.engine.busy() == {"e-copying"}  # so the stop keeps its lease
        assert await r.engine.record_held() == 1
    finally:
        gate.set()
    await until(lambda: not r.engine.busy(), 5, "the let-go step to end with its thread")


async def test_a_hint_while_a_poll_is_out_polls_after_it_and_the_job_is_delivered_once(rig: RigFactory) -> None:
    """A callback while a poll is out asks for another poll: it runs once the first has ended, never
    beside it. Before, both ran at once; when both found the job completed, two deliveries stored the
    same output side by side, and the second poll's end unmarked the first delivery as busy, so the
    stop released its lease while it still copied (two reviews found these)."""
    import threading

    from videoworker import OutputFile, StoredOutput, hookimpl, run_in_thread

    copying, gate = threading.Event(), threading.Event()
    stores: list[str] = []

    class Copies:
        @hookimpl(tryfirst=True)
        async def videoworker_store_output(self, output: OutputFile) -> StoredOutput | None:
            stores.append(output.request_id)
            await run_in_thread(lambda: (copying.set(), gate.wait(10)))
            return None

    r = await rig(plugins={"copies": Copies()}, callback_public_url="http://127.0.0.1:9/cb", reconcile_interval=60)
    r.sim.configure(job_seconds=[1.0, 1.0])
    first, polls = asyncio.Event(), []
    poll = r.client.poll

    async def paced_poll(job_id: str) -> Any:
        polls.append(job_id)
        await first.wait()
        return await poll(job_id)

    r.client.poll = paced_poll  # type: ignore[method-assign]
    await accept(r, "e-twice")
    job_id = await recorded_job_id(r, "e-twice")
    assert r.engine.hint("e-twice", job_id)  # a poll now
    await until(lambda: len(polls) == 1, 5, "the first poll")
    job = r.engine.jobs.get("e-twice")
    assert job is not None and r.engine.hint("e-twice", job_id)  # another, while the first is out
    await until(lambda: job.rerun is Step.POLL, 5, "the second poll to wait for the first")
    assert len(polls) == 1
    sim_job = r.sim.stats()["jobs"][job_id]
    await until(lambda: time.time() > sim_job["ends_at"], 5, "the job to end at the provider")
    first.set()
    try:
        await until(copying.is_set, 10, "the delivery's copy")
        assert r.engine.busy() == {"e-twice"}  # so a stop now keeps its lease
    finally:
        gate.set()
    assert (await r.final("e-twice", timeout=10)).state is JobState.DONE
    assert stores == ["e-twice"] and len(polls) == 1  # the waiting poll found the job delivered and did nothing


async def test_a_callback_after_the_stop_starts_nothing(rig: RigFactory) -> None:
    """A hint that arrives while the daemon stops is refused: no reconciliation writes to a closing ledger."""
    r = await rig(callback_public_url="http://127.0.0.1:9/cb", reconcile_interval=60)
    r.sim.configure(error_rate=1.0, error_statuses=[502])
    await accept(r, "e-late")

    async def parked() -> bool:
        row = await r.ledger.get("e-late")
        return row is not None and row.state is JobState.AWAITING_CALLBACK

    await until(parked, 10, "the unknown submit parked for its callback")
    await r.engine.stop(0)
    assert not r.engine.hint("e-late", "job-from-a-callback", reconcile=True)
    await asyncio.sleep(0)  # a task started by the hint would run here
    row = await r.ledger.get("e-late")
    assert row is not None and row.state is JobState.AWAITING_CALLBACK and row.job_id is None


async def test_finished_jobs_waiting_for_a_delivery_worker_are_counted(rig: RigFactory) -> None:
    """`videoworker_steps_waiting{step="deliver"}` shows finished jobs queueing for a worker (the ledger cannot)."""
    from prometheus_client import REGISTRY

    from videoworker import OutputFile, StoredOutput, hookimpl

    release = asyncio.Event()

    class Slow:
        @hookimpl(tryfirst=True)
        async def videoworker_store_output(self, output: OutputFile) -> StoredOutput | None:
            await release.wait()
            return None

    def waiting() -> float | None:
        return REGISTRY.get_sample_value("videoworker_steps_waiting", {"step": "deliver"})

    r = await rig(plugins={"slow": Slow()}, max_concurrent_downloads=1)
    await accept(r, "e-first")
    await accept(r, "e-second")
    await until(lambda: waiting() == 1, 10, "the second job to wait for the one delivery worker")
    release.set()
    assert (await r.final("e-first")).state is JobState.DONE and (await r.final("e-second")).state is JobState.DONE
    assert waiting() == 0
