"""The job state machine in one table: every state, the step that runs in it, the event it emits, its moves.

Pure data, no I/O. Read :data:`MACHINE` top to bottom and you know the whole life of a
request. The ledger refuses any move the table does not list, so a bug that tries to
submit a stored job fails loudly instead of paying twice.

::

    received ─► submitting ─► submitted ─► in_progress ─► completed ─► done
       │            │   │                       │    └──────────────────►┘ (delivered at once)
       └► failed    │   └► submit_unknown       └► failed (provider, timeout, download, storage)
                    │   └► awaiting_callback ─► submitted (its callback named the job)
                    │            └► submit_unknown (no callback by job_timeout)
                    └► received (the provider certainly did not take it: retry later)

A finished job moves again only by an operator's ``videoworker retry``, along
:data:`RETRIES`, a table of its own: the engine's moves never lead a job with a provider
job id back to a submit, and the ledger's compare-and-set checks them against :data:`MACHINE` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    """Where one request id stands. The value is what the ledger stores."""

    RECEIVED = "received"  # claimed and acked; nothing sent to the provider yet
    SUBMITTING = "submitting"  # durable before the POST: found after a crash, it means "maybe charged"
    SUBMITTED = "submitted"  # the provider's job id is recorded; polling
    IN_PROGRESS = "in_progress"  # the provider says it is generating; polling
    COMPLETED = "completed"  # the provider finished; outputs to download and store
    STORED = "stored"  # every output stored, final event owed: written only by earlier versions, still finished
    DONE = "done"  # the final completed event is in the outbox
    FAILED = "failed"  # the final failed event is in the outbox
    SUBMIT_UNKNOWN = "submit_unknown"  # the submit may have been charged; parked, failed event sent
    AWAITING_CALLBACK = "awaiting_callback"  # submit outcome unknown, callbacks on: its callback may name the job

    @property
    def terminal(self) -> bool:
        return MACHINE[self].step is None


class Step(StrEnum):
    """The work that moves a job out of a state. The engine runs one pool of workers per step."""

    SUBMIT = "submit"  # record `submitting`, POST the request, record what the provider said
    RESOLVE = "resolve"  # a submit found in doubt after a crash: report it unknown (or resubmit, by policy)
    POLL = "poll"  # ask the provider how the job is doing, on the poll schedule
    DELIVER = "deliver"  # download every output and hand it to the storage plugins
    FINISH = "finish"  # record the final completed event of a job an older version left in `stored`
    AWAIT = "await"  # an unknown submit waits for its callback until job_timeout, then is reported unknown


@dataclass(frozen=True)
class StateSpec:
    """One row of :data:`MACHINE`."""

    step: Step | None  # what runs when a job is found in this state (None: the job is finished)
    event: str | None  # the event status published when a job enters this state (None: no event)
    moves: frozenset[JobState]  # the states a job may move to from here


def _spec(step: Step | None, event: str | None, *moves: JobState) -> StateSpec:
    return StateSpec(step, event, frozenset(moves))


_S = JobState

#: The whole state machine. The engine resumes an adopted job by running its state's step.
MACHINE: dict[JobState, StateSpec] = {
    _S.RECEIVED: _spec(Step.SUBMIT, None, _S.SUBMITTING, _S.FAILED),
    _S.SUBMITTING: _spec(
        Step.RESOLVE, None, _S.SUBMITTED, _S.RECEIVED, _S.FAILED, _S.SUBMIT_UNKNOWN, _S.AWAITING_CALLBACK
    ),
    # no event yet: its callback reconciles it (→ submitted), or at job_timeout it is reported unknown
    _S.AWAITING_CALLBACK: _spec(Step.AWAIT, None, _S.SUBMITTED, _S.SUBMIT_UNKNOWN),
    # done: deliver's final move also records the poll's `completed`, held in memory until then
    _S.SUBMITTED: _spec(Step.POLL, "submitted", _S.IN_PROGRESS, _S.COMPLETED, _S.DONE, _S.FAILED),
    _S.IN_PROGRESS: _spec(Step.POLL, "in_progress", _S.COMPLETED, _S.DONE, _S.FAILED),
    # deliver records the outputs and the final event in one move; `stored` only as older versions wrote it
    _S.COMPLETED: _spec(Step.DELIVER, None, _S.DONE, _S.STORED, _S.FAILED),
    _S.STORED: _spec(Step.FINISH, None, _S.DONE),
    _S.DONE: _spec(None, "completed"),
    _S.FAILED: _spec(None, "failed"),
    # parked; the resubmit_unknown policy may send it back to the start, deliberately
    _S.SUBMIT_UNKNOWN: _spec(None, "failed", _S.RECEIVED),
}

#: States after which nothing runs: the final event is in the outbox.
TERMINAL = frozenset(state for state, spec in MACHINE.items() if spec.step is None)

#: The legal moves, as the ledger checks them.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {state: spec.moves for state, spec in MACHINE.items()}


#: The moves ``videoworker retry`` may make out of a finished state: download again
#: (completed), poll again (submitted), or submit again (received, which may pay again).
RETRIES: dict[JobState, frozenset[JobState]] = {
    JobState.FAILED: frozenset({JobState.COMPLETED, JobState.SUBMITTED, JobState.RECEIVED}),
    JobState.SUBMIT_UNKNOWN: frozenset({JobState.RECEIVED}),
}


class IllegalTransition(RuntimeError):
    """Raised when code asks the ledger for a move the state machine does not allow."""


def check_transition(current: JobState, new: JobState) -> None:
    """Raise :class:`IllegalTransition` unless ``current → new`` is a legal move."""
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"{current.value} → {new.value} is not a legal move")


def check_retry(current: JobState, new: JobState) -> None:
    """Raise :class:`IllegalTransition` unless an operator's retry may move ``current → new``."""
    if new not in RETRIES.get(current, frozenset()):
        raise IllegalTransition(f"{current.value} → {new.value} is not a retry")


def step_for(state: JobState) -> Step | None:
    """The step that runs for a job in ``state``; None once it is finished."""
    return MACHINE[state].step


def event_for(state: JobState) -> str | None:
    """The event status a job publishes when it enters ``state``."""
    return MACHINE[state].event
