"""The request half of the wire contract: parse raw AMQP bodies into a typed request.

Everything here is refusal with a reason. :func:`parse_request` raises
:class:`InvalidRequest` naming the field and the rule, and never lets a malformed
message reach the provider. Model capabilities are checked later by plugins.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from videoworker.errors import InvalidRequest

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
_ID = re.compile(ID_PATTERN)

#: Deepest nesting accepted anywhere in a request (metadata, provider options, trace).
MAX_DEPTH = 32

#: Fields that belong to videoworker and are never sent to OpenRouter.
LOCAL_FIELDS = frozenset({"id", "metadata", "delivery"})


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class MediaUrl(_Open):
    url: Annotated[StrictStr, Field(min_length=1, max_length=1_000_000)]


class InputReference(_Open):
    """A reference image (or audio/video for providers that take them)."""

    type: Literal["image_url", "audio_url", "video_url"]
    image_url: MediaUrl | None = None
    audio_url: MediaUrl | None = None
    video_url: MediaUrl | None = None


class FrameImage(_Open):
    """An image pinned to the first or last frame."""

    type: Literal["image_url"] = "image_url"
    image_url: MediaUrl
    frame_type: Literal["first_frame", "last_frame"]


class VideoRequest(BaseModel):
    """A video-generation request as producers publish it (the request half of the wire contract)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[StrictStr, Field(pattern=ID_PATTERN)] | None = None
    model: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    prompt: StrictStr | None = None
    duration: Annotated[StrictInt, Field(gt=0, le=3600)] | None = None
    resolution: Annotated[StrictStr, Field(min_length=1, max_length=32)] | None = None
    aspect_ratio: Annotated[StrictStr, Field(pattern=r"^\d{1,3}:\d{1,3}$")] | None = None
    size: Annotated[StrictStr, Field(pattern=r"^\d{1,5}x\d{1,5}$")] | None = None
    input_references: Annotated[list[InputReference], Field(max_length=16)] | None = None
    frame_images: Annotated[list[FrameImage], Field(max_length=2)] | None = None
    generate_audio: StrictBool | None = None
    seed: StrictInt | None = None
    provider: dict[str, Any] | None = None
    previous_job_id: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    session_id: Annotated[StrictStr, Field(max_length=256)] | None = None
    user: Annotated[StrictStr, Field(max_length=256)] | None = None
    trace: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    delivery: dict[str, dict[str, Any]] | None = None

    def provider_body(self) -> dict[str, Any]:
        """The JSON body for ``POST /videos``: every set field but videoworker's own."""
        return self.model_dump(mode="json", exclude_none=True, exclude=set(LOCAL_FIELDS))

    def wire(self) -> dict[str, Any]:
        """The request as stored in the ledger (round-trips through :meth:`model_validate`)."""
        return self.model_dump(mode="json", exclude_none=True)


def parse_request(
    body: bytes,
    *,
    message_id: str | None,
    content_type: str | None,
    max_message_bytes: int,
    max_prompt_chars: int,
    max_metadata_bytes: int,
) -> VideoRequest:
    """Turn one AMQP body into a request, or raise :class:`InvalidRequest` saying why."""
    if len(body) > max_message_bytes:
        raise InvalidRequest(f"message is {len(body)} bytes, over the limit of {max_message_bytes}")
    if content_type not in (None, "", "application/json") and not content_type.startswith("application/json;"):
        raise InvalidRequest(f"content_type must be application/json, got {content_type[:100]!r}")
    data = _decode(body)
    try:
        request = VideoRequest.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc) from None
    request = _with_id(request, message_id)
    if request.id is not None and not request.id.strip("."):
        # "." and ".." fit the id pattern but would name directories and keys badly
        raise InvalidRequest("id must contain a character other than '.'", field="id")
    _check_prompt(request, max_prompt_chars)
    if request.metadata is not None:
        size = len(json.dumps(request.metadata, separators=(",", ":")).encode())
        if size > max_metadata_bytes:
            raise InvalidRequest(
                f"metadata is {size} bytes of JSON, over the limit of {max_metadata_bytes}", field="metadata"
            )
    return request


def salvage_reply(body: bytes) -> dict[str, Any]:
    """Best-effort ``id`` and ``metadata`` of a refused body, so the failed event can name them."""
    try:
        # lenient here: NaN/Infinity become null, so the refusal can still name the id
        data = json.loads(body, parse_constant=lambda _: None)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    if not isinstance(data, dict) or _depth(data) > MAX_DEPTH:
        return {}
    found: dict[str, Any] = {}
    if isinstance(data.get("id"), str) and _ID.fullmatch(data["id"]) and data["id"].strip("."):
        found["id"] = data["id"]
    if isinstance(data.get("model"), str) and len(data["model"]) <= 200:
        found["model"] = data["model"]
    if isinstance(data.get("metadata"), dict) and len(json.dumps(data["metadata"])) <= 16 * 1024:
        found["metadata"] = data["metadata"]
    return found


def _decode(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"body is not UTF-8 (bad byte at offset {exc.start})") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest(f"body nests deeper than {MAX_DEPTH} levels") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"body must be a JSON object, got {type(data).__name__}")
    if _depth(data) > MAX_DEPTH:
        raise InvalidRequest(f"body nests deeper than {MAX_DEPTH} levels")
    return data


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; echoed in events they would break strict parsers elsewhere
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _explain(exc: ValidationError) -> InvalidRequest:
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        if len(first["loc"]) == 1:
            return InvalidRequest(f"unknown field {loc!r}", field=loc)
        return InvalidRequest(f"unknown field {loc!r}", field=loc)
    if first["type"] == "missing":
        return InvalidRequest(f"field {loc!r} is required", field=loc)
    return InvalidRequest(f"field {loc!r}: {first['msg']}", field=loc)


def _with_id(request: VideoRequest, message_id: str | None) -> VideoRequest:
    if request.id is not None:
        return request
    if message_id:
        if not _ID.fullmatch(message_id):
            raise InvalidRequest("AMQP message_id is not a valid id (1-128 of A-Z a-z 0-9 . _ : -)", field="id")
        return request.model_copy(update={"id": message_id})
    # no id at all: accepted, but duplicates of this message cannot be recognised
    return request.model_copy(update={"id": f"gen-{uuid.uuid4().hex}"})


def _check_prompt(request: VideoRequest, max_prompt_chars: int) -> None:
    if request.prompt is None or not request.prompt.strip():
        if not (request.frame_images or request.input_references):
            raise InvalidRequest("field 'prompt' is required and must not be empty without image input", field="prompt")
        if request.prompt is not None:
            raise InvalidRequest(
                "field 'prompt' must not be empty; leave it out to generate from images", field="prompt"
            )
    elif len(request.prompt) > max_prompt_chars:
        raise InvalidRequest(
            f"field 'prompt' has {len(request.prompt)} characters, over the limit of {max_prompt_chars}", field="prompt"
        )
