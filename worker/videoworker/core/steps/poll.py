"""The poll step (``submitted``, ``in_progress``): ask the provider, and move only when something changed.

A poll that changes nothing writes nothing: it only sets the job's next timer, spaced
by the planner (:mod:`videoworker.core.polling`: densely where the model's jobs
usually end, never sooner than the provider's ``Retry-After``).
"""

from __future__ import annotations

import time

from videoworker import metrics
from videoworker.core.budget import actual_cost
from videoworker.core.context import StepContext
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Again, Move, Outcome, fail
from videoworker.core.ports import ProviderJob
from videoworker.core.states import JobState
from videoworker.core.steps.submit import stamp
from videoworker.errors import PermanentError, RetryableError

#: The provider's terminal statuses other than completed, and the stable code each fails with.
_PROVIDER_FAILURES = {"failed": "provider_failed", "cancelled": "provider_cancelled", "expired": "provider_expired"}


async def poll(job: Job, ctx: StepContext) -> Outcome:
    """``submitted`` / ``in_progress``: GET the job and return the move its status calls for."""
    record = job.record
    if record.job_id is None:
        return fail("provider_failed", "the ledger holds no provider job id for this job")
    hinted, job.hinted = job.hinted, False  # a callback arriving from now on asks for another poll
    elapsed = time.time() - float(record.data.get("submitted_at", time.time()))
    # past job_timeout the job is still polled once: a video that finished in time is paid for
    timed_out = elapsed > ctx.settings.job_timeout
    try:
        answer = await ctx.provider.poll(record.job_id)
    except RetryableError as exc:
        metrics.POLLS.labels(outcome="retry").inc()
        return _timeout(ctx) if timed_out else Again(_gap(job, ctx, elapsed, exc.retry_after))
    except PermanentError as exc:
        return fail("provider_failed", f"polling the job failed ({exc.status}): {exc.message}")
    metrics.POLLS.labels(outcome=answer.status).inc()
    job.polls += 1
    if answer.status == "completed":
        # a callback said it just ended; otherwise it ended after the last poll that saw it
        # running (unknown for a job adopted from a former life: then it teaches nothing)
        lower = elapsed if hinted else job.running_at
        return _completed(job, ctx, answer, elapsed, lower, learn=lower is not None or not job.adopted)
    if answer.status in _PROVIDER_FAILURES:
        return fail(_PROVIDER_FAILURES[answer.status], answer.error or f"the provider reports {answer.status}")
    if timed_out:
        return _timeout(ctx)
    job.running_at = elapsed
    if answer.status == "in_progress" and record.state is JobState.SUBMITTED:
        return Move(JobState.IN_PROGRESS, after=_gap(job, ctx, elapsed))
    return Again(_gap(job, ctx, elapsed))


def _timeout(ctx: StepContext) -> Move:
    return fail("timeout", f"the job did not finish within job_timeout={ctx.settings.job_timeout:g}s")


def _gap(job: Job, ctx: StepContext, elapsed: float, retry_after: float | None = None) -> float:
    """The planner's gap, but never much past ``job_timeout`` (the last poll comes when it runs
    out), and never sooner than the provider's ``Retry-After``, which wins over both."""
    gap = ctx.planner.next_gap(job.request.model, elapsed, job.polls)
    gap = min(gap, max(ctx.settings.job_timeout - elapsed, 0) + ctx.settings.poll_interval)
    return max(gap, retry_after) if retry_after is not None else gap


def _completed(
    job: Job, ctx: StepContext, answer: ProviderJob, elapsed: float, lower: float | None, *, learn: bool
) -> Move:
    """The provider finished: learn how long the model took, record what it reported, deliver next."""
    model = job.request.model
    if learn:
        ctx.planner.learn(model, elapsed, lower=lower)
    metrics.JOB_DURATION.labels(model=model).observe(elapsed)
    if (cost := actual_cost(answer.usage.model_dump() if answer.usage else None)) is not None:
        metrics.COST.labels(model=model).inc(cost)
    data = stamp(job.record.data, "completed")
    usage = answer.usage.model_dump() if answer.usage is not None else None
    data.update(generation_id=answer.generation_id, output_count=max(1, len(answer.unsigned_urls)), usage=usage)
    data["cost"] = {**data.get("cost", {}), "actual_usd": actual_cost(usage)}
    return Move(JobState.COMPLETED, data=data)
