"""The daily budget under concurrency: three daemons, sixteen concurrent submits each, one PostgreSQL ledger.

Every reservation is checked and added in one statement under the day row's lock, so
however the submits interleave across instances, the day's commitments (spent plus
reserved) never pass the limit. The simulator charges exactly the estimate here, so the
spend is exactly the reservations that fitted.
"""

from __future__ import annotations

import math
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from tests.conftest import PG_URL, Observer
from videoworker.core.budget import utc_day
from videoworker_devtools.simulator import SimulatorThread

LIMIT = 25.0
ESTIMATE = 2.0  # google/veo-3.1 at 720p: $0.50 a second, 4 seconds
REQUESTS = 60


async def test_the_daily_limit_holds_across_instances_and_concurrent_submits(
    pg_schema: tuple[asyncpg.Pool, str], daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """60 submits race for a $25 day across 3 instances × 16 concurrent submits: exactly 12 are sent."""
    _, schema = pg_schema
    sim.configure(job_seconds=[0.5, 1.0])
    daemons = [
        await daemon(
            instance_id=f"spend-{i}",
            ledger_url=f"{PG_URL}?schema={schema}",
            max_concurrent_submits=16,
            plugin_config={"budget": {"daily_usd": LIMIT}},
        )
        for i in range(3)
    ]
    for i in range(REQUESTS):
        body = {"id": f"spend-{i}", "model": "google/veo-3.1", "prompt": f"race {i}", "duration": 4}
        await observer.publish({**body, "resolution": "720p"})
    await observer.wait(lambda: len(observer.replies) == REQUESTS, 90, "every final reply")

    fitted = math.floor(LIMIT / ESTIMATE)
    finals = [body for body, _ in observer.replies]
    refused = [f for f in finals if f["status"] == "failed" and f["error"]["code"] == "over_budget"]
    assert sim.stats()["submits"] == fitted
    assert len([f for f in finals if f["status"] == "completed"]) == fitted
    assert len(refused) == REQUESTS - fitted
    spent, reserved = await daemons[0].ledger.budget_day(utc_day())
    overshoot = spent + reserved - LIMIT
    print(
        f"\nbudget race: limit ${LIMIT:.2f}, spent ${spent:.2f}, reserved ${reserved:.2f}, overshoot ${overshoot:.2f}"
    )
    assert (spent, reserved) == (fitted * ESTIMATE, 0.0)
    assert overshoot <= 0
    assert all(f["cost"]["estimate_usd"] == ESTIMATE for f in finals)
