"""``videoworker.run_in_thread``: blocking work in a thread that a cancel waits for."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from videoworker import run_in_thread
from videoworker.testing.recorder import until


def gated(gate: threading.Event, started: threading.Event, value: int) -> int:
    started.set()
    if not gate.wait(10):
        raise TimeoutError("the test never opened the gate")
    return value


async def test_returns_what_the_call_returns_and_raises_what_it_raises() -> None:
    assert await run_in_thread(divmod, 7, 2) == (3, 1)
    with pytest.raises(ZeroDivisionError):
        await run_in_thread(divmod, 1, 0)


@pytest.mark.parametrize("cancels", [1, 2])
async def test_a_cancel_waits_for_the_thread_to_end(cancels: int) -> None:
    """The caller hears the cancel only once the thread is done; a second cancel does not cut the wait short."""
    gate, started = threading.Event(), threading.Event()
    task = asyncio.create_task(run_in_thread(gated, gate, started, 5))
    await until(started.is_set, 5, "the thread to start")
    for _ in range(cancels):
        task.cancel()
        ended, _ = await asyncio.wait({task}, timeout=0.05)  # wakes at once if the cancel goes through
        assert not ended, "the cancel went on while the thread was still running"
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_what_the_thread_raises_after_a_cancel_is_not_left_unretrieved() -> None:
    """The cancel wins; the thread's error is retrieved, so asyncio does not log it as never retrieved."""
    gate, started = threading.Event(), threading.Event()
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:

        def fails() -> None:
            gated(gate, started, 0)
            raise OSError("disk gone")

        task = asyncio.create_task(run_in_thread(fails))
        await until(started.is_set, 5, "the thread to start")
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        del task
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert unhandled == []
