"""Unit tests for the built-in ``capabilities`` plugin: refuse what the model cannot do."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import make_request
from videoworker import Catalogue
from videoworker.contract.request import VideoRequest
from videoworker.default_plugins.capabilities import (
    DOCUMENTED_ASPECT_RATIOS,
    DOCUMENTED_RESOLUTIONS,
    videoworker_validate_request,
)
from videoworker.errors import InvalidRequest
from videoworker.provider.models import VideoModel

MODEL = "acme/video-1"
FIRST = {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}, "frame_type": "first_frame"}
LAST = {**FIRST, "frame_type": "last_frame"}

RESTRICTED = VideoModel(
    id=MODEL,
    supported_resolutions=["480p", "720p"],
    supported_aspect_ratios=["16:9", "9:16"],
    supported_sizes=["1280x720", "720x1280"],
    supported_durations=[4, 8],
    supported_frame_images=["first_frame"],
    generate_audio=False,
    seed=False,
)
OPEN = VideoModel(id="acme/open")  # every list null: nothing is restricted


def request(**fields: Any) -> VideoRequest:
    return make_request(**{"model": MODEL, "prompt": "a red kite over the sea", **fields})


def catalogue(*models: VideoModel) -> Catalogue:
    return Catalogue({m.id: m for m in models}, available=True)


def refusal(req: VideoRequest, cat: Catalogue) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        videoworker_validate_request(req, cat)
    assert info.value.code == "model_unsupported"
    return info.value


def test_supported_request_passes() -> None:
    req = request(
        resolution="720p", aspect_ratio="16:9", size="1280x720", duration=8, frame_images=[FIRST], generate_audio=False
    )
    assert videoworker_validate_request(req, catalogue(RESTRICTED)) is None


def test_request_without_options_passes() -> None:
    assert videoworker_validate_request(request(), catalogue(RESTRICTED)) is None


def test_unknown_model_is_model_unsupported() -> None:
    error = refusal(request(model="acme/not-a-video-model"), catalogue(RESTRICTED))
    assert error.field == "model"
    assert "acme/not-a-video-model" in str(error)


@pytest.mark.parametrize(
    ("fields", "field", "value"),
    [
        ({"resolution": "9000p"}, "resolution", "9000p"),
        ({"resolution": "1080p"}, "resolution", "1080p"),
        ({"aspect_ratio": "5:1"}, "aspect_ratio", "5:1"),
        ({"aspect_ratio": "1:1"}, "aspect_ratio", "1:1"),
        ({"size": "1920x1080"}, "size", "1920x1080"),
        ({"duration": 5}, "duration", "5"),
        ({"duration": 16}, "duration", "16"),
        ({"frame_images": [LAST]}, "frame_images", "last_frame"),
        ({"frame_images": [FIRST, LAST]}, "frame_images", "last_frame"),
    ],
)
def test_unadvertised_value_is_refused(fields: dict[str, Any], field: str, value: str) -> None:
    error = refusal(request(**fields), catalogue(RESTRICTED))
    assert error.field == field
    assert value in str(error)
    assert MODEL in str(error)


def test_refusal_lists_what_is_supported() -> None:
    assert "480p, 720p" in str(refusal(request(resolution="9000p"), catalogue(RESTRICTED)))


def test_audio_on_a_model_without_audio_is_refused() -> None:
    error = refusal(request(generate_audio=True), catalogue(RESTRICTED))
    assert error.field == "generate_audio"


def test_audio_off_or_unknown_audio_support_passes() -> None:
    videoworker_validate_request(request(generate_audio=False), catalogue(RESTRICTED))
    videoworker_validate_request(request(model=OPEN.id, generate_audio=True), catalogue(OPEN))


def test_seed_on_a_model_without_seed_is_refused() -> None:
    assert refusal(request(seed=7), catalogue(RESTRICTED)).field == "seed"


@pytest.mark.parametrize(
    "fields",
    [
        {"resolution": "9000p"},
        {"aspect_ratio": "5:1"},
        {"size": "1x1"},
        {"duration": 3599},
        {"frame_images": [FIRST, LAST]},
        {"generate_audio": True},
        {"seed": 1},
    ],
)
def test_null_lists_mean_unrestricted(fields: dict[str, Any]) -> None:
    assert videoworker_validate_request(request(model=OPEN.id, **fields), catalogue(OPEN)) is None


def test_empty_list_means_nothing_supported() -> None:
    model = VideoModel(id=MODEL, supported_resolutions=[])
    assert refusal(request(resolution="720p"), catalogue(model)).field == "resolution"


# --- the models list could not be fetched --------------------------------------------------------

UNAVAILABLE = Catalogue()


def test_empty_catalogue_is_unavailable() -> None:
    assert UNAVAILABLE.available is False


def test_unavailable_catalogue_refuses_undocumented_resolution() -> None:
    assert "9000p" not in DOCUMENTED_RESOLUTIONS
    assert refusal(request(resolution="9000p"), UNAVAILABLE).field == "resolution"


def test_unavailable_catalogue_refuses_undocumented_aspect_ratio() -> None:
    assert refusal(request(aspect_ratio="5:1"), UNAVAILABLE).field == "aspect_ratio"


@pytest.mark.parametrize("resolution", sorted(DOCUMENTED_RESOLUTIONS))
def test_unavailable_catalogue_accepts_documented_resolutions(resolution: str) -> None:
    assert videoworker_validate_request(request(resolution=resolution), UNAVAILABLE) is None


@pytest.mark.parametrize("ratio", sorted(DOCUMENTED_ASPECT_RATIOS))
def test_unavailable_catalogue_accepts_documented_aspect_ratios(ratio: str) -> None:
    assert videoworker_validate_request(request(aspect_ratio=ratio), UNAVAILABLE) is None


def test_unavailable_catalogue_accepts_any_model_name() -> None:
    req = request(model="someone/brand-new-model", resolution="720p", generate_audio=True, seed=3)
    assert videoworker_validate_request(req, UNAVAILABLE) is None


def test_unavailable_catalogue_ignores_stale_models() -> None:
    # a catalogue marked unavailable is not consulted, even if it holds models
    stale = Catalogue({MODEL: RESTRICTED}, available=False)
    assert videoworker_validate_request(request(model="other/model", resolution="1080p"), stale) is None
