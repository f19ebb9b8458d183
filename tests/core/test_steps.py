"""Each state's step, called directly with a real SQLite ledger and the real simulator: every outcome it can return.

The steps only decide; these tests record the outcomes with the engine's recorder
themselves, so every state and every answer the provider can give is covered without
a broker and without timing assumptions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from tests.core.conftest import Rig
from videoworker import OutputFile, StoredOutput, hookimpl
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Again, Move, Outcome, Release
from videoworker.core.states import JobState, Step
from videoworker.core.steps import STEPS
from videoworker.testing.recorder import until

RigFactory = Callable[..., Awaitable[Rig]]


async def run(r: Rig, job: Job, step: Step) -> Outcome:
    return await STEPS[step](job, r.engine.ctx)


async def record(r: Rig, job: Job, outcome: Outcome) -> None:
    assert isinstance(outcome, Move), outcome
    assert await r.engine.recorder.move(job, outcome)
    job.moved()


async def advanced_to(r: Rig, job: Job, state: JobState) -> None:
    """Drive ``job`` with its steps until it is in ``state``."""
    route = {
        JobState.SUBMITTED: [Step.SUBMIT],
        JobState.COMPLETED: [Step.SUBMIT, Step.POLL],
    }[state]
    for step in route:
        while True:
            outcome = await run(r, job, step)
            if isinstance(outcome, Move):
                break
            assert isinstance(outcome, Again), outcome
        if outcome.to is JobState.IN_PROGRESS:
            await record(r, job, outcome)
            outcome = await _until_end(r, job)
        await record(r, job, outcome)
    assert job.record.state is state


async def _until_end(r: Rig, job: Job) -> Move:
    """Poll (recording `in_progress` on the way) until the provider's answer ends the polling."""
    while (outcome := await _until_move(r, job)).to is JobState.IN_PROGRESS:
        await record(r, job, outcome)
    return outcome


def _all_ended(r: Rig) -> bool:
    return all(j["status"] == "completed" for j in r.sim.stats()["jobs"].values())


async def _until_move(r: Rig, job: Job) -> Move:
    for _ in range(200):
        outcome = await run(r, job, Step.POLL)
        if isinstance(outcome, Move):
            return outcome
        await asyncio.sleep(0.01)
    raise AssertionError("the simulator never finished the job")


# --- submit -----------------------------------------------------------------------------------


async def test_submit_records_submitting_then_returns_submitted_with_the_job_id(rig: RigFactory) -> None:
    """The POST happens only after `submitting` is durable; the outcome carries the provider's job id."""
    r = await rig()
    job = await r.claim("s-ok")
    outcome = await run(r, job, Step.SUBMIT)
    assert isinstance(outcome, Move) and outcome.to is JobState.SUBMITTED
    assert outcome.job_id and outcome.job_id.startswith("gen-")
    assert outcome.data is not None and "submitted" in outcome.data["timestamps"]
    row = await r.ledger.get("s-ok")
    assert row is not None and row.state is JobState.SUBMITTING and row.attempts == 1
    assert r.sim.stats()["submits"] == 1


