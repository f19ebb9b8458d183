"""The operator's job tools against a running daemon: ``status``, ``jobs``, ``retry``; and retention end to end.

Real parts throughout: RabbitMQ, the simulator, the daemon, the SQLite or PostgreSQL
ledger, and the ``videoworker`` command (click's runner, in a thread so its own event
loop does not meet the test's).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
from click.testing import CliRunner, Result

from tests.conftest import PG_URL, Observer
from videoworker import StorageError, StoredOutput, hookimpl
from videoworker.cli import main
from videoworker.config import Settings
from videoworker.core.states import JobState
from videoworker.ledger import open_ledger
from videoworker.testing.daemons import DaemonStarter
from videoworker.testing.recorder import until
from videoworker_devtools.simulator import SimulatorThread


class FlakyStore:
    """A storage plugin that refuses while ``broken``: a bucket that was down, then came back."""

    def __init__(self) -> None:
        self.broken = True
        self.stored: list[str] = []

    @hookimpl
    async def videoworker_store_output(self, request: Any, output: Any, settings: Any) -> StoredOutput:
        if self.broken:
            raise StorageError("the bucket is down")
        self.stored.append(output.request_id)
        return StoredOutput("flaky", f"flaky://{output.request_id}/{output.index}")


def env_of(settings: Settings) -> dict[str, str]:
    """The environment a shell on the daemon's host would have: the same ledger and provider."""
    return {
        "VIDEOWORKER_DATA_DIR": str(settings.data_dir),
        "VIDEOWORKER_LEDGER_URL": settings.effective_ledger_url,
        "VIDEOWORKER_OPENROUTER_BASE_URL": settings.openrouter_base_url,
        "OPENROUTER_API_KEY": settings.openrouter_api_key.get_secret_value() if settings.openrouter_api_key else "",
        "VIDEOWORKER_AMQP_URL": settings.amqp_url.get_secret_value(),
    }


async def cli(settings: Settings, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env_of(settings))


def completed(observer: Observer, request_id: str) -> Callable[[], bool]:
    return lambda: any(f["status"] == "completed" for f in observer.finals(request_id))


async def test_a_storage_failure_is_retried_without_paying_again(
    daemon: DaemonStarter, observer: Observer, sim: SimulatorThread
) -> None:
    """storage_failed → `retry` → the daemon downloads and stores again; the provider saw one submit."""
    store = FlakyStore()
    d = await daemon(plugins={"flaky": store}, storage_retry_seconds=0.3, disabled_plugins=["local"])
    await observer.publish({"id": "ops-1", "model": "google/veo-3.1", "prompt": "a lighthouse"})
    failed = await observer.final("ops-1")
    assert failed["status"] == "failed" and failed["error"]["code"] == "storage_failed"

    shown = await cli(d.settings, "status", "ops-1", "--json")
    assert shown.exit_code == 0, shown.output
    story = json.loads(shown.output)
    assert story["state"] == "failed" and story["error"]["code"] == "storage_failed" and story["job_id"]
    assert [h["state"] for h in story["history"]] == ["received", "submitting", "submitted", "completed", "failed"] or [
        h["state"] for h in story["history"]
    ] == ["received", "submitting", "submitted", "in_progress", "completed", "failed"]

    store.broken = False
    retried = await cli(d.settings, "retry", "ops-1")
    assert retried.exit_code == 0, retried.output
    assert "failed → completed" in retried.output
    await until(completed(observer, "ops-1"), 30, "the retried job completes")
    assert sim.stats()["submits"] == 1
    assert store.stored == ["ops-1"]

    after = json.loads((await cli(d.settings, "status", "ops-1", "--json")).output)
    assert after["state"] == "done" and after["retries"] == 1
    assert after["history"][-2]["retry"] == 1 and after["history"][-1]["state"] == "done"

    human = await cli(d.settings, "status", "ops-1")
    assert "state:     done" in human.output and "(retry 1)" in human.output


