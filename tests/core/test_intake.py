"""Intake without a broker: each delivery gets one verdict, and what it claims is in the real ledger."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from tests.core.conftest import Rig
from videoworker import InvalidRequest, VideoRequest, hookimpl
from videoworker.core.intake import Accept, Delivery, Refuse, Requeue
from videoworker.core.states import JobState
from videoworker.testing.recorder import until

RigFactory = Callable[..., Awaitable[Rig]]


def delivery(body: dict[str, object] | bytes, **props: object) -> Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Delivery(raw, **props)  # type: ignore[arg-type]


GOOD = {"id": "i-1", "model": "google/veo-3.1", "prompt": "a boat", "duration": 4}


async def test_a_good_request_is_claimed_then_accepted(rig: RigFactory) -> None:
    """The claim is durable before the verdict, and the engine holds the new job."""
    r = await rig()
    verdict = await r.intake.take(delivery(GOOD, reply_to="amq.gen-q", correlation_id="c"))
    assert isinstance(verdict, Accept)
    row = await r.ledger.get("i-1")
    assert row is not None and row.owner == r.settings.instance_id and row.state is not JobState.FAILED
    assert "i-1" in r.engine.jobs


async def test_a_duplicate_is_accepted_and_never_submitted_again(rig: RigFactory) -> None:
    """The second delivery of an id is answered from the ledger: one submit, and its reply_to gets the final."""
    r = await rig()
    assert isinstance(await r.intake.take(delivery(GOOD)), Accept)
    await r.final("i-1")
    assert isinstance(await r.intake.take(delivery(GOOD, reply_to="amq.gen-late", correlation_id="late")), Accept)
    while await r.relay.flush():
        pass
    late = [m for m in r.publisher.messages if m.routing_key == "amq.gen-late"]
    assert len(late) == 1 and late[0].correlation_id == "late" and json.loads(late[0].body)["status"] == "completed"
    assert r.sim.stats()["submits"] == 1


async def test_a_claim_that_landed_unheld_is_taken_up_by_its_redelivery(rig: RigFactory) -> None:
    """The claim committed but its handling was cancelled (a broken channel), so no step holds the job and
    our own lease renewal keeps peers off it. The redelivery finds it ours and unheld: it runs, once."""
    r = await rig()
    claimed = await r.claim("i-1")  # durable under our name, as a cancelled intake leaves it
    r.engine.jobs.drop("i-1")
    assert claimed.record.state is JobState.RECEIVED and "i-1" not in r.engine.jobs
    assert isinstance(await r.intake.take(delivery(GOOD)), Accept)
    assert "i-1" in r.engine.jobs
    row = await r.final("i-1")
    assert row.state is JobState.DONE and r.sim.stats()["submits"] == 1
    # a late answer to the first claim: the compare-and-set refuses the stale `received`, nothing is sent
    r.engine.accept(claimed.record, claimed.request)
    await until(lambda: "i-1" not in r.engine.jobs, 5, "the stale job to be let go")
    again = await r.ledger.get("i-1")
    assert again is not None and again.state is JobState.DONE and r.sim.stats()["submits"] == 1


async def test_bad_json_is_refused_with_a_failed_event_and_nothing_claimed(rig: RigFactory) -> None:
    """Unparsable input gets a refusal naming the problem, under the AMQP message_id; the ledger is untouched."""
    r = await rig()
    verdict = await r.intake.take(delivery(b"{not json", message_id="m-bad"))
    assert isinstance(verdict, Refuse) and verdict.request_id == "m-bad"
    event = json.loads(verdict.event)
    assert event["status"] == "failed" and event["error"]["code"] == "invalid_request"
    assert "JSON" in event["error"]["message"]
    assert await r.ledger.get("m-bad") is None


async def test_an_unsupported_value_is_refused_as_model_unsupported(rig: RigFactory) -> None:
    """The capability check refuses a resolution the model does not advertise, before any money is spent."""
    r = await rig()
    verdict = await r.intake.take(delivery({**GOOD, "id": "i-9000p", "resolution": "9000p"}))
    assert isinstance(verdict, Refuse) and verdict.error.code == "model_unsupported"
    assert verdict.error.field == "resolution"
    assert r.sim.stats()["submits"] == 0


async def test_an_async_validator_can_refuse(rig: RigFactory) -> None:
    """An ``async def`` validator is awaited during intake and its refusal becomes the verdict."""

    class Moderator:
        @hookimpl
        async def videoworker_validate_request(self, request: VideoRequest) -> None:
            if "boat" in (request.prompt or ""):
                raise InvalidRequest("boats are not allowed", field="prompt")

    r = await rig(plugins={"moderator": Moderator()})
    verdict = await r.intake.take(delivery(GOOD))
    assert isinstance(verdict, Refuse) and verdict.error.message == "boats are not allowed"


async def test_a_crashing_validator_returns_the_delivery(rig: RigFactory) -> None:
    """A plugin bug is not the producer's fault: the delivery goes back (the broker's limit ends a poison one)."""

    class Buggy:
        @hookimpl
        def videoworker_validate_request(self) -> None:
            raise KeyError("oops")

    r = await rig(plugins={"buggy": Buggy()})
    verdict = await r.intake.take(delivery(GOOD))
    assert isinstance(verdict, Requeue) and verdict.pause is None
    assert await r.ledger.get("i-1") is None


async def test_a_ledger_failure_returns_the_delivery_and_holds_intake(rig: RigFactory) -> None:
    """When the claim cannot be written the delivery goes back after a fixed pause and intake is told to hold."""
    r = await rig()
    await r.ledger.close()
    verdict = await r.intake.take(delivery(GOOD))
    assert isinstance(verdict, Requeue) and verdict.pause == 1.0 and verdict.reason == "ledger unavailable"
    assert r.ledger_errors == [1]
    await r.ledger.open()
