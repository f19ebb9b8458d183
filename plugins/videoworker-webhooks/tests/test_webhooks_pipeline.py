"""The plugin in the real pipeline, with videoworker's test fixtures: a daemon, the simulator, RabbitMQ."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from webhooks_support import SECRET, Receiver


async def test_every_status_of_a_job_reaches_the_endpoint_signed_and_in_order(
    videoworker_daemon: Any, videoworker_recorder: Any, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """Through the daemon's durable queue: each status change, in order, verified by the library, once each."""
    receiver = await receivers()
    everything = ["submitted", "in_progress", "completed", "failed"]
    endpoint = {"name": "ops", "url": receiver.url(), "secret": SECRET, "statuses": everything}
    await videoworker_daemon(plugin_config={"webhooks": {"endpoints": [endpoint]}})
    await videoworker_recorder.publish({"id": "wh-e2e", "model": "google/veo-3.1", "prompt": "a red kite"})
    final = await videoworker_recorder.final("wh-e2e")
    rows = await videoworker_recorder.settled("wh-e2e")
    assert {n.state for n in rows} == {"delivered"}
    delivered = [d.payload for d in receiver.verified]
    assert [body["status"] for body in delivered] == [n.status for n in rows]  # in order, each once
    assert delivered[-1] == final