async def test_a_retry_that_would_pay_again_needs_the_flag(
    daemon: DaemonStarter, observer: Observer, sim: SimulatorThread
) -> None:
    """provider_failed: `retry` refuses and changes nothing; `--pay-again` submits again (two submits)."""
    sim.configure(failure_rate=1.0)
    d = await daemon()
    await observer.publish({"id": "ops-2", "model": "google/veo-3.1", "prompt": "a storm"})
    assert (await observer.final("ops-2"))["error"]["code"] == "provider_failed"

    refused = await cli(d.settings, "retry", "ops-2")
    assert refused.exit_code == 1 and "--pay-again" in refused.output and "pay" in refused.output
    listed = json.loads((await cli(d.settings, "jobs", "--state", "failed", "--json")).output)
    assert [j["id"] for j in listed["jobs"]] == ["ops-2"] and listed["counts"]["failed"] == 1

    sim.configure(failure_rate=0.0)
    paid = await cli(d.settings, "retry", "ops-2", "--pay-again")
    assert paid.exit_code == 0, paid.output
    await until(completed(observer, "ops-2"), 30, "the resubmitted job completes")
    assert sim.stats()["submits"] == 2


async def test_refused_and_finished_jobs_are_not_retried(daemon: DaemonStarter, observer: Observer) -> None:
    d = await daemon()
    await observer.publish({"id": "ops-3", "model": "google/veo-3.1", "prompt": "a kite"})
    assert (await observer.final("ops-3"))["status"] == "completed"
    done = await cli(d.settings, "retry", "ops-3")
    assert done.exit_code == 1 and "nothing to retry" in done.output
    missing = await cli(d.settings, "retry", "nobody")
    assert missing.exit_code == 1 and "no job" in missing.output
    table = await cli(d.settings, "jobs", "--since", "1h", "--model", "google/veo-3.1")
    assert table.exit_code == 0 and "ops-3" in table.output and "counts: done 1" in table.output
    bad_age = await cli(d.settings, "jobs", "--since", "yesterday")
    assert bad_age.exit_code == 2 and "30s, 15m, 1h or 2d" in bad_age.output


async def test_the_tools_read_a_postgresql_ledger(
    pg_schema: tuple[asyncpg.Pool, str], make_settings: Callable[..., Settings]
) -> None:
    """The same commands on PostgreSQL: a listing, a job's story and a retry to download again."""
    from videoworker.ledger.base import JobRecord

    _, schema = pg_schema
    settings = make_settings(ledger_url=f"{PG_URL}?schema={schema}")
    ledger = open_ledger(settings.effective_ledger_url)
    await ledger.open()
    try:
        await ledger.claim(JobRecord("pg-1", JobState.RECEIVED, "m", {"id": "pg-1"}, owner="A"), None)
        await ledger.transition("pg-1", "A", JobState.RECEIVED, JobState.SUBMITTING)
        await ledger.transition("pg-1", "A", JobState.SUBMITTING, JobState.SUBMITTED, job_id="gen-9")
        await ledger.transition("pg-1", "A", JobState.SUBMITTED, JobState.COMPLETED)
        final = {"status": "failed", "error": {"code": "download_failed", "message": "cut", "retryable": True}}
        await ledger.transition("pg-1", "A", JobState.COMPLETED, JobState.FAILED, data={"final": final})
    finally:
        await ledger.close()

    listed = json.loads((await cli(settings, "jobs", "--json")).output)
    assert [j["id"] for j in listed["jobs"]] == ["pg-1"] and listed["counts"]["failed"] == 1
    # the simulator never heard of gen-9: the provider check refuses before anything changes
    checked = await cli(settings, "retry", "pg-1")
    assert checked.exit_code != 0 and "gen-9" in checked.output
    forced = await cli(settings, "retry", "pg-1", "--no-check")
    assert forced.exit_code == 0, forced.output
    story = json.loads((await cli(settings, "status", "pg-1", "--json")).output)
    assert story["state"] == "completed" and story["owner"] is None and story["retries"] == 1


async def test_finished_jobs_are_forgotten_after_the_dedup_window(
    daemon: DaemonStarter, observer: Observer, sim: SimulatorThread
) -> None:
    """With a tiny dedupe_days, a finished id is pruned and the same id is then accepted as a new job."""
    window = 2.0  # seconds
    d = await daemon(dedupe_days=window / 86400, outbox_retention=0, trim_after=0, prune_interval=0.2)
    await observer.publish({"id": "ops-4", "model": "google/veo-3.1", "prompt": "a tide"})
    assert (await observer.final("ops-4"))["status"] == "completed"
    finished = time.time()

    async def forgotten() -> bool:
        return await d.ledger.get("ops-4") is None

    await until(forgotten, 30, "the finished job forgotten")
    assert time.time() - finished >= window * 0.9  # not before the window ended
    await observer.publish({"id": "ops-4", "model": "google/veo-3.1", "prompt": "a tide"})
    await until(lambda: len(observer.reply_for("ops-4")) == 2, 30, "a second, new run of the id")
    assert sim.stats()["submits"] == 2
