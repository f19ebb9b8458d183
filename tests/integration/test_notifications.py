"""Durable notifications end to end: the webhooks plugin, real daemons (killed, too), a real receiver.

The receiver verifies every delivery with the standardwebhooks library. What is proven:
a SIGKILL at any point loses no webhook (the owed row is in the ledger with the status
change), a delivery that happened but was not yet recorded comes again with the same
``webhook-id``, peers never deliver one notification at the same time, and a dead one is
replayed from the CLI.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.conftest import ROOT, DaemonProcess, Observer
from videoworker.config import Settings
from videoworker.testing.recorder import until
from videoworker_devtools.receivers import HttpReceiver, Received
from videoworker_devtools.simulator import SimulatorThread

SECRET = "whsec_" + base64.b64encode(b"videoworker-test-webhook-secret!").decode()
MODEL = "google/veo-3.1"


def webhooks(url: str, **extra: Any) -> dict[str, Any]:
    """A `[plugins.webhooks]` section with one operator endpoint, `ops`, for every status."""
    statuses = ["submitted", "in_progress", "completed", "failed"]
    return {"webhooks": {"endpoints": [{"name": "ops", "url": url, "secret": SECRET, "statuses": statuses}], **extra}}


def verified(received: Received) -> dict[str, Any]:
    """The event a delivery carried, after its signature checked out (raises otherwise)."""
    body: dict[str, Any] = Webhook(SECRET).verify(received.body, received.headers)
    return body


def whole(rx: HttpReceiver) -> list[Received]:
    """The requests that arrived whole. A daemon SIGKILLed while sending leaves a cut body, which the stand-in
    receiver still records (and answers, to nobody); a real receiver refuses it, and the sender saw no answer."""
    lengths = ((r, {k.lower(): v for k, v in r.headers.items()}.get("content-length")) for r in rx.ok())
    return [r for r, length in lengths if length is None or len(r.body) == int(length)]


def statuses_for(rx: HttpReceiver, request_id: str) -> list[str]:
    return [verified(r)["status"] for r in rx.ok() if r.json()["id"] == request_id]


def env_for(section: dict[str, Any]) -> dict[str, str]:
    return {"VIDEOWORKER_PLUGINS": json.dumps(section), "VIDEOWORKER_RETRY_BACKOFF_BASE": "0.2"}


async def exited(proc: DaemonProcess, timeout: float = 60) -> int:
    await until(lambda: not proc.alive(), timeout, "the daemon to die at its crash point")
    return proc.wait()


async def test_a_webhook_owed_when_the_daemon_is_killed_arrives_after_the_restart(
    process: Callable[..., DaemonProcess], observer: Observer, sim: SimulatorThread
) -> None:
    """The receiver is down while the job finishes; SIGKILL; once it is up, the restarted daemon delivers."""
    with HttpReceiver(status=503) as rx:
        first = process(env=env_for(webhooks(rx.url)))
        first.start()
        await observer.publish({"id": "wh-kill", "model": MODEL, "prompt": "a boat"}, correlation_id="wh-kill")
        await observer.final("wh-kill", timeout=60)
        await until(lambda: rx.received, 30, "a refused delivery attempt")
        first.kill()
        first.wait()
        rx.status = 200
        second = process(env=env_for(webhooks(rx.url)))
        second.start()
        await until(lambda: "completed" in statuses_for(rx, "wh-kill"), 60, "the completed webhook after the restart")
        statuses = statuses_for(rx, "wh-kill")
        assert statuses[0] == "submitted" and statuses[-1] == "completed"  # in order, once the receiver is back
        completed = [r for r in rx.ok() if r.json()["status"] == "completed"]
        assert completed[0].headers["webhook-id"] == "wh-kill:completed:webhooks:endpoint:ops"
        assert verified(completed[0]) == observer.reply_for("wh-kill")[0]  # exactly the published event


async def test_a_delivery_not_yet_recorded_is_repeated_with_the_same_id(
    process: Callable[..., DaemonProcess], observer: Observer, sim: SimulatorThread
) -> None:
    """Killed between the receiver's 2xx and the ledger's mark: delivered again, same webhook-id, never lost."""
    with HttpReceiver() as rx:
        first = process(env={**env_for(webhooks(rx.url)), "VIDEOWORKER_CRASHPOINT": "after_notify"})
        first.start()
        await observer.publish({"id": "wh-twice", "model": MODEL, "prompt": "a boat"})
        assert await exited(first) < 0
        killed_after = [r.headers["webhook-id"] for r in rx.ok()]
        assert killed_after == ["wh-twice:submitted:webhooks:endpoint:ops"]
        second = process(env=env_for(webhooks(rx.url)))
        second.start()
        await until(lambda: "completed" in statuses_for(rx, "wh-twice"), 60, "the completed webhook")
        ids = rx.by_id()
        assert ids["wh-twice:submitted:webhooks:endpoint:ops"] == 2  # the one repeat, same id: receivers drop it
        assert all(n == 1 for key, n in ids.items() if not key.endswith(":submitted:webhooks:endpoint:ops"))


@pytest.mark.slow
async def test_sigkill_chaos_loses_no_webhook(
    process: Callable[..., DaemonProcess], observer: Observer, sim: SimulatorThread
) -> None:
    """30 jobs, the daemon SIGKILLed 5 times at random: every job's final webhook arrives; repeats are counted."""
    rng = random.Random(23)
    sim.configure(job_seconds=(1.0, 3.0))
    ids = [f"chaos-wh-{i}" for i in range(30)]
    with HttpReceiver(hold=0.05) as rx:
        env = env_for(webhooks(rx.url))
        daemon = process(env=env)
        daemon.start()
        for request_id in ids:
            await observer.publish({"id": request_id, "model": MODEL, "prompt": request_id})
        for _ in range(5):
            await asyncio.sleep(rng.uniform(1.0, 2.5))  # a random moment to kill at, not a wait for a condition
            daemon.kill()
            daemon.wait()
            daemon = process(env=env)
            daemon.start()
        await observer.wait(lambda: len({b["id"] for b, _ in observer.replies}) == 30, 120, "every final reply")
        finals = {b["id"]: b["status"] for b, _ in observer.replies}

        def every_final_delivered() -> bool:
            got = {r.json()["id"] for r in whole(rx) if r.json()["status"] == finals.get(r.json()["id"])}
            return got >= set(ids)

        await until(every_final_delivered, 120, "every job's final webhook")
        repeats = sum(n - 1 for n in rx.by_id().values())
        cut = len(rx.ok()) - len(whole(rx))
        print(
            f"\nwebhook chaos: 5 kills, {len(ids)} jobs, 0 final webhooks lost, {repeats} repeated deliveries "
            f"({cut} cut short by a kill)"
        )
        for received in whole(rx):
            verified(received)


