"""Unit tests for worker.schedule: adaptive poll gaps, backoff, and the timer heap."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videoworker.core.schedule import PollPlanner, Timers, backoff

durations = st.floats(min_value=0.1, max_value=20_000, allow_nan=False, allow_infinity=False)


@st.composite
def planners(draw: st.DrawFn) -> PollPlanner:
    shortest = draw(st.floats(min_value=0.01, max_value=120, allow_nan=False))
    longest = shortest * draw(st.floats(min_value=1, max_value=200, allow_nan=False))
    jitter = draw(st.floats(min_value=0, max_value=0.9, allow_nan=False))
    planner = PollPlanner(shortest, longest, jitter=jitter)
    for seconds in draw(st.lists(durations, max_size=5)):
        planner.learn("m", seconds)
    return planner


@settings(max_examples=500, deadline=None)
@given(
    planner=planners(),
    model=st.sampled_from(["m", "never-seen"]),
    elapsed=st.floats(min_value=0, max_value=100_000, allow_nan=False),
    polls=st.integers(min_value=0, max_value=100_000),
)
def test_next_gap_stays_within_the_intervals(planner: PollPlanner, model: str, elapsed: float, polls: int) -> None:
    gap = planner.next_gap(model, elapsed, polls)
    assert planner.shortest <= gap <= planner.longest


@settings(max_examples=500, deadline=None)
@given(
    planner=planners(),
    elapsed=st.floats(min_value=0, max_value=100_000, allow_nan=False),
    polls=st.integers(min_value=0, max_value=1000),
    retry_after=st.floats(min_value=0, max_value=100_000, allow_nan=False),
)
def test_retry_after_larger_than_the_gap_wins(
    planner: PollPlanner, elapsed: float, polls: int, retry_after: float
) -> None:
    gap = planner.next_gap("m", elapsed, polls, retry_after=retry_after)
    assert gap >= retry_after
    assert gap >= planner.shortest
    assert gap <= max(planner.longest, retry_after)
    if retry_after <= planner.shortest:
        assert gap <= planner.longest


def test_retry_after_beyond_the_longest_gap_is_honoured() -> None:
    assert PollPlanner(1, 10, jitter=0).next_gap("m", 0, 0, retry_after=120) == 120


def test_learn_is_a_moving_average() -> None:
    planner = PollPlanner(1, 60)
    assert planner.expected("m") is None
    planner.learn("m", 100)
    assert planner.expected("m") == 100
    planner.learn("m", 200)
    assert planner.expected("m") == pytest.approx(120)
    assert planner.expected("other") is None


@pytest.mark.parametrize("elapsed", [0.0, 10.0, 50.0, 80.0])
def test_learned_duration_pulls_the_first_poll_near_the_expected_end(elapsed: float) -> None:
    planner = PollPlanner(1, 600, jitter=0.2)
    planner.learn("m", 100)
    for _ in range(50):
        first = elapsed + planner.next_gap("m", elapsed, 0)
        # lands near the expected end: not at the shortest interval, and not much after the end
        assert 100 - 0.3 * (100 - elapsed) <= first <= 100 + 0.1 * (100 - elapsed) + 1e-9
    unknown = planner.next_gap("unseen", elapsed, 0)
    assert unknown <= 1.2  # without a learned duration: the shortest interval (plus jitter)


def test_later_polls_before_the_expected_end_close_in() -> None:
    planner = PollPlanner(1, 600, jitter=0)
    planner.learn("m", 100)
    assert planner.next_gap("m", 60, 3) == pytest.approx(20)  # half the remaining time


def test_overdue_jobs_back_off() -> None:
    planner = PollPlanner(2, 60, jitter=0)
    planner.learn("m", 10)
    gaps = [planner.next_gap("m", 20 + i, polls) for i, polls in enumerate(range(1, 16))]
    assert gaps[0] == 2
    assert all(a <= b for a, b in itertools.pairwise(gaps))
    assert gaps[3] > gaps[0]
    assert gaps[-1] == 60


def test_unknown_model_backs_off_too() -> None:
    planner = PollPlanner(5, 60, jitter=0)
    assert planner.next_gap("never-learned", 1800, 300) > 5


def test_jitter_spreads_gaps() -> None:
    planner = PollPlanner(1, 600, jitter=0.2)
    planner.learn("m", 100)
    gaps = [planner.next_gap("m", 0, 0) for _ in range(100)]
    assert len(set(gaps)) > 50
    assert min(gaps) < 85 < 95 < max(gaps)
    assert 80 < statistics.mean(gaps) < 100
    assert all(72 - 1e-9 <= g <= 108 + 1e-9 for g in gaps)


def test_no_jitter_is_deterministic() -> None:
    planner = PollPlanner(1, 600, jitter=0)
    planner.learn("m", 100)
    gaps = {planner.next_gap("m", 0, 0) for _ in range(20)}
    assert len(gaps) == 1
    assert gaps.pop() == pytest.approx(90)


# --- backoff --------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    attempt=st.integers(min_value=-5, max_value=1000),
    base=st.floats(min_value=0.01, max_value=10, allow_nan=False),
    cap_factor=st.floats(min_value=0.1, max_value=1000, allow_nan=False),
)
def test_backoff_bounds(attempt: int, base: float, cap_factor: float) -> None:
    cap = base * cap_factor
    delay = backoff(attempt, base=base, cap=cap)
    ceiling = min(cap, base * 2 ** max(0, attempt))
    assert 0 < delay <= ceiling + 1e-9
    assert delay >= min(base / 2, ceiling) - 1e-9


def test_backoff_grows_then_caps() -> None:
    assert max(backoff(0, base=1, cap=60) for _ in range(200)) <= 1
    assert max(backoff(3, base=1, cap=60) for _ in range(200)) <= 8
    draws = [backoff(20, base=1, cap=60) for _ in range(200)]
    assert max(draws) <= 60 and max(draws) > 40
    assert len(set(draws)) > 100


def test_backoff_survives_very_many_attempts() -> None:
    assert 0 < backoff(5000, base=0.5, cap=15) <= 15


# --- Timers ---------------------------------------------------------------------------------


async def test_timers_pop_in_due_order() -> None:
    timers = Timers()
    start = time.monotonic()
    timers.at(0.06, "poll", "c")
    timers.at(0.02, "poll", "a")
    timers.at(0.04, "deliver", "b")
    assert len(timers) == 3
    got = []
    async with asyncio.timeout(5):
        for _ in range(3):
            got.append(await timers.next_due())
            got.append(time.monotonic() - start)
    assert [got[0], got[2], got[4]] == [("poll", "a"), ("deliver", "b"), ("poll", "c")]
    assert got[1] >= 0.02 and got[3] >= 0.04 and got[5] >= 0.06  # never early
    assert len(timers) == 0


async def test_timers_with_equal_due_time_keep_insertion_order() -> None:
    timers = Timers()
    for name in "abcde":
        timers.at(-1, "poll", name)  # a negative delay means now
    async with asyncio.timeout(5):
        assert [(await timers.next_due())[1] for _ in range(5)] == list("abcde")


async def test_an_earlier_timer_wakes_a_waiting_next_due() -> None:
    timers = Timers()
    timers.at(60, "poll", "late")
    waiter = asyncio.create_task(timers.next_due())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    timers.at(0.01, "poll", "early")
    async with asyncio.timeout(5):
        assert await waiter == ("poll", "early")
    assert len(timers) == 1


async def test_next_due_on_an_empty_heap_waits_for_the_first_timer() -> None:
    timers = Timers()
    waiter = asyncio.create_task(timers.next_due())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    timers.at(0, "submit", "x")
    async with asyncio.timeout(5):
        assert await waiter == ("submit", "x")


async def test_a_later_timer_does_not_jump_the_queue() -> None:
    timers = Timers()
    timers.at(0.03, "poll", "first")
    waiter = asyncio.create_task(timers.next_due())
    await asyncio.sleep(0)
    timers.at(0.5, "poll", "second")
    async with asyncio.timeout(5):
        assert await waiter == ("poll", "first")
    assert len(timers) == 1


async def test_a_cancelled_timer_never_fires() -> None:
    timers = Timers()
    first = timers.at(0.01, "poll", "stale")
    timers.at(0.02, "poll", "live")
    timers.cancel(first)
    assert len(timers) == 1
    assert await timers.next_due() == ("poll", "live")


def test_with_callbacks_polls_reconcile_after_the_expected_end() -> None:
    planner = PollPlanner(2.0, 5.0, jitter=0.0, reconcile=120.0)
    assert planner.next_gap("m", 0, 0) == 120.0  # nothing learned: the callback is the fast path
    planner.learn("m", 40.0)
    assert planner.next_gap("m", 0, 0) == pytest.approx(52.0)  # 1.25 × expected + the shortest gap
    assert planner.next_gap("m", 60, 1) == 120.0  # past it: one poll per reconcile_interval
    assert planner.next_gap("m", 60, 1, retry_after=200) == 200.0
