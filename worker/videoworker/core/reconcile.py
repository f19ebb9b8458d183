"""Reconciling an unknown submit from its callback: the provider named the job our POST made.

A submit whose answer was lost waits in ``awaiting_callback``. A signed callback whose
path names that request carries the provider's job id: it is recorded as if the submit
had answered, and the job is polled from there. No peer without callbacks can do this.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog

from videoworker import metrics
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Move
from videoworker.core.states import JobState
from videoworker.core.steps.submit import stamp
from videoworker.ledger.base import Ledger

log = structlog.get_logger("videoworker.engine")


async def reconcile_unknown(
    ledger: Ledger,
    job: Job,
    job_id: str,
    record: Callable[[Job, Move], Awaitable[bool]],
    moved: Callable[[Job, Move], Awaitable[None]],
) -> None:
    """Record ``job_id`` for ``job`` and carry on as after a submit's answer (``record``, then ``moved``).

    A job id the ledger already holds for another request is refused: one provider job
    never serves two requests. The poll that follows, not the callback, decides the outcome.
    """
    try:
        other = await ledger.by_job_id(job_id)
        if other is not None and other.request_id != job.id:
            log.warning("callback names a job another request holds; ignored", request_id=job.id, job_id=job_id)
            return
        data = {k: v for k, v in job.record.data.items() if k not in ("unknown_until", "unknown_reason")}
        data = {**stamp(data, "submitted"), "submitted_at": time.time(), "reconciled": True}
        move = Move(JobState.SUBMITTED, data=data, job_id=job_id)
        if await record(job, move):
            metrics.SUBMITS_RECONCILED.inc()
            log.warning("reconciled an unknown submit from its callback", request_id=job.id, job_id=job_id)
            await moved(job, move)
    except Exception:
        log.exception("could not reconcile an unknown submit; its timer still runs", request_id=job.id)
    finally:
        job.hinted = False
