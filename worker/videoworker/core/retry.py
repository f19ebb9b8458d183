"""An operator's retry of a finished job: which step it goes back to, and whether that pays again.

``videoworker retry ID`` uses this; the engine never does. The rule is the product's
first promise, never pay twice without being asked:

* ``download_failed`` / ``storage_failed`` with a provider job: back to ``completed``, to
  download and store the finished video again. Nothing new is generated or paid.
* ``timeout`` with a provider job: back to ``submitted``, polling it for another
  ``job_timeout``. Nothing new is paid.
* a provider job that failed (``provider_failed``, cancelled, expired), or a submit whose
  outcome is unknown: back to ``received``, which submits again and **may pay again**;
  only with ``pay_again``.
* a job the provider never took (``over_budget``, ``provider_rejected``): back to
  ``received``; its first payment, so no flag.
* a refused request (``invalid_request``, ``model_unsupported``) is not retried: the same
  request would be refused again. Fix it and publish it with a new id.

The job's data keeps its history; each retry adds one entry and counts in ``retries``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from videoworker.core.recorder import with_history
from videoworker.core.states import RETRIES, JobState
from videoworker.errors import WorkerError
from videoworker.ledger.base import JobRecord

#: Codes of requests refused as they are: a retry would be refused the same way.
REFUSED = frozenset({"invalid_request", "model_unsupported"})
#: What a job sent back to the start keeps of its data.
_RESTART_KEEPS = ("timestamps", "history", "producer", "retries")


class NotRetryable(WorkerError):
    """Raised when a job cannot (or may not, without ``--pay-again``) be retried; the message says why."""


@dataclass(frozen=True)
class RetryPlan:
    """Where a retry sends a job, whether that may pay the provider again, and why, for the operator."""

    to: JobState
    pays_again: bool
    why: str


def error_code(record: JobRecord) -> str | None:
    """The stable error code of the job's final event, if it failed."""
    final = record.data.get("final")
    error = final.get("error") if isinstance(final, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def plan_retry(record: JobRecord) -> RetryPlan:
    """The retry that fits ``record``; raises :class:`NotRetryable` when there is none."""
    state, code = record.state, error_code(record)
    if state not in RETRIES:
        why = "it completed" if state is JobState.DONE else "it is still running"
        raise NotRetryable(f"job {record.request_id} is {state.value}: nothing to retry, {why}")
    if record.data.get("trimmed"):
        raise NotRetryable(
            f"job {record.request_id} finished long enough ago to be trimmed (trim_after): its request is no longer"
            " in the ledger; publish it again with a new id"
        )
    if state is JobState.SUBMIT_UNKNOWN:
        return RetryPlan(
            JobState.RECEIVED, True, "the first submit may have been charged; submitting again may pay twice"
        )
    if code in ("download_failed", "storage_failed") and record.job_id:
        return RetryPlan(JobState.COMPLETED, False, "downloads and stores the provider's finished video again")
    if code == "timeout" and record.job_id:
        return RetryPlan(JobState.SUBMITTED, False, "polls the provider's job again for another job_timeout")
    if code in REFUSED:
        raise NotRetryable(
            f"job {record.request_id} was refused ({code}): the same request would be refused again;"
            " fix it and publish it with a new id"
        )
    if record.job_id:
        return RetryPlan(JobState.RECEIVED, True, f"the provider's job ended ({code}); a new submit pays again")
    return RetryPlan(JobState.RECEIVED, False, f"the provider never took the job ({code}); submitting it pays once")


def retry_data(record: JobRecord, plan: RetryPlan) -> dict[str, Any]:
    """The job's data as the retry leaves it: no final event, one more retry, the step's counters reset."""
    retries = int(record.data.get("retries", 0)) + 1
    if plan.to is JobState.RECEIVED:
        data = {key: record.data[key] for key in _RESTART_KEEPS if key in record.data}
    else:
        data = {key: value for key, value in record.data.items() if key != "final"}
    if plan.to is JobState.SUBMITTED:
        data["submitted_at"] = time.time()  # the poll step's job_timeout counts from here
    data["retries"] = retries
    return with_history(data, plan.to.value, retry=retries, pays_again=plan.pays_again)
