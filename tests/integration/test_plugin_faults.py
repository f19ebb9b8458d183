"""Plugins that fail: flaky and dead storage, crashing and hanging notifiers, a validator that crashes.

Each plugin is an object registered with ``daemon(plugins={"name": obj})``, exactly as a
third-party plugin would be, and the daemon is the real one against RabbitMQ and the
simulator.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from typing import Any

import structlog
from prometheus_client import REGISTRY

from tests.conftest import Observer
from videoworker import JobEvent, OutputFile, StoredOutput, hookimpl
from videoworker.contract.request import VideoRequest
from videoworker_devtools.simulator import SimulatorThread

GOOD = {"model": "google/veo-3.1", "prompt": "a plugin-fault cat", "duration": 4}


def _req(rid: str, **extra: Any) -> dict[str, Any]:
    return {**GOOD, "id": rid, "prompt": f"prompt of {rid}", **extra}


def _submits_for(sim: SimulatorThread, prompt: str) -> int:
    return sum(1 for job in sim.stats()["jobs"].values() if job["body"].get("prompt") == prompt)


def _plugin_errors(plugin: str, hook: str = "videoworker_job_event") -> float:
    return REGISTRY.get_sample_value("videoworker_plugin_errors_total", {"plugin": plugin, "hook": hook}) or 0.0


class FlakyStore:
    """Fails the first ``failures`` stores, then keeps the output at ``flaky://<id>/<index>``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[float] = []

    @hookimpl
    async def videoworker_store_output(self, output: OutputFile) -> StoredOutput:
        self.calls.append(time.monotonic())
        assert output.path.exists() and output.bytes > 0
        if len(self.calls) <= self.failures:
            raise RuntimeError(f"flaky store is down (call {len(self.calls)})")
        return StoredOutput("flaky", f"flaky://{output.request_id}/{output.index}")


# --- storage ---------------------------------------------------------------------------