async def test_a_submit_slot_covers_the_submitting_record_and_the_post_not_the_answers_record(
    rig: RigFactory,
) -> None:
    """With one slot, a second submit writes nothing until the first POST has its answer; then it goes,
    although the first answer is not recorded yet (so at most max_concurrent_submits are ever in doubt)."""
    r = await rig(max_concurrent_submits=1)
    real, gate, posting = r.engine.ctx.provider, asyncio.Event(), asyncio.Event()

    class HeldProvider:
        """The real client, except that the first POST waits for the test's word."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        async def submit(self, body: dict[str, Any]) -> Any:
            if not posting.is_set():
                posting.set()
                await gate.wait()
            return await real.submit(body)

    r.engine.ctx.provider = HeldProvider()  # type: ignore[assignment]
    first, second = await r.claim("slot-1"), await r.claim("slot-2")
    running = asyncio.create_task(run(r, first, Step.SUBMIT))
    await asyncio.wait_for(posting.wait(), 5)
    waiting = asyncio.create_task(run(r, second, Step.SUBMIT))
    with pytest.raises(TimeoutError):  # without the slot it would record and POST well within this
        await asyncio.wait_for(asyncio.shield(waiting), 1.0)
    row = await r.ledger.get("slot-2")
    assert row is not None and row.state is JobState.RECEIVED
    gate.set()
    outcome = await running  # the first has its answer, not yet recorded
    assert isinstance(outcome, Move) and outcome.to is JobState.SUBMITTED
    assert isinstance(await asyncio.wait_for(waiting, 10), Move) and r.sim.stats()["submits"] == 2
    first_row = await r.ledger.get("slot-1")
    assert first_row is not None and first_row.state is JobState.SUBMITTING  # the second went all the same


async def test_submit_not_taken_goes_back_to_received_after_retry_after(rig: RigFactory) -> None:
    """A 429 means nothing was created: back to `received`, no sooner than Retry-After."""
    r = await rig()
    r.sim.configure(error_rate=1.0, error_statuses=[429], retry_after=3)
    outcome = await run(r, await r.claim("s-429"), Step.SUBMIT)
    assert isinstance(outcome, Move) and outcome.to is JobState.RECEIVED and outcome.after >= 3


async def test_submit_fails_provider_unavailable_after_max_attempts(rig: RigFactory) -> None:
    """The last allowed attempt that is not taken ends the job, retryable."""
    r = await rig(submit_max_attempts=1)
    r.sim.configure(error_rate=1.0, error_statuses=[503])
    outcome = await run(r, await r.claim("s-503"), Step.SUBMIT)
    assert isinstance(outcome, Move) and outcome.to is JobState.FAILED
    assert outcome.error is not None and outcome.error["code"] == "provider_unavailable" and outcome.error["retryable"]


@pytest.mark.parametrize(("status", "code"), [(400, "provider_rejected"), (402, "over_budget")])
async def test_submit_refused_fails_with_a_stable_code(rig: RigFactory, status: int, code: str) -> None:
    """A refusal cannot be helped by retrying: the job fails with the code the status maps to."""
    r = await rig()
    r.sim.configure(error_rate=1.0, error_statuses=[status])
    outcome = await run(r, await r.claim(f"s-{status}"), Step.SUBMIT)
    assert isinstance(outcome, Move) and outcome.to is JobState.FAILED
    assert outcome.error is not None and outcome.error["code"] == code


@pytest.mark.parametrize("knob", [{"error_statuses": [502]}, {"submit_reset_rate": 1.0}])
async def test_submit_with_an_unknown_outcome_is_parked_never_retried(rig: RigFactory, knob: dict[str, Any]) -> None:
    """A 502 or a cut connection after sending may hide a charged job: `submit_unknown`, never a retry."""
    r = await rig()
    r.sim.configure(**({"error_rate": 1.0} if "error_statuses" in knob else {}), **knob)
    outcome = await run(r, await r.claim("s-unknown"), Step.SUBMIT)
    assert isinstance(outcome, Move) and outcome.to is JobState.SUBMIT_UNKNOWN
    assert outcome.error is not None and outcome.error["code"] == "submit_outcome_unknown"


async def test_submit_of_a_job_another_instance_took_is_released(rig: RigFactory) -> None:
    """If the write-ahead record loses its compare-and-set, nothing is sent and the job is let go."""
    r = await rig()
    job = await r.claim("s-lost")
    await r.ledger.adopt("someone-else", time.time() + 60, ["core-0"], 10)
    assert isinstance(await run(r, job, Step.SUBMIT), Release)
    assert r.sim.stats()["submits"] == 0


# --- resolve ----------------------------------------------------------------------------------


async def test_resolve_reports_a_submit_in_doubt_as_unknown(rig: RigFactory) -> None:
    """A job found in `submitting` may have been charged: it is parked as unknown, not resubmitted."""
    r = await rig()
    job = await r.claim("r-doubt")
    assert await r.engine.recorder.intend(job, Move(JobState.SUBMITTING, attempts=1))
    outcome = await run(r, job, Step.RESOLVE)
    assert isinstance(outcome, Move) and outcome.to is JobState.SUBMIT_UNKNOWN


async def test_resolve_resubmits_when_the_policy_says_so(rig: RigFactory) -> None:
    """With resubmit_unknown the job goes back to `received` (and may be paid twice)."""
    r = await rig(resubmit_unknown=True)
    job = await r.claim("r-again")
    assert await r.engine.recorder.intend(job, Move(JobState.SUBMITTING, attempts=1))
    outcome = await run(r, job, Step.RESOLVE)
    assert isinstance(outcome, Move) and outcome.to is JobState.RECEIVED


# --- poll -------------------------------------------------------------------------------------


async def test_poll_of_a_running_job_moves_to_in_progress_once_then_waits(rig: RigFactory) -> None:
    """The first `in_progress` answer is recorded; later ones only set the next timer."""
    r = await rig()
    r.sim.configure(never_finish_rate=1.0)
    job = await r.claim("p-running")
    await advanced_to(r, job, JobState.SUBMITTED)
    first = await _until_move(r, job)  # "pending" for a moment, then "in_progress"
    assert first.to is JobState.IN_PROGRESS and first.after > 0
    await record(r, job, first)
    again = await run(r, job, Step.POLL)
    assert isinstance(again, Again) and r.settings.poll_interval * 0.8 <= again.after <= r.settings.poll_max_interval
    assert job.polls >= 2


async def test_poll_of_a_finished_job_moves_to_completed_with_what_the_provider_reported(rig: RigFactory) -> None:
    """Completed: output count, usage and generation id are recorded for the deliver step."""
    r = await rig()
    r.sim.configure(outputs=2)
    job = await r.claim("p-done")
    await advanced_to(r, job, JobState.SUBMITTED)
    outcome = await _until_end(r, job)
    assert outcome.to is JobState.COMPLETED and outcome.data is not None
    assert outcome.data["output_count"] == 2 and outcome.data["usage"]["cost"] > 0
    assert "completed" in outcome.data["timestamps"]


async def test_poll_of_a_failed_job_fails_it(rig: RigFactory) -> None:
    """The provider's failed status ends the job with provider_failed and its message."""
    r = await rig()
    r.sim.configure(failure_rate=1.0)
    job = await r.claim("p-failed")
    await advanced_to(r, job, JobState.SUBMITTED)
    outcome = await _until_end(r, job)
    assert outcome.to is JobState.FAILED and outcome.error is not None
    assert outcome.error["code"] == "provider_failed"


