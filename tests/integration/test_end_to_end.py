"""The whole path against real RabbitMQ and the real simulator: request in, stored video and events out."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import Observer
from videoworker_devtools.simulator import SimulatorThread


def _request(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"req-{i}",
        "model": "google/veo-3.1",
        "prompt": f"prompt number {i}",
        "duration": 4,
        "resolution": "720p",
        "metadata": {"n": i},
        **extra,
    }


def _submits_for(sim: SimulatorThread, prompt: str) -> int:
    return sum(1 for job in sim.stats()["jobs"].values() if job["body"].get("prompt") == prompt)


async def test_request_becomes_stored_video_and_events(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    """One request: one submit, stored bytes equal the simulator's, events in order, reply with correlation id."""
    await daemon()
    await observer.publish(_request(1), correlation_id="corr-1")
    await observer.wait(lambda: observer.reply_for("req-1"), what="the final reply")
    final = observer.reply_for("req-1")[0]
    assert final["status"] == "completed", final
    assert final["metadata"] == {"n": 1}
    assert final["error"] is None
    (reply_msg,) = [m for b, m in observer.replies if b["id"] == "req-1"]
    assert reply_msg.correlation_id == "corr-1"
    output = final["outputs"][0]
    path = Path(urlsplit(output["location"]).path)
    data = path.read_bytes()
    assert path.name == "0.mp4" and path.parent.name == "req-1"
    assert data[4:8] == b"ftyp"
    job = sim.stats()["jobs"][final["job_id"]]
    assert hashlib.sha256(data).hexdigest() == job["sha256"][0] == output["sha256"]
    assert output["bytes"] == len(data) and output["locations"]["local"] == output["location"]
    assert final["usage"]["cost"] is not None
    assert set(final["timestamps"]) >= {"received", "submitted", "completed", "delivered"}
    await observer.wait(lambda: observer.finals("req-1"), what="the completed event on the exchange")
    statuses = [key for key, body, _ in observer.events if body["id"] == "req-1"]
    assert statuses[0] == "video.submitted" and statuses[-1] == "video.completed"
    assert _submits_for(sim, "prompt number 1") == 1
    assert sim.stats()["submits"] == 1