async def test_flaky_storage_is_retried_until_it_succeeds(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Three failures, then success: the job completes with both locations, one submit, 4+ store attempts."""
    flaky = FlakyStore(failures=3)
    # the same full-jitter shape, ten times faster, so the test does not wait up to 14 s
    await daemon(plugins={"flaky": flaky}, retry_backoff_base=0.1)
    await observer.publish(_req("flaky-1"), correlation_id="flaky-1")
    await observer.wait(lambda: observer.reply_for("flaky-1"), timeout=30, what="the final reply")
    final = observer.reply_for("flaky-1")[0]
    assert final["status"] == "completed", final
    (output,) = final["outputs"]
    assert set(output["locations"]) == {"local", "flaky"}
    assert output["locations"]["flaky"] == "flaky://flaky-1/0"
    assert output["locations"]["local"].startswith("file://")
    assert output["location"] in output["locations"].values()
    assert len(flaky.calls) >= 4
    assert sim.stats()["submits"] == 1
    assert [k for k, b, _ in observer.events if b["id"] == "flaky-1" and k == "video.failed"] == []


async def test_storage_that_always_fails_ends_in_storage_failed(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """A dead store with storage_retry_seconds=2: a failed event with storage_failed, never completed."""
    dead = FlakyStore(failures=10**9)
    started = time.monotonic()
    d = await daemon(plugins={"dead": dead}, storage_retry_seconds=2)
    await observer.publish(_req("dead-1"), correlation_id="dead-1")
    await observer.wait(lambda: observer.reply_for("dead-1"), timeout=30, what="the final reply")
    final = observer.reply_for("dead-1")[0]
    assert final["status"] == "failed", final
    assert final["error"]["code"] == "storage_failed"
    assert "flaky store is down" in final["error"]["message"]
    assert final["outputs"] == []
    assert len(dead.calls) >= 2
    # retried for the whole storage_retry_seconds. The daemon times the window from just after each store
    # raised, the store from just before, so the last retry may start a moment (ms) short of 2 s on its clock
    assert dead.calls[-1] - dead.calls[0] > 2 - 0.05
    assert time.monotonic() - started < 20
    await observer.wait(lambda: observer.finals("dead-1"), what="the failed event on the exchange")
    statuses = [k for k, b, _ in observer.events if b["id"] == "dead-1"]
    assert "video.completed" not in statuses and statuses[-1] == "video.failed"
    assert len(observer.finals("dead-1")) == 1
    row = await d.ledger.get("dead-1")
    assert row is not None and row.state.value == "failed"
    assert sim.stats()["submits"] == 1


# --- notifiers -------------------------------------------------------------------------


class CrashingNotifier:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def videoworker_job_event(self, event: JobEvent) -> None:
        self.seen.append(event.status)
        raise RuntimeError(f"slack is down ({event.status})")


class HangingNotifier:
    def __init__(self) -> None:
        self.called: dict[str, float] = {}

    @hookimpl
    async def videoworker_job_event(self, event: JobEvent) -> None:
        self.called[event.status] = time.monotonic()
        await asyncio.Event().wait()  # never returns


async def test_crashing_notifier_never_fails_the_job(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    """The job completes; the error is counted, logged with the plugin's name, and in the prometheus counter."""
    notifier = CrashingNotifier()
    before = _plugin_errors("crashy")
    with structlog.testing.capture_logs() as logs:
        d = await daemon(plugins={"crashy": notifier})
        await observer.publish(_req("crashy-1"), correlation_id="crashy-1")
        await observer.wait(lambda: observer.reply_for("crashy-1"), what="the final reply")
        await observer.wait(lambda: "completed" in notifier.seen, what="the notifier called for completed")
        await observer.wait(lambda: d.hooks.plugin_errors >= len(notifier.seen), what="every crash counted")
    final = observer.reply_for("crashy-1")[0]
    assert final["status"] == "completed", final
    assert notifier.seen[0] == "submitted" and notifier.seen[-1] == "completed"
    assert d.hooks.plugin_errors == len(notifier.seen) > 0
    assert _plugin_errors("crashy") - before == len(notifier.seen)
    failures = [e for e in logs if e.get("plugin") == "crashy" and e["log_level"] == "error"]
    assert len(failures) == len(notifier.seen), logs
    assert all("slack is down" in e["error"] for e in failures)
    assert {e["status"] for e in failures} == set(notifier.seen)
    assert sim.stats()["submits"] == 1


async def test_hanging_notifier_does_not_delay_the_final_event(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """A notifier that never returns is cut off after observer_timeout; the events go out regardless."""
    notifier = HangingNotifier()
    before = _plugin_errors("hangs")
    d = await daemon(plugins={"hangs": notifier}, observer_timeout=0.5)
    await observer.publish(_req("hang-1"), correlation_id="hang-1")
    await observer.wait(lambda: observer.reply_for("hang-1"), what="the final reply")
    replied = time.monotonic()
    final = observer.reply_for("hang-1")[0]
    assert final["status"] == "completed", final
    await observer.wait(lambda: "completed" in notifier.called, what="the notifier called for completed")
    # the reply did not wait for the notifier's timeout (0.5 s) on the completed status
    assert replied - notifier.called["completed"] < 0.4, replied - notifier.called["completed"]
    statuses = [k for k, b, _ in observer.events if b["id"] == "hang-1"]
    assert statuses[0] == "video.submitted"
    calls = len(notifier.called)
    await observer.wait(lambda: d.hooks.plugin_errors >= calls, timeout=5, what="each hang timed out and counted")
    assert _plugin_errors("hangs") - before == calls
    assert sim.stats()["submits"] == 1


# --- poison message --------------------------------------------------------------------


class CrashingValidator:
    """Crashes (a plugin bug, not a refusal) on every delivery of the poison prompt."""

    def __init__(self, poison: str) -> None:
        self.poison = poison
        self.deliveries: list[float] = []

    @hookimpl
    def videoworker_validate_request(self, request: VideoRequest) -> None:
        if request.prompt == self.poison:
            self.deliveries.append(time.monotonic())
            raise RuntimeError("validator bug")


async def test_poison_message_is_dead_lettered_after_the_delivery_limit(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """A handler crash on every delivery: growing pauses, ≤ limit+1 deliveries, then RabbitMQ dead-letters it."""
    limit = 3
    # the observer fixture declared the request queue with the default delivery limit; a quorum
    # queue cannot be redeclared with another, so drop the (empty) queue and let the daemon declare it
    await observer.channel.queue_delete(observer.settings.request_queue)
    validator = CrashingValidator("poison pill")
    d = await daemon(plugins={"crasher": validator}, delivery_limit=limit)
    await observer.publish(_req("poison-1", prompt="poison pill"), correlation_id="poison-1")
    await observer.publish(_req("good-1"), correlation_id="good-1")
    await observer.wait(lambda: observer.reply_for("good-1"), timeout=30, what="the good request's reply")
    assert observer.reply_for("good-1")[0]["status"] == "completed"
    # the good request did not queue behind the poison's pauses: the poison is still being retried
    assert observer.dead == [] and len(validator.deliveries) <= limit
    await observer.wait(lambda: observer.dead, timeout=60, what="the poison message in the dead-letter queue")
    (dead,) = observer.dead
    assert dead.correlation_id == "poison-1"
    headers = dead.headers or {}
    assert headers.get("x-first-death-reason") == "delivery_limit", headers
    assert headers.get("x-first-death-queue") == observer.settings.request_queue
    deaths = headers.get("x-death") or []
    assert deaths and deaths[0]["reason"] == "delivery_limit", deaths
    assert deaths[0]["queue"] == observer.settings.request_queue
    # bounded, and no hot loop: the pause before each nack grows (0.5 s · 2^n)
    times = validator.deliveries
    assert 2 <= len(times) <= limit + 1, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.4, gaps
    assert all(later > earlier * 1.5 for earlier, later in itertools.pairwise(gaps)), gaps
    # nothing was paid for it, nobody was answered for it, and the daemon still takes work
    assert _submits_for(sim, "poison pill") == 0
    assert observer.reply_for("poison-1") == []
    assert await d.ledger.get("poison-1") is None
    await observer.publish(_req("good-2"), correlation_id="good-2")
    await observer.wait(lambda: observer.reply_for("good-2"), timeout=30, what="a good request after the poison")
    assert observer.reply_for("good-2")[0]["status"] == "completed"
    assert d.broker.consuming


class SpyStore:
    """A storage plugin whose coroutines are kept, to see whether the host awaited (or closed) each one."""

    def __init__(self) -> None:
        self.coroutines: list[Any] = []

    @hookimpl
    def videoworker_store_output(self, output: OutputFile) -> Any:
        async def store() -> StoredOutput:
            return StoredOutput("spy", f"spy://{output.request_id}/{output.index}")

        coroutine = store()
        self.coroutines.append(coroutine)
        return coroutine


async def test_a_failing_store_leaves_no_storage_coroutine_dangling(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Expected: when one storage plugin fails, every other storage coroutine of that attempt is awaited or closed."""
    spy, flaky = SpyStore(), FlakyStore(failures=1)
    # pluggy calls the last registered first: spy, then flaky (which fails once), then the built-in local
    await daemon(plugins={"flaky": flaky, "spy": spy}, retry_backoff_base=0.1)
    await observer.publish(_req("spy-1"), correlation_id="spy-1")
    await observer.wait(lambda: observer.reply_for("spy-1"), timeout=30, what="the final reply")
    assert observer.reply_for("spy-1")[0]["status"] == "completed"
    assert len(spy.coroutines) >= 2
    states = [inspect.getcoroutinestate(c) for c in spy.coroutines]
    for c in spy.coroutines:
        c.close()
    assert states == [inspect.CORO_CLOSED] * len(states)