async def test_peers_never_deliver_one_notification_at_the_same_time(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Three daemons share the ledger's notifications; a slow receiver sees each webhook-id one at a time."""
    with HttpReceiver(hold=0.3) as rx:
        for name in ("peer-a", "peer-b", "peer-c"):
            await daemon(instance_id=name, plugin_config=webhooks(rx.url))
        ids = [f"peer-{i}" for i in range(8)]
        for request_id in ids:
            await observer.publish({"id": request_id, "model": MODEL, "prompt": request_id})

        def all_completed() -> bool:
            return all("completed" in statuses_for(rx, request_id) for request_id in ids)

        await until(all_completed, 60, "every completed webhook")
        assert max(rx.peak_in_flight.values()) == 1
        assert all(n == 1 for n in rx.by_id().values()), rx.by_id()


async def test_a_dead_notification_is_listed_and_replayed_from_the_cli(
    daemon: Any, observer: Observer, sim: SimulatorThread, make_settings: Callable[..., Settings]
) -> None:
    """A request URL answering 410 is dead at once; `notifications --failed` shows it; `replay --all` delivers it."""
    with HttpReceiver(status=410) as rx:
        section = webhooks("http://127.0.0.1:9/unused", allow_request_urls=True, request_url_secret=SECRET)
        section["webhooks"]["endpoints"] = []
        section["webhooks"]["request_url_hosts"] = [f"127.0.0.1:{rx.port}"]
        d = await daemon(plugin_config=section)
        request = {
            "id": "wh-dead",
            "model": MODEL,
            "prompt": "a boat",
            "delivery": {"webhooks": {"url": rx.url + "/x"}},
        }
        await observer.publish(request)
        await observer.final("wh-dead")

        async def dead() -> list[Any]:
            return await d.ledger.list_notifications(state="dead", request_id="wh-dead")

        await until(dead, 30, "the dead notification")
        env = {**os.environ, "VIDEOWORKER_LEDGER_URL": d.settings.effective_ledger_url, "OPENROUTER_API_KEY": "k"}
        listed = _cli(["notifications", "--failed", "--json"], env)
        rows = [row for row in json.loads(listed) if row["request_id"] == "wh-dead"]
        assert rows and rows[0]["state"] == "dead" and "410" in rows[0]["last_error"]
        rx.status = 200
        assert "will be delivered again" in _cli(["notifications", "replay", "--all"], env)
        await until(lambda: "completed" in statuses_for(rx, "wh-dead"), 30, "the replayed webhook")


def _cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "videoworker", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
