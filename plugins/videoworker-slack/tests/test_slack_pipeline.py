"""The plugin in the real pipeline, with videoworker's test fixtures: a daemon, the simulator, RabbitMQ."""

from __future__ import annotations

from typing import Any

from slack_fakes import Answer, Receiver


async def test_a_completed_job_reaches_slack_through_the_daemon(
    videoworker_daemon: Any, videoworker_recorder: Any, receiver: Receiver
) -> None:
    """A 429 first, then the message: the daemon's durable queue retries it and marks it delivered."""
    receiver.answer(Answer(status=429, headers={"Retry-After": "0"}))
    await videoworker_daemon(plugin_config={"slack": {"webhook_url": receiver.url}})
    await videoworker_recorder.publish({"id": "slack-e2e", "model": "google/veo-3.1", "prompt": "a red kite"})
    assert (await videoworker_recorder.final("slack-e2e"))["status"] == "completed"
    posts = await receiver.wait_for_posts(2, timeout=30)
    assert "slack-e2e" in str(posts[-1].json) and posts[-1].json["blocks"]
    rows = await videoworker_recorder.settled("slack-e2e")
    assert [(n.status, n.state, n.attempts) for n in rows] == [("completed", "delivered", 2)]