async def test_poll_past_job_timeout_fails_with_timeout(rig: RigFactory) -> None:
    """A job older than job_timeout is polled once more, and fails with timeout if still running."""
    r = await rig(job_timeout=0.01)
    r.sim.configure(never_finish_rate=1.0)
    job = await r.claim("p-late")
    await advanced_to(r, job, JobState.SUBMITTED)
    polls = r.sim.stats()["polls"]
    await asyncio.sleep(0.02)
    outcome = await run(r, job, Step.POLL)
    assert isinstance(outcome, Move) and outcome.error is not None and outcome.error["code"] == "timeout"
    assert r.sim.stats()["polls"] == polls + 1


async def test_a_job_that_finished_is_delivered_even_when_found_past_job_timeout(rig: RigFactory) -> None:
    """The provider charged for it: a video found done after job_timeout is still completed, not timed out."""
    r = await rig(job_timeout=0.3)
    job = await r.claim("p-paid")
    await advanced_to(r, job, JobState.SUBMITTED)
    await until(lambda: _all_ended(r), timeout=10, what="the job ends")
    submitted_at = float(job.record.data["submitted_at"])
    await until(lambda: time.time() - submitted_at > 0.35, 5, "job_timeout to pass")
    outcome = await run(r, job, Step.POLL)
    assert isinstance(outcome, Move) and outcome.to is JobState.COMPLETED, outcome


async def test_gaps_never_run_far_past_job_timeout(rig: RigFactory) -> None:
    """Whatever the planner learned, the last poll comes about when job_timeout runs out."""
    r = await rig(job_timeout=5.0)
    r.sim.configure(never_finish_rate=1.0)
    for _ in range(10):
        r.engine.ctx.planner.learn("google/veo-3.1", 600.0, lower=600.0)  # a window far past the timeout
    job = await r.claim("p-capped")
    await advanced_to(r, job, JobState.SUBMITTED)
    outcome = await _until_move(r, job)  # the in_progress move, with the gap to the next poll
    assert outcome.to is JobState.IN_PROGRESS and outcome.after <= 5.0 + r.settings.poll_interval


