"""The submit step (``received``) and the resolve step (``submitting`` found after a crash).

The POST costs money and carries no idempotency key, so ``submitting`` is recorded
first. Whatever answer the provider gives becomes exactly one outcome; an answer that
may hide an accepted (and charged) job becomes ``submit_unknown``, never a resubmit.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import structlog

from videoworker import metrics
from videoworker.contract.events import iso
from videoworker.core import budget
from videoworker.core.context import StepContext
from videoworker.core.crashpoints import crashpoint
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Again, Move, Outcome, Release, fail
from videoworker.core.states import JobState
from videoworker.errors import OverBudget, PermanentError, RetryableError

log = structlog.get_logger("videoworker.steps")

#: Stable failure codes for submit refusals whose HTTP status says more than "rejected".
_REFUSALS = {402: "over_budget", 401: "provider_unauthorized", 403: "provider_rejected"}


async def submit(job: Job, ctx: StepContext) -> Outcome:
    """``received``: record ``submitting``, POST the request, and turn the answer into the next move."""
    attempts = job.record.attempts + 1
    estimate = await ctx.hooks.cost_estimate(job.request, await ctx.catalogue())
    if estimate is not None:
        ctx.daily_limit = estimate.daily_limit_usd
    data, reservation = budget.reserve(job.record.data, estimate)
    model = job.request.model
    # A slot covers the `submitting` record and the POST, not the record of the answer: the
    # next submit need not wait for that commit, and no more than the limit are ever sent
    # or about to be (what a crash leaves as unknown).
    async with ctx.submit_slots:
        crashpoint("before_post")
        try:
            if not await ctx.intend(job, Move(JobState.SUBMITTING, data=data, attempts=attempts, budget=reservation)):
                return Release()
        except OverBudget as exc:  # nothing was written: no reservation to settle later
            log.warning("submit refused by the daily budget", reason=str(exc))
            return replace(fail("over_budget", str(exc)), data={**job.record.data, "cost": data["cost"]})
        try:
            answer = await ctx.provider.submit(_body(job, ctx))
        except RetryableError as exc:
            return _not_taken(job, ctx, exc, attempts)
        except PermanentError as exc:
            metrics.SUBMITS.labels(model=model, outcome="rejected").inc()
            code = _REFUSALS.get(exc.status or 0, "provider_rejected")
            refused = fail(code, f"OpenRouter refused the submit ({exc.status}): {exc.message}")
            data, change = budget.release(job.record.data)  # a refusal is not charged
            return replace(refused, data=data, budget=change)
        except Exception as exc:  # noqa: BLE001 - AmbiguousSubmit, or anything unforeseen after sending
            status = getattr(exc, "status", None) or "no answer"
            return unknown(job, ctx, f"submit outcome unknown ({status}): {getattr(exc, 'message', None) or exc}")
    crashpoint("after_post")
    metrics.SUBMITS.labels(model=model, outcome="accepted").inc()
    data = stamp(job.record.data, "submitted")
    data["submitted_at"] = time.time()
    return Move(JobState.SUBMITTED, data=data, job_id=answer.id, after=ctx.planner.next_gap(model, 0, 0))


async def resolve(job: Job, ctx: StepContext) -> Outcome:
    """``submitting`` found after a crash: the POST may have been charged, so report it (or resubmit, by policy)."""
    if ctx.settings.resubmit_unknown:
        log.warning("resubmitting a job whose first submit may have been charged (resubmit_unknown=true)")
        return Move(JobState.RECEIVED)
    return unknown(job, ctx, "the daemon stopped between sending the submit and recording its job id")


async def await_callback(job: Job, ctx: StepContext) -> Outcome:
    """``awaiting_callback``: wait until ``job_timeout`` after the submit (a callback may name the job), then report."""
    left = float(job.record.data.get("unknown_until", 0)) - time.time()
    if left > 0:
        return Again(min(left, ctx.settings.reconcile_interval))
    message = str(job.record.data.get("unknown_reason") or "submit outcome unknown")
    return _alert(job.request.model, f"{message}; no callback named a job within job_timeout")


def _body(job: Job, ctx: StepContext) -> dict[str, Any]:
    """The POST body; with callbacks on, ``callback_url`` names the request, so even an unanswered submit is found."""
    body = job.request.provider_body()
    base = ctx.settings.callback_public_url
    if base is not None:
        body["callback_url"] = f"{base}/{quote(job.id, safe='')}"
    return body


def unknown(job: Job, ctx: StepContext, message: str) -> Move:
    """The submit may have been accepted and charged: never resubmit silently.

    With callbacks on, the request id in the callback URL lets the provider's callback name
    the job, so the job waits for it (``awaiting_callback``, no event) until ``job_timeout``
    after the submit. Otherwise it is parked and reported at once.
    """
    if ctx.settings.callback_public_url is None:
        return _alert(job.request.model, message)
    log.warning("submit outcome unknown; waiting for its callback to name the job", reason=message)
    until = time.time() + ctx.settings.job_timeout
    data = {**job.record.data, "unknown_until": until, "unknown_reason": message}
    return Move(JobState.AWAITING_CALLBACK, data=data, after=ctx.settings.job_timeout)


def _alert(model: str, message: str) -> Move:
    """Park the job as ``submit_unknown`` with its failed event, and alert."""
    metrics.SUBMIT_UNKNOWN.inc()
    metrics.SUBMITS.labels(model=model, outcome="unknown").inc()
    log.error(
        "ALERT: submit outcome unknown; the provider may have charged it; not resubmitting",
        alert="submit_outcome_unknown",
    )
    return fail("submit_outcome_unknown", message, to=JobState.SUBMIT_UNKNOWN)


def stamp(data: dict[str, Any], moment: str) -> dict[str, Any]:
    """A copy of a job's data with ``timestamps[moment]`` set to now."""
    timestamps = data.get("timestamps")
    return {**data, "timestamps": {**(timestamps if isinstance(timestamps, dict) else {}), moment: iso()}}


def _not_taken(job: Job, ctx: StepContext, exc: RetryableError, attempts: int) -> Move:
    """The provider certainly did not take the job: release its reservation; back to ``received``, up to a limit."""
    metrics.SUBMITS.labels(model=job.request.model, outcome="retry").inc()
    data, change = budget.release(job.record.data)
    if attempts >= ctx.settings.submit_max_attempts:
        message = f"OpenRouter did not take the submit after {attempts} attempts: {exc.message}"
        return replace(fail("provider_unavailable", message, retryable=True), data=data, budget=change)
    delay = max(exc.retry_after or 0.0, ctx.retry_in(attempts))
    log.info("submit not taken; retrying", status=exc.status, retry_in=round(delay, 2))
    return Move(JobState.RECEIVED, data=data, after=delay, budget=change)
