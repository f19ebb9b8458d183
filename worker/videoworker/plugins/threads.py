"""Blocking work in a thread, for plugins and the core alike: a cancel waits for the thread.

``asyncio.to_thread`` returns at once when its caller is cancelled (the stop, a deadline),
but the thread runs on: a file it writes lands after the caller has given up on it, and
a retry may run beside it. :func:`run_in_thread` waits for the thread to end before the
cancel goes on, so once the caller hears the cancel nothing more is written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_in_thread(call: Callable[..., T], *args: object) -> T:
    """Run ``call(*args)`` in the default thread pool and return what it returns.

    If the awaiting task is cancelled meanwhile, wait for the thread to end (a second
    cancel waits on too: a thread cannot be stopped), then raise the cancel; what the
    thread returned or raised is dropped. Context variables reach the thread, as with
    ``asyncio.to_thread``. Bound the work itself (a timeout on the blocking call): a
    deadline around the caller waits for the thread too. The daemon's stop lets such a
    task go after :data:`~videoworker.core.schedule.LET_GO` seconds and keeps its job's
    lease, so no peer does the work beside it; it waits for the task while its budget
    lasts, then exits without it.
    """
    work = asyncio.ensure_future(asyncio.to_thread(call, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({work})
        if not work.cancelled():
            work.exception()  # retrieved: the caller hears the cancel, not what the thread raised
        raise
