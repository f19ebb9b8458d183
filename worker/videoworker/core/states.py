"""The job state machine: states, legal moves, and what each state means after a crash.

Pure data, no I/O. The ledger refuses any move not in :data:`TRANSITIONS`, so a bug
that tries to submit a stored job fails loudly instead of paying twice.

::

    received ─► submitting ─► submitted ─► in_progress ─► completed ─► stored ─► done
       │            │   │                       │
       └► failed    │   └► submit_unknown       └► failed (provider, timeout, download, storage)
                    └► received (the provider certainly did not take it: retry later)
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where one request id stands. The value is what the ledger stores."""

    RECEIVED = "received"  # claimed and acked; nothing sent to the provider yet
    SUBMITTING = "submitting"  # durable before the POST: found after a crash, it means "maybe charged"
    SUBMITTED = "submitted"  # the provider's job id is recorded; polling
    IN_PROGRESS = "in_progress"  # the provider says it is generating; polling
    COMPLETED = "completed"  # the provider finished; outputs to download and store
    STORED = "stored"  # every output is stored; the final event is owed
    DONE = "done"  # the final completed event is in the outbox
    FAILED = "failed"  # the final failed event is in the outbox
    SUBMIT_UNKNOWN = "submit_unknown"  # the submit may have been charged; parked, failed event sent

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.SUBMIT_UNKNOWN})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.RECEIVED: frozenset({JobState.SUBMITTING, JobState.FAILED}),
    JobState.SUBMITTING: frozenset({JobState.SUBMITTED, JobState.RECEIVED, JobState.FAILED, JobState.SUBMIT_UNKNOWN}),
    JobState.SUBMITTED: frozenset({JobState.IN_PROGRESS, JobState.COMPLETED, JobState.FAILED}),
    JobState.IN_PROGRESS: frozenset({JobState.COMPLETED, JobState.FAILED}),
    JobState.COMPLETED: frozenset({JobState.STORED, JobState.FAILED}),
    JobState.STORED: frozenset({JobState.DONE}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
    # the resubmit_unknown policy moves a parked job back to the start, deliberately
    JobState.SUBMIT_UNKNOWN: frozenset({JobState.RECEIVED}),
}

#: Event status published for each state a job enters (None: no event of its own).
EVENT_STATUS: dict[JobState, str | None] = {
    JobState.RECEIVED: None,
    JobState.SUBMITTING: None,
    JobState.SUBMITTED: "submitted",
    JobState.IN_PROGRESS: "in_progress",
    JobState.COMPLETED: None,
    JobState.STORED: None,
    JobState.DONE: "completed",
    JobState.FAILED: "failed",
    JobState.SUBMIT_UNKNOWN: "failed",
}


class IllegalTransition(RuntimeError):
    """Raised when code asks the ledger for a move the state machine does not allow."""


def check_transition(current: JobState, new: JobState) -> None:
    """Raise :class:`IllegalTransition` unless ``current → new`` is a legal move."""
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"{current.value} → {new.value} is not a legal move")
