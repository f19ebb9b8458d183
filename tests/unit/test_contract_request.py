"""Unit tests for the request's published JSON Schema: it accepts and refuses what parse_request does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.schema_check import check_request
from videoworker.contract.request import VideoRequest, parse_request
from videoworker.contract.schemas import REQUEST_FIELD_NOTES, schemas
from videoworker.errors import InvalidRequest

BASE: dict[str, Any] = {"model": "google/veo-3.1", "prompt": "a lighthouse at dusk"}
FRAME = {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}, "frame_type": "first_frame"}
REFERENCE = {"type": "image_url", "image_url": {"url": "https://img.example/b.png"}}

VALID: dict[str, dict[str, Any]] = {
    "minimal": BASE,
    "readme example": {
        "id": "order-42-intro",
        "model": "google/veo-3.1",
        "prompt": "A paper boat on a rainy street",
        "duration": 8,
        "resolution": "1080p",
        "aspect_ratio": "16:9",
        "metadata": {"order": 42},
        "delivery": {"local": {}},
    },
    "every field": {
        **BASE,
        "id": "req-1.a_b:c",
        "duration": 8,
        "resolution": "720p",
        "aspect_ratio": "9:16",
        "size": "1280x720",
        "input_references": [REFERENCE, {"type": "audio_url", "audio_url": {"url": "https://a.example/x.mp3"}}],
        "frame_images": [FRAME, {**FRAME, "frame_type": "last_frame"}],
        "generate_audio": True,
        "seed": -3,
        "provider": {"order": ["google"], "allow_fallbacks": False},
        "previous_job_id": "job-1",
        "session_id": "s",
        "user": "u",
        "trace": {"trace_id": "t"},
        "metadata": {"nested": {"a": [1, None]}},
        "delivery": {"local": {"subdir": "x"}, "s3": {}},
    },
    "nulls for optional fields": {**BASE, "id": None, "duration": None, "metadata": None},
    "frame images without a prompt": {"model": "m", "frame_images": [FRAME]},
    "references with a null prompt": {"model": "m", "prompt": None, "input_references": [REFERENCE]},
    "unknown fields inside an image": {"model": "m", "frame_images": [{**FRAME, "detail": "high"}]},
}

INVALID: dict[str, dict[str, Any]] = {
    "unknown top-level field": {**BASE, "colour": "red"},
    "missing model": {"prompt": "p"},
    "empty model": {**BASE, "model": ""},
    "duration as a string": {**BASE, "duration": "8"},
    "duration as a boolean": {**BASE, "duration": True},
    "zero duration": {**BASE, "duration": 0},
    "seed as a float": {**BASE, "seed": 1.5},
    "prompt as a number": {**BASE, "prompt": 5},
    "metadata as a list": {**BASE, "metadata": [1]},
    "delivery options not an object": {**BASE, "delivery": {"local": 1}},
    "id with a space": {**BASE, "id": "a b"},
    "id of only dots": {**BASE, "id": ".."},
    "id too long": {**BASE, "id": "x" * 129},
    "bad aspect ratio": {**BASE, "aspect_ratio": "wide"},
    "bad size": {**BASE, "size": "1280*720"},
    "blank prompt": {**BASE, "prompt": "   "},
    "no prompt and no image": {"model": "m"},
    "no prompt and empty image lists": {"model": "m", "frame_images": [], "input_references": []},
    "blank prompt with an image": {"model": "m", "prompt": "", "frame_images": [FRAME]},
    "three frame images": {**BASE, "frame_images": [FRAME, FRAME, FRAME]},
    "bad frame type": {**BASE, "frame_images": [{**FRAME, "frame_type": "middle"}]},
    "bad reference type": {**BASE, "input_references": [{"type": "text"}]},
    "empty image url": {**BASE, "frame_images": [{**FRAME, "image_url": {"url": ""}}]},
}


def parser_accepts(body: dict[str, Any]) -> bool:
    """Whether parse_request takes ``body`` with the default limits."""
    try:
        parse_request(
            json.dumps(body).encode(),
            message_id=None,
            content_type=None,
            max_message_bytes=1 << 20,
            max_prompt_chars=8000,
            max_metadata_bytes=16 * 1024,
        )
    except InvalidRequest:
        return False
    return True


@pytest.mark.parametrize("case", VALID)
def test_valid_request_fits_the_schema(case: str) -> None:
    """A request the daemon accepts validates against the published request schema."""
    assert parser_accepts(VALID[case]), "the table is wrong: parse_request refuses it"
    check_request(VALID[case])
    check_request(json.dumps(VALID[case]))


@pytest.mark.parametrize("case", INVALID)
def test_invalid_request_breaks_the_schema(case: str) -> None:
    """A request the daemon refuses is refused by the published request schema too."""
    assert not parser_accepts(INVALID[case]), "the table is wrong: parse_request accepts it"
    with pytest.raises(AssertionError, match="breaks the published schema"):
        check_request(INVALID[case])


def test_schema_error_names_the_path() -> None:
    """A violation is reported with the JSON path of the offending value."""
    with pytest.raises(AssertionError, match=r"at \$\.duration"):
        check_request({**BASE, "duration": "8"})


def test_field_notes_name_real_fields() -> None:
    """Every description added to the request schema belongs to a field of VideoRequest, and shows up."""
    assert set(REQUEST_FIELD_NOTES) <= set(VideoRequest.model_fields)
    properties = schemas()["request"]["properties"]
    for name in REQUEST_FIELD_NOTES:
        assert properties[name]["description"]


def test_schema_lists_every_field_and_forbids_others() -> None:
    """The request schema has a property for every model field and refuses any other top-level field."""
    schema = schemas()["request"]
    assert set(schema["properties"]) == set(VideoRequest.model_fields)
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["model"]
