"""Every kind of bad input: a failed event to reply_to, a dead letter with the reason, no submit, daemon alive."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.conftest import Observer
from videoworker_devtools.simulator import SimulatorThread

GOOD = {"model": "google/veo-3.1", "prompt": "a cat", "duration": 4}

CASES: list[tuple[str, bytes, str, str]] = [
    # (name, body, expected error code, a phrase the reason must contain)
    ("invalid json", b"{not json", "invalid_request", "not valid JSON"),
    ("json list", b"[1, 2]", "invalid_request", "JSON object"),
    ("json string", b'"hello"', "invalid_request", "JSON object"),
    ("missing prompt", json.dumps({"model": "google/veo-3.1"}).encode(), "invalid_request", "prompt"),
    ("empty prompt", json.dumps({**GOOD, "prompt": "   "}).encode(), "invalid_request", "prompt"),
    ("prompt too long", json.dumps({**GOOD, "prompt": "x" * 9000}).encode(), "invalid_request", "over the limit"),
    ("duration wrong type", json.dumps({**GOOD, "duration": "long"}).encode(), "invalid_request", "duration"),
    ("resolution unsupported", json.dumps({**GOOD, "resolution": "9000p"}).encode(), "model_unsupported", "9000p"),
    ("aspect ratio unsupported", json.dumps({**GOOD, "aspect_ratio": "5:1"}).encode(), "model_unsupported", "5:1"),
    ("size unsupported", json.dumps({**GOOD, "size": "7x7"}).encode(), "model_unsupported", "size"),
    ("duration unsupported", json.dumps({**GOOD, "duration": 7}).encode(), "model_unsupported", "duration"),
    ("unknown field", json.dumps({**GOOD, "colour": "red"}).encode(), "invalid_request", "'colour'"),
    ("not utf-8", b'{"model": "google/veo-3.1", "prompt": "\xff\xfe"}', "invalid_request", "UTF-8"),
    ("not a video model", json.dumps({**GOOD, "model": "openai/gpt-4o"}).encode(), "model_unsupported", "gpt-4o"),
    ("unknown model", json.dumps({**GOOD, "model": "nobody/nothing"}).encode(), "model_unsupported", "nothing"),
    ("bad id", json.dumps({**GOOD, "id": "has spaces"}).encode(), "invalid_request", "id"),
]


@pytest.mark.parametrize(("name", "body", "code", "phrase"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_is_answered_and_dead_lettered(
    daemon: Any, observer: Observer, sim: SimulatorThread, name: str, body: bytes, code: str, phrase: str
) -> None:
    """The producer gets a failed event naming the problem; the message lands in the DLQ with the reason."""
    d = await daemon()
    await observer.publish(body, correlation_id=f"c-{name}", message_id=f"m-{len(name)}")
    await observer.wait(lambda: observer.replies and observer.dead, what="reply and dead letter")
    event, msg = observer.replies[0]
    assert msg.correlation_id == f"c-{name}"
    assert event["status"] == "failed"
    assert event["error"]["code"] == code
    assert phrase in event["error"]["message"]
    dead = observer.dead[0]
    assert dead.body == body
    assert dead.headers["x-videoworker-error-code"] == code
    assert phrase in str(dead.headers["x-videoworker-error"])
    assert sim.stats()["submits"] == 0
    # the daemon is still taking work
    await observer.publish({**GOOD, "id": "after-bad"})
    await observer.wait(lambda: observer.reply_for("after-bad"), what="a good request after the bad one")
    assert observer.reply_for("after-bad")[0]["status"] == "completed"
    assert d.broker.consuming


async def test_oversized_message_is_refused(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    """A message over max_message_bytes is refused without being parsed."""
    await daemon(max_message_bytes=1000)
    await observer.publish({**GOOD, "metadata": {"pad": "x" * 2000}})
    await observer.wait(lambda: observer.replies and observer.dead, what="reply and dead letter")
    assert "over the limit of 1000" in observer.replies[0][0]["error"]["message"]
    assert sim.stats()["submits"] == 0


async def test_bad_input_without_reply_to_is_still_dead_lettered(daemon: Any, observer: Observer) -> None:
    """No reply_to: nothing to answer, but the dead letter happens, and no event speaks for an id it guessed."""
    await daemon()
    await observer.publish(b"nonsense", reply=False, message_id="lonely")
    await observer.publish(b'{"id": "victim-7", "prompt": 5', reply=False)
    await observer.wait(lambda: len(observer.dead) == 2, what="two dead letters")
    assert {d.headers["x-videoworker-error-code"] for d in observer.dead} == {"invalid_request"}
    # a later good request's events have arrived: any event for the refused ones would have come first
    await observer.publish({**GOOD, "id": "after-refusals"})
    await observer.final("after-refusals")
    await observer.wait(lambda: observer.finals("after-refusals"), what="the good request's final event")
    assert observer.finals("lonely") == [] and observer.finals("victim-7") == []


async def test_a_reply_to_outside_the_pattern_is_not_answered(daemon: Any, observer: Observer) -> None:
    """A reply_to naming someone else's queue gets nothing, refused or not; the request itself still runs."""
    await daemon()
    queue = await observer.channel.declare_queue(f"someone-elses-{uuid.uuid4().hex[:8]}", auto_delete=True)
    await observer.publish({**GOOD, "id": "aimed"}, reply_to=queue.name)
    await observer.publish(b"nonsense", reply_to=queue.name, message_id="aimed-bad")
    await observer.wait(lambda: observer.finals("aimed") and observer.dead, what="the job's final and the dead letter")
    declared = await observer.channel.declare_queue(queue.name, passive=True)
    assert declared.declaration_result.message_count == 0


async def test_models_list_unavailable_falls_back_to_documented_values(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """When /videos/models fails, 9000p is still refused by the documented list."""
    sim.configure(error_rate=1.0, error_statuses=[503])
    await daemon()
    await observer.publish({**GOOD, "resolution": "9000p"})
    await observer.wait(lambda: observer.replies, what="reply")
    assert observer.replies[0][0]["error"]["code"] == "model_unsupported"
    assert sim.stats()["submits"] == 0


async def test_a_duplicate_from_another_producer_gets_id_in_use(daemon: Any, observer: Observer) -> None:
    """RabbitMQ vouches for user_id; a second producer reusing the id learns nothing of the first's job."""
    await daemon()
    await observer.publish({**GOOD, "id": "owned"}, user_id="guest")
    first = await observer.final("owned")
    assert first["status"] == "completed"
    await observer.publish({**GOOD, "id": "owned"})  # no user_id: not the producer that owns the id
    await observer.wait(lambda: len(observer.reply_for("owned")) == 2, what="the intruder's answer")
    answer = observer.reply_for("owned")[1]
    assert answer["status"] == "failed" and answer["error"]["message"].startswith("id in use")
    assert answer["job_id"] is None and answer["outputs"] == [] and answer["error"]["code"] == "invalid_request"
    assert observer.dead and observer.dead[-1].headers["x-videoworker-error"].startswith("id in use")
