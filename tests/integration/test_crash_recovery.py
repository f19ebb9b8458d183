"""A daemon killed with SIGKILL at every step boundary, then restarted, finishes each job correctly.

Only a kill between the provider accepting the submit and the job id being recorded may
end as ``submit_outcome_unknown``; every other point completes with exactly one submit.
"""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Observer
from videoworker.core.crashpoints import POINTS
from videoworker_devtools.simulator import SimulatorThread

EXPECTED = {point: "completed" for point in POINTS} | {"after_post": "failed"}


def _wait_exit(proc: Any, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while proc.alive():
        if time.monotonic() > deadline:
            raise AssertionError("the daemon did not reach its crash point")
        time.sleep(0.05)
    return int(proc.proc.returncode)


@pytest.mark.parametrize("point", sorted(POINTS - {"after_notify"}))  # after_notify: test_notifications.py
async def test_kill_at_each_step_boundary(point: str, process: Any, observer: Observer, sim: SimulatorThread) -> None:
    """SIGKILL at ``point``; the restarted daemon ends the job correctly with at most one submit."""
    first = process(env={"VIDEOWORKER_CRASHPOINT": point})
    first.start()
    await observer.publish(
        {"id": f"crash-{point}", "model": "google/veo-3.1", "prompt": f"crash at {point}"}, correlation_id=point
    )
    assert _wait_exit(first) == -signal.SIGKILL
    second = process()
    second.start()
    await observer.wait(lambda: observer.reply_for(f"crash-{point}"), timeout=60, what="the final reply")
    final = observer.reply_for(f"crash-{point}")[0]
    assert final["status"] == EXPECTED[point], final
    assert sim.stats()["submits"] == 1
    if final["status"] == "failed":
        assert final["error"]["code"] == "submit_outcome_unknown"
    else:
        data = Path(urlsplit(final["outputs"][0]["location"]).path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sim.stats()["jobs"][final["job_id"]]["sha256"][0]
    await observer.wait(lambda: observer.finals(f"crash-{point}"), what="the final event on the exchange")
    assert len(observer.finals(f"crash-{point}")) == 1
    assert not list((second.settings.data_dir / "tmp").glob("*.part"))


async def test_sigkill_mid_poll_resumes_without_resubmit(
    process: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Killed while jobs are being polled; after a restart they complete, one submit each."""
    sim.configure(job_seconds=(2.0, 3.0))
    first = process()
    first.start()
    for i in range(5):
        await observer.publish({"id": f"mid-{i}", "model": "google/veo-3.1", "prompt": f"mid poll {i}"})
    # a submitted event is published only once its record landed, so no kill falls between POST and record
    await observer.wait(
        lambda: all("video.submitted" in observer.statuses(f"mid-{i}") for i in range(5)), what="five recorded submits"
    )
    first.kill()
    first.wait()
    second = process()
    second.start()
    await observer.wait(lambda: len(observer.replies) == 5, timeout=60, what="five replies")
    assert {b["status"] for b, _ in observer.replies} == {"completed"}
    assert sim.stats()["submits"] == 5


async def test_sigterm_leaves_work_to_resume(process: Any, observer: Observer, sim: SimulatorThread) -> None:
    """SIGTERM with jobs in flight: exit 0 within the grace, nothing dropped, jobs finish after restart."""
    sim.configure(job_seconds=(3.0, 4.0))
    first = process()
    first.start()
    for i in range(5):
        await observer.publish({"id": f"term-{i}", "model": "google/veo-3.1", "prompt": f"term {i}"})
    await observer.wait(lambda: sim.stats()["submits"] == 5, what="five submits")
    started = time.monotonic()
    first.kill(signal.SIGTERM)
    assert first.wait(15) == 0
    assert time.monotonic() - started < 10
    assert not observer.replies
    second = process()
    second.start()
    await observer.wait(lambda: len(observer.replies) == 5, timeout=60, what="five replies")
    assert {b["status"] for b, _ in observer.replies} == {"completed"}
    assert sim.stats()["submits"] == 5
    assert not observer.dead
