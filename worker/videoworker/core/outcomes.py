"""What a step asks the engine to do next. Steps decide; the engine records and schedules.

A step never writes the ledger itself (the one exception is the write-ahead record of
``submitting``, see :meth:`videoworker.core.steps.StepContext.intend`). It returns one of
these, and :meth:`videoworker.core.engine.Engine.apply` turns it into a compare-and-set
move with its event in the outbox, a timer, or letting the job go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from videoworker.contract.events import error_body
from videoworker.core.states import JobState
from videoworker.ledger.base import BudgetChange


@dataclass(frozen=True, slots=True)
class Move:
    """Record the move to ``to`` (with its event), then run the new state's step ``after`` seconds later.

    ``data`` replaces the job's data when given; ``error`` is the body of a final failure;
    ``budget`` changes the day's spend in the same transaction (reserve, settle, release).
    """

    to: JobState
    data: dict[str, Any] | None = None
    job_id: str | None = None
    attempts: int | None = None
    after: float = 0.0
    error: dict[str, Any] | None = None
    budget: BudgetChange | None = None


@dataclass(frozen=True, slots=True)
class Again:
    """Nothing to record: run the same step again ``after`` seconds from now."""

    after: float


@dataclass(frozen=True, slots=True)
class Release:
    """The job's row did not match memory (a peer adopted it?): let it go, unless the ledger says it is still ours."""


Outcome = Move | Again | Release


def fail(code: str, message: str, *, retryable: bool = False, to: JobState = JobState.FAILED) -> Move:
    """A final failure with the stable error ``code``."""
    return Move(to, error=error_body(code, message, retryable=retryable))
