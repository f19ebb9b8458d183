"""Unit tests for the built-in ``budget`` plugin: the price mapping, the limits, and its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_request
from videoworker import Catalogue, ConfigError, CostEstimate, InvalidRequest, VideoModel
from videoworker.config import load_settings
from videoworker.default_plugins import budget
from videoworker.plugins.hooks import Hooks
from videoworker.plugins.manager import make_plugin_manager

VEO = VideoModel(
    id="acme/video-1",
    supported_durations=[4, 8],
    pricing_skus={"per-video-second": "0.50", "per-video-second-1080p": "0.75", "per-video-second-audio": "0.80"},
)
CATALOGUE = Catalogue({VEO.id: VEO}, available=True)


@pytest.mark.parametrize(
    ("fields", "usd"),
    [
        ({"duration": 4}, 2.0),  # base price × duration
        ({"duration": 4, "resolution": "1080p"}, 3.0),  # a resolution's own SKU wins
        ({"duration": 4, "resolution": "720p"}, 2.0),  # no SKU for 720p: the base price
        ({"duration": 4, "generate_audio": True}, 3.2),  # an audio SKU wins when audio is asked for
        ({}, 4.0),  # no duration: the longest the model supports (an upper bound)
    ],
)
def test_estimate_follows_the_sku_order(fields: dict[str, object], usd: float) -> None:
    """Price per second × seconds, with the most specific listed SKU."""
    assert budget.estimate(make_request(**fields), CATALOGUE) == pytest.approx(usd)


@pytest.mark.parametrize(
    "model",
    [
        VideoModel(id="acme/video-1", supported_durations=[4]),  # no prices
        VideoModel(id="acme/video-1", pricing_skus={"per-image": "0.1"}),  # no per-second price
        VideoModel(id="acme/video-1", pricing_skus={"per-video-second": "free"}),  # unreadable
        VideoModel(id="acme/video-1", pricing_skus={"per-video-second": "nan"}),  # not finite
        VideoModel(id="acme/video-1", pricing_skus={"per-video-second": "0.5"}),  # no duration anywhere
    ],
)
def test_unknown_prices_are_unknown(model: VideoModel) -> None:
    """What cannot be read as a finite price for a known number of seconds is unknown, never zero."""
    assert budget.estimate(make_request(), Catalogue({model.id: model}, available=True)) is None


def test_no_models_list_means_unknown() -> None:
    """Without the provider's models list nothing can be priced."""
    assert budget.estimate(make_request(duration=4), Catalogue()) is None


async def test_limits_are_applied_only_when_set(tmp_path: Path) -> None:
    """No limit: no estimate is reserved and nothing is refused; a daily limit names itself in the estimate."""
    off = load_settings(None, data_dir=tmp_path, openrouter_api_key="k")
    assert budget.videoworker_cost_estimate(make_request(duration=4), CATALOGUE, off) is None
    budget.videoworker_validate_request(make_request(duration=8, model="nobody/knows"), CATALOGUE, off)
    on = load_settings(None, data_dir=tmp_path, openrouter_api_key="k", plugins={"budget": {"daily_usd": 20}})
    assert budget.videoworker_cost_estimate(make_request(duration=4), CATALOGUE, on) == CostEstimate(2.0, 20.0)


def test_per_request_limit_refuses_with_over_budget(tmp_path: Path) -> None:
    """An estimate above per_request_usd is refused at intake with over_budget."""
    s = load_settings(None, data_dir=tmp_path, openrouter_api_key="k", plugins={"budget": {"per_request_usd": 3}})
    budget.videoworker_validate_request(make_request(duration=4), CATALOGUE, s)
    with pytest.raises(InvalidRequest) as info:
        budget.videoworker_validate_request(make_request(duration=8), CATALOGUE, s)
    assert info.value.code == "over_budget" and "$4.00" in info.value.message


def test_wrong_settings_stop_the_start_naming_the_key(tmp_path: Path) -> None:
    """The section is validated at start with the plugin's model."""
    s = load_settings(None, data_dir=tmp_path, openrouter_api_key="k", plugins={"budget": {"daily_usd": "lots"}})
    with pytest.raises(ConfigError, match=r"\[plugins\.budget\] daily_usd"):
        Hooks(make_plugin_manager(s), s).check_settings()


def test_budget_cannot_be_disabled(tmp_path: Path) -> None:
    """The spending guard is essential: disabling it is refused."""
    s = load_settings(None, data_dir=tmp_path, openrouter_api_key="k", disabled_plugins=["budget"])
    with pytest.raises(ConfigError, match="budget"):
        make_plugin_manager(s)
