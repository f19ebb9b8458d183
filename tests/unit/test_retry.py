"""Which step an operator's retry goes back to, and when it may pay again."""

from __future__ import annotations

from typing import Any

import pytest

from videoworker.core.retry import NotRetryable, plan_retry, retry_data
from videoworker.core.states import JobState
from videoworker.ledger.base import JobRecord

S = JobState


def failed(code: str, job_id: str | None = "gen-1", state: JobState = S.FAILED, **data: Any) -> JobRecord:
    final = {"status": "failed", "error": {"code": code, "message": "m", "retryable": True}}
    return JobRecord("r", state, "m", {"id": "r"}, job_id, 1, {"final": final, **data})


@pytest.mark.parametrize(
    ("code", "job_id", "to", "pays"),
    [
        ("storage_failed", "gen-1", S.COMPLETED, False),
        ("download_failed", "gen-1", S.COMPLETED, False),
        ("timeout", "gen-1", S.SUBMITTED, False),
        ("provider_failed", "gen-1", S.RECEIVED, True),
        ("provider_expired", "gen-1", S.RECEIVED, True),
        ("over_budget", None, S.RECEIVED, False),
        ("provider_rejected", None, S.RECEIVED, False),
        ("download_failed", None, S.RECEIVED, False),
    ],
)
def test_each_failure_goes_back_to_its_step(code: str, job_id: str | None, to: JobState, pays: bool) -> None:
    plan = plan_retry(failed(code, job_id))
    assert (plan.to, plan.pays_again) == (to, pays)


def test_an_unknown_submit_may_pay_twice() -> None:
    plan = plan_retry(failed("submit_outcome_unknown", None, S.SUBMIT_UNKNOWN))
    assert plan.to is S.RECEIVED and plan.pays_again


@pytest.mark.parametrize("state", [S.DONE, S.RECEIVED, S.SUBMITTED, S.COMPLETED])
def test_finished_or_running_jobs_are_not_retried(state: JobState) -> None:
    with pytest.raises(NotRetryable, match="nothing to retry"):
        plan_retry(failed("storage_failed", state=state))


@pytest.mark.parametrize("code", ["invalid_request", "model_unsupported"])
def test_refused_requests_are_not_retried(code: str) -> None:
    with pytest.raises(NotRetryable, match="new id"):
        plan_retry(failed(code, None))


def test_a_trimmed_job_is_not_retried() -> None:
    with pytest.raises(NotRetryable, match="trimmed"):
        plan_retry(failed("storage_failed", trimmed=True))


def test_retry_data_drops_the_final_event_and_counts_the_retry() -> None:
    record = failed("storage_failed", output_count=2, history=[{"state": "failed"}], retries=1)
    data = retry_data(record, plan_retry(record))
    assert "final" not in data and data["output_count"] == 2 and data["retries"] == 2
    assert data["history"][-1]["state"] == "completed" and data["history"][-1]["retry"] == 2


def test_a_restart_keeps_only_what_a_new_submit_may_see() -> None:
    record = failed("provider_failed", budget={"day": "d", "reserved": 0.0}, usage={"cost": 1}, producer="p")
    data = retry_data(record, plan_retry(record))
    assert set(data) == {"producer", "retries", "history"}


def test_a_timeout_retry_restarts_the_job_timeout_clock() -> None:
    record = failed("timeout", submitted_at=0.0)
    assert retry_data(record, plan_retry(record))["submitted_at"] > 1e9
