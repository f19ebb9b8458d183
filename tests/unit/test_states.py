"""Unit tests for videoworker.core.states: the state machine table, its moves, steps and events."""

from __future__ import annotations

import itertools

import pytest

from videoworker.core.states import (
    MACHINE,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    JobState,
    Step,
    check_transition,
    event_for,
    step_for,
)

S = JobState

#: The legal moves, written out independently of the states module so a change there shows up here.
LEGAL = {
    (S.RECEIVED, S.SUBMITTING),
    (S.RECEIVED, S.FAILED),
    (S.SUBMITTING, S.SUBMITTED),
    (S.SUBMITTING, S.RECEIVED),  # the provider certainly did not take it: retry later
    (S.SUBMITTING, S.FAILED),
    (S.SUBMITTING, S.SUBMIT_UNKNOWN),
    (S.SUBMITTING, S.AWAITING_CALLBACK),  # callbacks on: the callback may name the job
    (S.AWAITING_CALLBACK, S.SUBMITTED),  # it did
    (S.AWAITING_CALLBACK, S.SUBMIT_UNKNOWN),  # it did not, by job_timeout
    (S.SUBMITTED, S.IN_PROGRESS),
    (S.SUBMITTED, S.COMPLETED),
    (S.SUBMITTED, S.DONE),  # deliver's final move also records the poll's `completed`, held until then
    (S.SUBMITTED, S.FAILED),
    (S.IN_PROGRESS, S.COMPLETED),
    (S.IN_PROGRESS, S.DONE),
    (S.IN_PROGRESS, S.FAILED),
    (S.COMPLETED, S.DONE),  # deliver records the outputs and the final event at once
    (S.COMPLETED, S.STORED),  # as earlier versions did
    (S.COMPLETED, S.FAILED),
    (S.STORED, S.DONE),
    (S.SUBMIT_UNKNOWN, S.RECEIVED),  # the resubmit_unknown policy
}
ALL_PAIRS = list(itertools.product(JobState, repeat=2))


def test_states_are_the_ledger_values() -> None:
    assert {s.value for s in JobState} == {
        "received",
        "submitting",
        "submitted",
        "in_progress",
        "completed",
        "stored",
        "done",
        "failed",
        "submit_unknown",
        "awaiting_callback",
    }
    assert JobState("submit_unknown") is S.SUBMIT_UNKNOWN


@pytest.mark.parametrize(
    ("current", "new"), sorted(LEGAL, key=lambda p: (p[0].value, p[1].value)), ids=lambda s: s.value
)
def test_legal_move_passes(current: JobState, new: JobState) -> None:
    check_transition(current, new)


@pytest.mark.parametrize(("current", "new"), [p for p in ALL_PAIRS if p not in LEGAL], ids=lambda s: s.value)
def test_every_other_move_is_illegal(current: JobState, new: JobState) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, new)
    assert current.value in str(info.value) and new.value in str(info.value)


def test_transition_table_is_exactly_the_legal_moves() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL


def test_no_state_moves_to_itself() -> None:
    for state in JobState:
        with pytest.raises(IllegalTransition):
            check_transition(state, state)


def test_terminal_states() -> None:
    assert {S.DONE, S.FAILED, S.SUBMIT_UNKNOWN} == TERMINAL
    assert all(s.terminal == (s in TERMINAL) for s in JobState)


def test_terminal_states_have_no_moves_except_the_resubmit_policy() -> None:
    for state in TERMINAL:
        expected = {S.RECEIVED} if state is S.SUBMIT_UNKNOWN else set()
        assert set(TRANSITIONS[state]) == expected, state


def test_every_state_reaches_a_terminal_one() -> None:
    for start in JobState:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL, start


def test_no_path_from_a_submitted_job_back_to_submitting() -> None:
    """Once the job id is recorded the job can never be submitted again (nothing is paid twice)."""
    for start in (S.SUBMITTED, S.IN_PROGRESS, S.COMPLETED, S.STORED, S.DONE, S.FAILED):
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert S.SUBMITTING not in seen and S.RECEIVED not in seen, start


def test_the_table_covers_every_state() -> None:
    """Every state has exactly one row: its step, its event and its moves."""
    assert set(MACHINE) == set(JobState)


def test_event_statuses_are_the_contract_ones() -> None:
    """States announce only the contract's four statuses; terminal ones a final event, internal ones none."""
    contract = {"submitted", "in_progress", "completed", "failed"}
    assert {event_for(s) for s in JobState} - {None} == contract
    assert event_for(S.DONE) == "completed"
    assert event_for(S.FAILED) == "failed"
    assert event_for(S.SUBMIT_UNKNOWN) == "failed"
    assert all(event_for(s) in ("completed", "failed") for s in TERMINAL)
    assert event_for(S.RECEIVED) is None and event_for(S.SUBMITTING) is None


def test_each_state_runs_the_step_written_for_it() -> None:
    """Which step runs in which state is written once; terminal states run none."""
    assert {s: step_for(s) for s in JobState} == {
        S.RECEIVED: Step.SUBMIT,
        S.SUBMITTING: Step.RESOLVE,
        S.SUBMITTED: Step.POLL,
        S.IN_PROGRESS: Step.POLL,
        S.COMPLETED: Step.DELIVER,
        S.STORED: Step.FINISH,
        S.DONE: None,
        S.FAILED: None,
        S.SUBMIT_UNKNOWN: None,
        S.AWAITING_CALLBACK: Step.AWAIT,
    }
    assert {s for s in JobState if step_for(s) is None} == TERMINAL


def test_every_step_runs_somewhere() -> None:
    """No step is dead code: each one is the step of at least one state."""
    assert {step_for(s) for s in JobState} - {None} == set(Step)
