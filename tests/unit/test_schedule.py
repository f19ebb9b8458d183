"""Unit tests for videoworker.core.schedule: backoff, the timer heap and shared deadlines."""

from __future__ import annotations

import asyncio
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from videoworker.core.schedule import Timers, backoff
from videoworker.testing.recorder import until

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


# --- cancel_and_wait ----------------------------------------------------------------------------


async def test_cancel_and_wait_lets_go_of_a_task_held_by_its_thread() -> None:
    """Cancelled tasks that end are waited for; one whose thread works on is let go, not waited for."""
    import threading

    from videoworker import run_in_thread
    from videoworker.core.schedule import cancel_and_wait

    gate, started = threading.Event(), threading.Event()

    def blocks() -> None:
        started.set()
        gate.wait(10)

    quick = asyncio.create_task(asyncio.sleep(60))
    held = asyncio.create_task(run_in_thread(blocks))
    await until(started.is_set, 5, "the thread to start")
    try:
        assert await asyncio.wait_for(cancel_and_wait([quick, held], let_go=0.05), 5) == 1
        assert quick.cancelled() and not held.done()
    finally:
        gate.set()
    await asyncio.wait({held}, timeout=5)
    assert held.cancelled()
    assert await cancel_and_wait([]) == 0


def test_a_task_let_go_on_another_loop_is_not_waited_for() -> None:
    """The let-go registry is shared by the process: a stop waits only for its own loop's tasks,
    and a task left on a loop that has closed is forgotten, not waited for by every later stop."""
    import threading

    from videoworker import run_in_thread
    from videoworker.core.schedule import cancel_and_wait, let_go_tasks_end

    gate, started = threading.Event(), threading.Event()

    def blocks() -> None:
        started.set()
        gate.wait(10)

    async def leave_one() -> None:
        held = asyncio.create_task(run_in_thread(blocks))
        await until(started.is_set, 5, "the thread to start")
        assert await cancel_and_wait([held], let_go=0.01) == 1

    old = asyncio.new_event_loop()
    try:
        old.run_until_complete(leave_one())
    finally:
        old.close()  # its let-go task never ended

    async def later_stop() -> float:
        began = time.monotonic()
        await asyncio.wait_for(let_go_tasks_end(), 5)
        return time.monotonic() - began

    try:
        assert asyncio.run(later_stop()) < 1.0
    finally:
        gate.set()