async def test_a_job_adopted_from_a_former_life_teaches_the_planner_nothing_it_cannot_know(rig: RigFactory) -> None:
    """Found done at its first poll after adoption, a job ended at some unknown time: no duration is learned."""
    r = await rig()
    job = await r.claim("p-adopted")
    await advanced_to(r, job, JobState.SUBMITTED)
    job.adopted = True
    await until(lambda: _all_ended(r), timeout=10, what="the job ends")
    outcome = await run(r, job, Step.POLL)
    assert isinstance(outcome, Move) and outcome.to is JobState.COMPLETED
    assert r.engine.ctx.planner.expected(job.request.model) is None


@pytest.mark.parametrize("job_timeout", [3600.0, 1.0], ids=["far-from-timeout", "near-timeout"])
async def test_poll_answered_429_waits_at_least_retry_after(rig: RigFactory, job_timeout: float) -> None:
    """A busy provider is polled again no sooner than it asked, even when job_timeout is close."""
    r = await rig(job_timeout=job_timeout)
    job = await r.claim("p-busy")
    await advanced_to(r, job, JobState.SUBMITTED)
    r.sim.configure(error_rate=1.0, error_statuses=[429], retry_after=2)
    outcome = await run(r, job, Step.POLL)
    assert isinstance(outcome, Again) and outcome.after >= 2


# --- deliver and finish -----------------------------------------------------------------------


async def test_deliver_downloads_stores_and_returns_done_with_the_outputs(rig: RigFactory) -> None:
    """Every output is downloaded into the job's temp folder, stored, and described for the event."""
    r = await rig()
    r.sim.configure(outputs=2)
    job = await r.claim("d-ok")
    await advanced_to(r, job, JobState.COMPLETED)
    outcome = await run(r, job, Step.DELIVER)
    assert isinstance(outcome, Move) and outcome.to is JobState.DONE and outcome.data is not None
    outputs = outcome.data["outputs"]
    assert [o["index"] for o in outputs] == [0, 1]
    assert all(o["location"].startswith("file://") and o["bytes"] > 0 and len(o["sha256"]) == 64 for o in outputs)
    assert sorted(p.name for p in (r.settings.data_dir / "tmp" / "d-ok").iterdir()) == ["0.part", "1.part"]


async def test_deliver_retries_a_cut_download_then_fails_download_failed(rig: RigFactory) -> None:
    """Truncated downloads are retried up to download_max_attempts, then the job fails retryable."""
    r = await rig(download_max_attempts=2)
    job = await r.claim("d-cut")
    await advanced_to(r, job, JobState.COMPLETED)
    r.sim.configure(truncate_rate=1.0)
    first = await run(r, job, Step.DELIVER)
    assert isinstance(first, Again)
    second = await run(r, job, Step.DELIVER)
    assert isinstance(second, Move) and second.error is not None
    assert second.error["code"] == "download_failed" and second.error["retryable"]


async def test_storage_failures_are_retried_without_downloading_again(rig: RigFactory) -> None:
    """A failing store is retried with the same verified download; after the window it fails storage_failed."""
    calls: list[int] = []

    class Down:
        @hookimpl(tryfirst=True)
        def videoworker_store_output(self, output: OutputFile) -> StoredOutput:
            calls.append(output.index)
            raise RuntimeError("bucket unreachable")

    r = await rig(plugins={"down": Down()}, storage_retry_seconds=0)  # retried once, then the window is over
    job = await r.claim("d-store")
    await advanced_to(r, job, JobState.COMPLETED)
    downloads = r.sim.stats()["downloads"]
    first = await run(r, job, Step.DELIVER)
    assert isinstance(first, Again)
    last = await run(r, job, Step.DELIVER)
    assert isinstance(last, Move) and last.error is not None and last.error["code"] == "storage_failed"
    assert len(calls) == 2
    assert r.sim.stats()["downloads"] == downloads + 1  # the second round reused the first download


async def test_finish_returns_done(rig: RigFactory) -> None:
    """A job an earlier version left in ``stored``: its last step records the final completed event."""
    r = await rig()
    job = await r.claim("f-done")
    await advanced_to(r, job, JobState.COMPLETED)
    delivered = await run(r, job, Step.DELIVER)
    assert isinstance(delivered, Move)
    await record(r, job, replace(delivered, to=JobState.STORED))  # as an earlier version recorded it
    outcome = await run(r, job, Step.FINISH)
    assert isinstance(outcome, Move) and outcome.to is JobState.DONE and outcome.error is None
