"""Producers sharing a broker stay apart: reply_to, ids of unparsable bodies, user_id, previous_job_id."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from tests.core.conftest import Rig
from tests.core.test_intake import GOOD, delivery
from videoworker.core.intake import Accept, Refuse

RigFactory = Callable[..., Awaitable[Rig]]


async def flushed(r: Rig) -> list[tuple[str, dict[str, object]]]:
    """``(routing key, body)`` of everything the outbox published so far."""
    while await r.relay.flush():
        pass
    return [(m.routing_key, json.loads(m.body)) for m in r.publisher.messages]


async def test_a_reply_to_outside_the_pattern_gets_no_reply_but_the_job_runs(rig: RigFactory) -> None:
    r = await rig()
    verdict = await r.intake.take(delivery(GOOD, reply_to="videos.events.audit"))
    assert isinstance(verdict, Accept)
    await r.final("i-1")
    keys = [key for key, _ in await flushed(r)]
    assert "videos.events.audit" not in keys and "video.completed" in keys


async def test_a_configured_prefix_is_accepted(rig: RigFactory) -> None:
    r = await rig(reply_to_pattern=r"replies\.team-a\..+")
    assert isinstance(await r.intake.take(delivery(GOOD, reply_to="replies.team-a.q1")), Accept)
    await r.final("i-1")
    assert "replies.team-a.q1" in [key for key, _ in await flushed(r)]


async def test_an_unparsable_body_never_speaks_for_the_id_it_names(rig: RigFactory) -> None:
    """Bad JSON naming someone's id: no event on the exchange under it; only its own valid reply_to hears."""
    r = await rig()
    body = b'{"id": "victim-1", "model": "google/veo-3.1", "prompt": 5'
    verdict = await r.intake.take(delivery(body, reply_to="amq.gen-mine"))
    assert isinstance(verdict, Refuse) and not verdict.announce and verdict.reply_to == "amq.gen-mine"
    hostile = await r.intake.take(delivery(body, reply_to="victims.queue"))
    assert isinstance(hostile, Refuse) and not hostile.announce and hostile.reply_to is None


async def test_a_refusal_under_a_known_id_is_not_announced(rig: RigFactory) -> None:
    """A parsed but invalid request reusing a job's id is refused without an event on that job's id."""
    r = await rig()
    assert isinstance(await r.intake.take(delivery(GOOD)), Accept)
    bad = await r.intake.take(delivery({**GOOD, "resolution": "9000p"}))
    assert isinstance(bad, Refuse) and not bad.announce
    fresh = await r.intake.take(delivery({**GOOD, "id": "i-new", "resolution": "9000p"}))
    assert isinstance(fresh, Refuse) and fresh.announce


async def test_another_producer_reusing_an_id_gets_id_in_use_and_no_result(rig: RigFactory) -> None:
    r = await rig()
    assert isinstance(await r.intake.take(delivery(GOOD, user_id="team-a", reply_to="amq.gen-a")), Accept)
    await r.final("i-1")
    intruder = await r.intake.take(delivery(GOOD, user_id="team-b", reply_to="amq.gen-b"))
    assert isinstance(intruder, Refuse) and intruder.error.message.startswith("id in use")
    assert not intruder.announce and intruder.reply_to == "amq.gen-b"
    assert json.loads(intruder.event)["error"]["code"] == "invalid_request"
    anonymous = await r.intake.take(delivery(GOOD, reply_to="amq.gen-c"))
    assert isinstance(anonymous, Refuse)
    # the owner's own duplicate is still answered from the ledger
    assert isinstance(await r.intake.take(delivery(GOOD, user_id="team-a", reply_to="amq.gen-a2")), Accept)
    replied = [(key, body["status"]) for key, body in await flushed(r) if key.startswith("amq.gen-")]
    assert sorted(replied) == [("amq.gen-a", "completed"), ("amq.gen-a2", "completed")]
    assert r.sim.stats()["submits"] == 1


async def test_previous_job_id_must_be_one_of_this_producers_jobs(rig: RigFactory) -> None:
    r = await rig()
    assert isinstance(await r.intake.take(delivery(GOOD, user_id="team-a")), Accept)
    await r.final("i-1")
    row = await r.ledger.get("i-1")
    assert row is not None and row.job_id
    extend = {"model": "google/veo-3.1", "prompt": "go on", "duration": 4, "previous_job_id": row.job_id}

    mine = await r.intake.take(delivery({**extend, "id": "i-2"}, user_id="team-a"))
    assert isinstance(mine, Accept)
    theirs = await r.intake.take(delivery({**extend, "id": "i-3"}, user_id="team-b"))
    assert isinstance(theirs, Refuse) and theirs.error.field == "previous_job_id"
    made_up = await r.intake.take(delivery({**extend, "id": "i-4", "previous_job_id": "gen-x"}, user_id="team-a"))
    assert isinstance(made_up, Refuse) and made_up.error.message == theirs.error.message


async def test_foreign_previous_jobs_can_be_allowed(rig: RigFactory) -> None:
    r = await rig(allow_foreign_previous_job=True)
    extend = {"id": "i-5", "model": "google/veo-3.1", "prompt": "go on", "duration": 4, "previous_job_id": "gen-x"}
    assert isinstance(await r.intake.take(delivery(extend)), Accept)
