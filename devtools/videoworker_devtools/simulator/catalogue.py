"""The simulator's model catalogue: what ``/videos/models`` and ``/models`` answer.

This module owns the default list of video models (shaped like the SDK's ``VideoModel``)
and the general OpenRouter-style model entries derived from it. Lists set to ``None``
mean "capability unknown", as the real API does, so clients must treat them as "not
restricted". ``sim/fast`` accepts everything the docs list and is the model to use in
tests; ``sim/mystery`` advertises nothing at all.
"""

from __future__ import annotations

import copy
from typing import Any

#: Every resolution and aspect ratio known to the SDK (a superset of the docs page).
ALL_RESOLUTIONS = ["360p", "480p", "720p", "768p", "1080p", "1K", "2K", "4K"]
ALL_ASPECT_RATIOS = ["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21"]

_CREATED = 1_760_000_000  # fixed, so answers are reproducible

_NULL_CAPABILITIES: dict[str, Any] = {
    "supported_resolutions": None,
    "supported_aspect_ratios": None,
    "supported_sizes": None,
    "supported_durations": None,
    "supported_frame_images": None,
    "generate_audio": None,
    "seed": None,
    "allowed_passthrough_parameters": None,
    "creativity": None,
    "upscale_factor": None,
    "hugging_face_id": None,
}


def _model(model_id: str, name: str, description: str, **fields: Any) -> dict[str, Any]:
    """One ``VideoModel`` entry: identity fields, then the null defaults, then ``fields``."""
    entry: dict[str, Any] = {
        "id": model_id,
        "canonical_slug": model_id,
        "name": name,
        "created": _CREATED,
        "description": description,
    }
    entry.update(_NULL_CAPABILITIES)
    entry["pricing_skus"] = {}
    entry.update(fields)
    return entry


DEFAULT_VIDEO_MODELS: list[dict[str, Any]] = [
    _model(
        "google/veo-3.1",
        "Google: Veo 3.1",
        "Simulated Veo 3.1: text or image to video, with audio.",
        supported_resolutions=["720p", "1080p"],
        supported_aspect_ratios=["16:9", "9:16"],
        supported_sizes=["1280x720", "720x1280", "1920x1080", "1080x1920"],
        supported_durations=[4, 6, 8],
        supported_frame_images=["first_frame", "last_frame"],
        generate_audio=True,
        seed=True,
        allowed_passthrough_parameters=["parameters"],
        pricing_skus={"per-video-second": "0.50", "per-video-second-1080p": "0.75"},
    ),
    _model(
        "openai/sora-2",
        "OpenAI: Sora 2",
        "Simulated Sora 2: 720p clips with audio.",
        supported_resolutions=["720p"],
        supported_aspect_ratios=["16:9", "9:16"],
        supported_sizes=["1280x720", "720x1280"],
        supported_durations=[4, 8, 12],
        supported_frame_images=["first_frame"],
        generate_audio=True,
        seed=False,
        allowed_passthrough_parameters=[],
        pricing_skus={"per-video-second": "0.10"},
    ),
    _model(
        "kwaivgi/kling-v2.1",
        "Kling: Kling v2.1",
        "Simulated Kling v2.1: can animate a first frame image without any prompt.",
        supported_resolutions=["720p", "1080p"],
        supported_aspect_ratios=["16:9", "9:16", "1:1"],
        supported_sizes=["1280x720", "720x1280", "720x720", "1920x1080", "1080x1920", "1080x1080"],
        supported_durations=[5, 10],
        supported_frame_images=["first_frame", "last_frame"],
        generate_audio=False,
        seed=True,
        allowed_passthrough_parameters=["negative_prompt", "cfg_scale"],
        pricing_skus={"per-video-second": "0.28"},
    ),
    _model(
        "sim/fast",
        "Simulator: Fast",
        "Accepts every documented option; the model for tests.",
        supported_resolutions=list(ALL_RESOLUTIONS),
        supported_aspect_ratios=list(ALL_ASPECT_RATIOS),
        supported_sizes=[
            "640x360",
            "854x480",
            "1280x720",
            "720x1280",
            "720x720",
            "1920x1080",
            "1080x1920",
            "1080x1080",
            "3840x2160",
        ],
        supported_durations=list(range(1, 21)),
        supported_frame_images=["first_frame", "last_frame"],
        generate_audio=False,
        seed=True,
        allowed_passthrough_parameters=["sim_option"],
        pricing_skus={"per-video-second": "0.01", "per-video-second-1080p": "0.02"},
    ),
    _model(
        "sim/mystery",
        "Simulator: Mystery",
        "Advertises no capabilities at all (every list is null).",
        pricing_skus={"per-video-second": "0.05"},
    ),
]

#: Non-video entries of the general ``/models`` list, to prove the filter filters.
TEXT_MODELS: list[dict[str, Any]] = [
    {
        "id": "openai/gpt-4o",
        "canonical_slug": "openai/gpt-4o",
        "name": "OpenAI: GPT-4o",
        "created": _CREATED,
        "description": "A text model; not usable with /videos.",
        "context_length": 128000,
        "architecture": {
            "modality": "text+image->text",
            "input_modalities": ["text", "image"],
            "output_modalities": ["text"],
            "tokenizer": "GPT",
            "instruct_type": None,
        },
        "pricing": {"prompt": "0.0000025", "completion": "0.00001", "request": "0", "image": "0"},
        "top_provider": {
            "context_length": 128000,
            "max_completion_tokens": 16384,
            "is_moderated": True,
        },
        "hugging_face_id": None,
        "per_request_limits": None,
        "supported_parameters": ["max_tokens", "temperature", "tools"],
    }
]


def default_video_models() -> list[dict[str, Any]]:
    """A fresh deep copy of the default catalogue; called when a simulator config is built."""
    return copy.deepcopy(DEFAULT_VIDEO_MODELS)


def general_entry(video_model: dict[str, Any]) -> dict[str, Any]:
    """The ``/models`` entry of a video model: same identity, video output modality."""
    inputs = ["text"] if video_model.get("supported_frame_images") == [] else ["text", "image"]
    return {
        "id": video_model["id"],
        "canonical_slug": video_model.get("canonical_slug", video_model["id"]),
        "name": video_model.get("name", video_model["id"]),
        "created": video_model.get("created", _CREATED),
        "description": video_model.get("description", ""),
        "context_length": None,
        "architecture": {
            "modality": "+".join(inputs) + "->video",
            "input_modalities": inputs,
            "output_modalities": ["video"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {"prompt": "0", "completion": "0", "request": "0", "image": "0"},
        "top_provider": {
            "context_length": None,
            "max_completion_tokens": None,
            "is_moderated": True,
        },
        "hugging_face_id": video_model.get("hugging_face_id"),
        "per_request_limits": None,
        "supported_parameters": [],
    }


def general_models(video_models: list[dict[str, Any]], output_modalities: str | None) -> list[dict[str, Any]]:
    """Entries of ``GET /models``, filtered like OpenRouter's ``output_modalities`` parameter.

    ``None`` or ``"all"`` lists everything; otherwise a comma-separated list keeps the
    models producing any of the named modalities.
    """
    entries = [general_entry(m) for m in video_models] + copy.deepcopy(TEXT_MODELS)
    if output_modalities is None or output_modalities.strip() in ("", "all"):
        return entries
    wanted = {part.strip() for part in output_modalities.split(",") if part.strip()}
    return [e for e in entries if wanted & set(e["architecture"]["output_modalities"])]
