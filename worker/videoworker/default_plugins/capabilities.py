"""Built-in plugin ``capabilities``: refuse what the model cannot do, before anything is paid.

Essential: it cannot be disabled. Checks the model name, duration, resolution, aspect
ratio, size, frame images and audio against the model's advertised lists (a ``null``
list means unrestricted). Without a models list it checks against the documented values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from videoworker import InvalidRequest, hookimpl

if TYPE_CHECKING:
    from videoworker import Catalogue, VideoModel, VideoRequest

#: The values OpenRouter's documentation lists, checked when the models list cannot be fetched.
DOCUMENTED_RESOLUTIONS = frozenset({"360p", "480p", "720p", "768p", "1080p", "1K", "2K", "4K"})
DOCUMENTED_ASPECT_RATIOS = frozenset({"16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21"})


@hookimpl(tryfirst=True)
def videoworker_validate_request(request: VideoRequest, catalogue: Catalogue) -> None:
    """Refuse values the target model does not advertise."""
    if not catalogue.available:
        _check_documented(request)
        return
    model = catalogue.get(request.model)
    if model is None:
        raise InvalidRequest(
            f"model {request.model!r} is not a video model on OpenRouter (see `videoworker models`)",
            code="model_unsupported",
            field="model",
        )
    _check(request.resolution, model.supported_resolutions, "resolution", model)
    _check(request.aspect_ratio, model.supported_aspect_ratios, "aspect_ratio", model)
    _check(request.size, model.supported_sizes, "size", model)
    _check(request.duration, model.supported_durations, "duration", model)
    if request.frame_images:
        kinds = [f.frame_type for f in request.frame_images]
        for kind in kinds:
            _check(kind, model.supported_frame_images, "frame_images", model)
    if request.generate_audio and model.generate_audio is False:
        raise InvalidRequest(
            f"model {model.id!r} cannot generate audio", code="model_unsupported", field="generate_audio"
        )
    if request.seed is not None and model.seed is False:
        raise InvalidRequest(f"model {model.id!r} does not take a seed", code="model_unsupported", field="seed")


def _check(value: object, allowed: Sequence[object] | None, field: str, model: VideoModel) -> None:
    if value is None or allowed is None:
        return
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed) or "none"
        raise InvalidRequest(
            f"{field} {value!r} is not supported by {model.id!r} (supported: {shown})",
            code="model_unsupported",
            field=field,
        )


def _check_documented(request: VideoRequest) -> None:
    if request.resolution is not None and request.resolution not in DOCUMENTED_RESOLUTIONS:
        raise InvalidRequest(
            f"resolution {request.resolution!r} is not a documented resolution",
            code="model_unsupported",
            field="resolution",
        )
    if request.aspect_ratio is not None and request.aspect_ratio not in DOCUMENTED_ASPECT_RATIOS:
        raise InvalidRequest(
            f"aspect_ratio {request.aspect_ratio!r} is not a documented aspect ratio",
            code="model_unsupported",
            field="aspect_ratio",
        )