async def test_many_requests_all_complete(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    """Twenty concurrent requests each end completed with exactly one submit."""
    await daemon()
    for i in range(20):
        await observer.publish(_request(i))
    await observer.wait(lambda: len(observer.replies) >= 20, timeout=60, what="20 replies")
    assert {b["status"] for b, _ in observer.replies} == {"completed"}
    assert sim.stats()["submits"] == 20


async def test_duplicate_id_gives_one_submit(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    """The same id published twice (concurrently) and again after completion: one submit, every reply answered."""
    await daemon()
    await observer.publish(_request(5), correlation_id="a")
    await observer.publish(_request(5), correlation_id="b")
    await observer.wait(lambda: len(observer.reply_for("req-5")) >= 1, what="first reply")
    await observer.publish(_request(5), correlation_id="c")
    await observer.wait(
        lambda: {m.correlation_id for _, m in observer.replies} >= {"a", "b", "c"},
        what="a reply for every correlation id",
    )
    assert {b["status"] for b in observer.reply_for("req-5")} == {"completed"}
    assert len({b["job_id"] for b in observer.reply_for("req-5")}) == 1
    assert sim.stats()["submits"] == 1
    assert len(observer.finals("req-5")) == 1


async def test_message_id_is_the_idempotency_key(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    """Without an id in the body, the AMQP message_id deduplicates."""
    await daemon()
    body = _request(7)
    del body["id"]
    await observer.publish(body, message_id="amqp-7", correlation_id="x")
    await observer.publish(body, message_id="amqp-7", correlation_id="y")
    await observer.wait(lambda: len(observer.reply_for("amqp-7")) >= 2, what="two replies")
    assert sim.stats()["submits"] == 1


async def test_provider_failure_becomes_failed_event(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    """A job the provider fails ends failed with provider_failed, and nothing is stored."""
    sim.configure(failure_rate=1.0)
    d = await daemon()
    await observer.publish(_request(9))
    await observer.wait(lambda: observer.reply_for("req-9"), what="reply")
    final = observer.reply_for("req-9")[0]
    assert final["status"] == "failed"
    assert final["error"]["code"] == "provider_failed"
    assert final["outputs"] == []
    assert not (d.settings.data_dir / "videos" / "req-9").exists()


async def test_job_that_never_finishes_times_out(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    """A job stuck in progress fails with `timeout` after job_timeout."""
    sim.configure(never_finish_rate=1.0)
    await daemon(job_timeout=1.5)
    await observer.publish(_request(10))
    await observer.wait(lambda: observer.reply_for("req-10"), what="reply")
    final = observer.reply_for("req-10")[0]
    assert final["error"]["code"] == "timeout"
    assert sim.stats()["submits"] == 1


async def test_several_outputs_are_all_stored(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    """A job with two outputs downloads index 0 and 1 and stores both."""
    sim.configure(outputs=2)
    await daemon()
    await observer.publish(_request(11))
    await observer.wait(lambda: observer.reply_for("req-11"), what="reply")
    final = observer.reply_for("req-11")[0]
    assert [o["index"] for o in final["outputs"]] == [0, 1]
    shas = sim.stats()["jobs"][final["job_id"]]["sha256"]
    assert [o["sha256"] for o in final["outputs"]] == shas
    assert shas[0] != shas[1]


async def test_events_carry_stable_message_ids(daemon: Any, observer: Observer) -> None:
    """Each event's AMQP message_id is `<id>:<status>` so consumers can drop repeats."""
    await daemon()
    await observer.publish(_request(12))
    await observer.wait(lambda: observer.finals("req-12"), what="final")
    ids = {m.message_id for _, b, m in observer.events if b["id"] == "req-12"}
    assert "req-12:completed" in ids and "req-12:submitted" in ids
    body = json.loads(next(m.body for _, b, m in observer.events if m.message_id == "req-12:completed"))
    assert body["status"] == "completed"


async def test_three_concurrent_duplicates_then_a_late_one(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Published 3 times at once, then again after completion to a new reply queue: one submit, one video."""
    import asyncio

    d = await daemon()
    await asyncio.gather(*(observer.publish(_request(20), correlation_id=f"dup-{i}") for i in range(3)))
    await observer.wait(lambda: len(observer.reply_for("req-20")) >= 3, what="three replies")
    late = await observer.channel.declare_queue(exclusive=True)
    late_replies: list[dict[str, Any]] = []

    async def on_late(message: Any) -> None:
        late_replies.append(json.loads(message.body))
        await message.ack()

    await late.consume(on_late)
    await observer.publish(_request(20), reply_to=late.name, correlation_id="late")
    await observer.wait(lambda: late_replies, what="the final event sent again to the later reply_to")
    assert late_replies[0]["status"] == "completed"
    assert late_replies[0]["job_id"] == observer.reply_for("req-20")[0]["job_id"]
    assert sim.stats()["submits"] == 1
    assert [p.name for p in (d.settings.data_dir / "videos" / "req-20").iterdir()] == ["0.mp4"]
    assert len(observer.finals("req-20")) == 1


async def test_a_restarted_daemon_keeps_what_the_poll_planner_learned(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Durations learned before a stop place the first poll of the next start's jobs (no cold backoff)."""
    d = await daemon()
    for i in range(5):
        await observer.publish(_request(30 + i))
    await observer.wait(lambda: len(observer.replies) >= 5, timeout=60, what="5 replies")
    d.request_stop("restart")
    await asyncio.wait_for(daemon.running[-1][1], 30)
    saved = json.loads((d.settings.data_dir / "poll-durations.json").read_text())
    assert len(saved["models"]["google/veo-3.1"]) == 5
    again = await daemon(data_dir=d.settings.data_dir)
    assert again.engine.ctx.planner.window("google/veo-3.1") is not None
