"""Spending: reserving a job's estimate before its submit, and settling or releasing it afterwards.

The arithmetic that keeps a daily limit across instances lives in the ledger (one atomic
check-and-add per reservation, in the transaction that records ``submitting``); this
module decides what to reserve, settle or release, and keeps the job's data in step:
``data["cost"]`` (what events show) and ``data["budget"]`` (the open reservation).

Why the limit holds: every reservation is checked against ``spent + reserved`` under the
ledger's write lock, so reservations never sum past the limit. A job's reservation
becomes its actual cost when it ends; the day's spend can pass the limit only by what
jobs cost beyond their estimates.
"""

from __future__ import annotations

import math
import time
from typing import Any

from videoworker import metrics
from videoworker.ledger.base import BudgetChange, Ledger
from videoworker.plugins.types import CostEstimate


def utc_day(ts: float | None = None) -> str:
    """The UTC day a reservation counts against, ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if ts is None else ts))


def reserve(data: dict[str, Any], estimate: CostEstimate | None) -> tuple[dict[str, Any], BudgetChange | None]:
    """The job's data with its estimate recorded, and the reservation to make with the submit (None: nothing)."""
    if estimate is None:
        return data, None
    data = {**data, "cost": {**data.get("cost", {}), "estimate_usd": estimate.usd}}
    if estimate.usd is None or estimate.usd <= 0 or estimate.daily_limit_usd is None:
        return data, None
    day = utc_day()
    data["budget"] = {"day": day, "reserved": estimate.usd}
    return data, BudgetChange(day, estimate.usd, limit=estimate.daily_limit_usd)


def release(data: dict[str, Any]) -> tuple[dict[str, Any], BudgetChange | None]:
    """Give the reservation back: the provider certainly never took the job."""
    held = _held(data)
    if held is None:
        return data, None
    day, amount = held
    return {**data, "budget": {"day": day, "reserved": 0.0}}, BudgetChange(day, -amount)


def settle(data: dict[str, Any], model: str) -> tuple[dict[str, Any], BudgetChange | None]:
    """Turn the reservation into spend: the provider's reported cost, or the estimate when it reported none."""
    held = _held(data)
    if held is None:
        return data, None
    day, amount = held
    actual = actual_cost(data.get("usage"))
    spent = amount if actual is None else actual
    metrics.SPEND.labels(model=model).inc(spent)
    return {**data, "budget": {"day": day, "reserved": 0.0}}, BudgetChange(day, -amount, spent=spent)


def actual_cost(usage: Any) -> float | None:
    """The provider's reported cost, when it is a finite, non-negative number (anything else is unknown)."""
    cost = usage.get("cost") if isinstance(usage, dict) else None
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost) or cost < 0:
        return None
    return float(cost)


def _held(data: dict[str, Any]) -> tuple[str, float] | None:
    budget = data.get("budget")
    if not isinstance(budget, dict) or not budget.get("reserved"):
        return None
    return str(budget["day"]), float(budget["reserved"])


async def refresh_gauges(ledger: Ledger, limit: float | None) -> None:
    """Set today's reserved and remaining gauges from the ledger (all instances' reservations)."""
    if limit is None:
        return
    spent, reserved = await ledger.budget_day(utc_day())
    metrics.BUDGET_RESERVED.set(reserved)
    metrics.BUDGET_REMAINING.set(max(0.0, limit - spent - reserved))
