"""Submit validation for the simulator: which video model a request names, or why it gets a 400.

This module owns the checks OpenRouter makes on ``POST /videos`` bodies: a known video
model, a prompt (or frames/references), and, when ``validate_capabilities`` is on, options
within the model's advertised lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from videoworker_devtools.simulator import catalogue

if TYPE_CHECKING:
    from videoworker_devtools.simulator.state import SimState


_CAPABILITY_FIELDS = {
    "duration": "supported_durations",
    "resolution": "supported_resolutions",
    "aspect_ratio": "supported_aspect_ratios",
    "size": "supported_sizes",
}


def check_submit(state: SimState, body: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The video model of a submit body, or the 400 message explaining why it is refused."""
    if not isinstance(body, dict):
        return None, "Request body must be a JSON object"
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        return None, "'model' is required and must be a string"
    model = state.video_model(model_id)
    if model is None:
        if any(m["id"] == model_id for m in catalogue.TEXT_MODELS):
            return None, f"Model {model_id} does not support video generation"
        return None, f"Model {model_id} is not a valid video model ID"
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return None, "'prompt' must be a string"
    if not prompt and not body.get("frame_images") and not body.get("input_references"):
        return None, "'prompt' is required unless frame_images or input_references are given"
    if state.config.validate_capabilities:
        return model, _check_capabilities(model, body)
    return model, None


def _check_capabilities(model: dict[str, Any], body: dict[str, Any]) -> str | None:
    """Refuse options the model does not advertise; a null list means "not restricted"."""
    for option, listing in _CAPABILITY_FIELDS.items():
        allowed = model.get(listing)
        if option in body and allowed is not None and body[option] not in allowed:
            return f"{option}={body[option]!r} is not supported by {model['id']} (allowed: {allowed})"
    frames = model.get("supported_frame_images")
    for frame in body.get("frame_images") or []:
        kind = frame.get("frame_type") if isinstance(frame, dict) else None
        if frames is not None and kind not in frames:
            return f"frame_type={kind!r} is not supported by {model['id']}"
    return None
