"""The daily budget without a broker: reserved with the submit, settled with the real cost, released when unpaid.

The built-in ``budget`` plugin estimates from the simulator's ``pricing_skus``
(google/veo-3.1: $0.50 per second at 720p), so a 4-second request is estimated at $2.00,
which is also what the simulator charges.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from tests.core.conftest import Rig
from videoworker.core.budget import utc_day
from videoworker.core.intake import Delivery, Refuse
from videoworker.core.states import JobState
from videoworker.testing.recorder import until

RigFactory = Callable[..., Awaitable[Rig]]


def budget(**section: Any) -> dict[str, Any]:
    return {"budget": section}


async def accept(r: Rig, request_id: str) -> None:
    job = await r.claim(request_id, resolution="720p")
    r.engine.accept(job.record, job.request)


async def test_a_job_reserves_its_estimate_and_settles_its_real_cost(rig: RigFactory) -> None:
    """While it runs the estimate is reserved; when it ends the day's spend holds the reported cost."""
    r = await rig(plugin_config=budget(daily_usd=100))
    r.sim.configure(never_finish_rate=1.0)
    await accept(r, "b-1")
    await until(lambda: r.sim.stats()["submits"] == 1, 10, "the submit")
    assert await r.ledger.budget_day(utc_day()) == (0.0, 2.0)
    r.sim.configure(never_finish_rate=0.0)  # the running job keeps its fate; the next one finishes
    await accept(r, "b-2")
    row = await r.final("b-2")
    assert row.data["final"]["cost"] == {"estimate_usd": 2.0, "actual_usd": 2.0}
    spent, reserved = await r.ledger.budget_day(utc_day())
    assert (spent, reserved) == (2.0, 2.0)  # b-2 settled, b-1 still reserved


async def test_a_submit_that_does_not_fit_the_day_fails_over_budget_and_is_not_sent(rig: RigFactory) -> None:
    """With $3 a day and $2 reserved, the next $2 submit fails over_budget without reaching the provider."""
    r = await rig(plugin_config=budget(daily_usd=3))
    r.sim.configure(never_finish_rate=1.0)
    await accept(r, "b-first")
    await until(lambda: r.sim.stats()["submits"] == 1, 10, "the first submit")
    await accept(r, "b-second")
    row = await r.final("b-second")
    error = row.data["final"]["error"]
    assert row.state is JobState.FAILED and error["code"] == "over_budget"
    assert "$2.0000" in error["message"] and "$3.00" in error["message"]
    assert r.sim.stats()["submits"] == 1
    assert await r.ledger.budget_day(utc_day()) == (0.0, 2.0)


async def test_a_submit_the_provider_did_not_take_gives_its_reservation_back(rig: RigFactory) -> None:
    """A 429 releases the reservation; the retry reserves again; one settlement when the job ends."""
    r = await rig(plugin_config=budget(daily_usd=3))
    r.sim.configure(error_rate=1.0, error_statuses=[429], retry_after=0)
    await accept(r, "b-busy")
    await until(lambda: r.sim.stats()["errors_injected"] >= 2, 10, "two refused submits")
    r.sim.configure(error_rate=0.0)
    row = await r.final("b-busy")
    assert row.state is JobState.DONE
    assert await r.ledger.budget_day(utc_day()) == (2.0, 0.0)  # never counted twice


async def test_a_request_over_the_per_request_limit_is_refused_at_intake(rig: RigFactory) -> None:
    """per_request_usd refuses before anything is claimed or reserved, naming the estimate and the limit."""
    r = await rig(plugin_config=budget(per_request_usd=1.5))
    body = {"id": "b-dear", "model": "google/veo-3.1", "prompt": "waves", "duration": 4, "resolution": "720p"}
    verdict = await r.intake.take(Delivery(json.dumps(body).encode()))
    assert isinstance(verdict, Refuse) and verdict.error.code == "over_budget"
    assert "$2.00" in verdict.error.message and "$1.50" in verdict.error.message
    assert await r.ledger.get("b-dear") is None


async def test_an_unknown_price_follows_the_policy(rig: RigFactory) -> None:
    """A model without a listed price is refused with unknown_price=refuse, and let through with allow."""
    unpriced = {"id": "sim/unpriced", "name": "no prices"}
    for policy, refused in (("refuse", True), ("allow", False)):
        r = await rig(plugin_config=budget(daily_usd=10, unknown_price=policy))
        r.sim.configure(models=[unpriced])
        body = {"id": f"b-{policy}", "model": "sim/unpriced", "prompt": "waves", "duration": 4}
        verdict = await r.intake.take(Delivery(json.dumps(body).encode()))
        assert isinstance(verdict, Refuse) is refused, policy
