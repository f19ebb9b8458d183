"""Built-in plugin ``budget``: estimate each request's cost from the model's pricing, and hold spending limits.

Settings (``[plugins.budget]``), all unset by default:

``per_request_usd``
    Refuse, at intake, a request whose estimate is above it (``over_budget``).
``daily_usd``
    The most the instances sharing a ledger may commit per UTC day. Each submit reserves
    its estimate atomically with its ``submitting`` record and is refused (``over_budget``,
    nothing submitted) when the day's spend plus reservations would pass the limit.
``unknown_price``
    ``allow`` (default: submit, warn, count ``videoworker_budget_unknown_price_total``) or
    ``refuse`` (``over_budget`` at intake) when a request's price cannot be estimated.

The estimate is price-per-second × seconds, from the model's ``pricing_skus`` (prices are
strings, USD). SKUs, first match wins:

- ``per-video-second-<resolution>-audio``, ``per-video-second-audio``: when the request asks
  for audio (not seen in the provider's docs yet; looked for so a listed audio price wins);
- ``per-video-second-<resolution>``: e.g. ``per-video-second-1080p`` (provider docs, simulator);
- ``per-video-second``: the model's base price (provider docs, simulator).

Seconds are the request's ``duration``, else the longest of the model's
``supported_durations`` (an upper bound: the provider's default is not published). One
output is assumed. No listed price, no duration, or no models list: the price is unknown.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from videoworker import CostEstimate, InvalidRequest, hookimpl, plugin_settings
from videoworker.metrics import BUDGET_UNKNOWN_PRICE

if TYPE_CHECKING:
    from videoworker import Catalogue, Settings, VideoRequest

NAME = "budget"
log = structlog.get_logger("videoworker.budget")


class BudgetSettings(BaseModel):
    """The ``[plugins.budget]`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_request_usd: float | None = Field(None, gt=0)
    daily_usd: float | None = Field(None, gt=0)
    unknown_price: Literal["allow", "refuse"] = "allow"

    @property
    def active(self) -> bool:
        return self.per_request_usd is not None or self.daily_usd is not None


@hookimpl
def videoworker_settings_model() -> type[BaseModel]:
    """The section's model: the host validates it at start."""
    return BudgetSettings


@hookimpl(trylast=True)
def videoworker_validate_request(request: VideoRequest, catalogue: Catalogue, settings: Settings) -> None:
    """Refuse a request over the per-request limit, or of unknown price when the policy says so."""
    config = plugin_settings(settings, NAME, BudgetSettings)
    if not config.active:
        return
    usd = estimate(request, catalogue)
    if usd is None:
        if config.unknown_price == "refuse":
            raise InvalidRequest(
                f"the cost of {request.model!r} cannot be estimated (no price listed for it), and "
                "[plugins.budget] unknown_price = refuse",
                code="over_budget",
                field="model",
            )
        BUDGET_UNKNOWN_PRICE.labels(model=request.model if catalogue.get(request.model) else "unlisted").inc()
        log.warning("price unknown; submitting without a reservation (unknown_price = allow)", model=request.model)
        return
    if config.per_request_usd is not None and usd > config.per_request_usd:
        raise InvalidRequest(
            f"the estimated cost ${usd:.2f} is over the per-request limit of ${config.per_request_usd:.2f}",
            code="over_budget",
        )


@hookimpl
def videoworker_cost_estimate(request: VideoRequest, catalogue: Catalogue, settings: Settings) -> CostEstimate | None:
    """The estimate to reserve before the submit, and the daily limit (only when one is set)."""
    config = plugin_settings(settings, NAME, BudgetSettings)
    if config.daily_usd is None:
        return None
    return CostEstimate(estimate(request, catalogue), config.daily_usd)


def estimate(request: VideoRequest, catalogue: Catalogue) -> float | None:
    """USD for one output of ``request``, from the model's pricing; None when it cannot be told."""
    model = catalogue.get(request.model)
    if model is None or not model.pricing_skus:
        return None
    price = per_second(model.pricing_skus, request.resolution, bool(request.generate_audio))
    seconds = request.duration or max(model.supported_durations or [0]) or None
    if price is None or seconds is None:
        return None
    return round(price * seconds, 6)


def per_second(skus: dict[str, str], resolution: str | None, audio: bool) -> float | None:
    """The price per second of video that applies, by the SKU order in the module docstring."""
    names = [f"per-video-second-{resolution}-audio", "per-video-second-audio"] if audio else []
    names += [f"per-video-second-{resolution}", "per-video-second"]
    for name in names:
        if name in skus:
            try:
                value = float(skus[name])
            except ValueError:
                return None
            return value if math.isfinite(value) and value >= 0 else None
    return None
