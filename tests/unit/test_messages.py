"""Unit tests for videoworker.contract.request: the request half of the wire contract."""

from __future__ import annotations

import json
from typing import Any

import pytest

from videoworker.contract.request import LOCAL_FIELDS, VideoRequest, parse_request, salvage_reply
from videoworker.errors import InvalidRequest

LIMITS = {"max_message_bytes": 4096, "max_prompt_chars": 100, "max_metadata_bytes": 256}
BASE: dict[str, Any] = {"model": "google/veo-3.1", "prompt": "a lighthouse at dusk"}
FRAME = {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}, "frame_type": "first_frame"}
REFERENCE = {"type": "image_url", "image_url": {"url": "https://img.example/b.png"}}


def parse(
    body: bytes | dict[str, Any], *, message_id: str | None = None, content_type: str | None = None, **limits: int
) -> VideoRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_request(raw, message_id=message_id, content_type=content_type, **{**LIMITS, **limits})


def refused(body: bytes | dict[str, Any], **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse(body, **kwargs)
    assert info.value.code == "invalid_request"
    assert str(info.value) == info.value.message
    return info.value


# --- well-formed requests -----------------------------------------------------------------------


def test_full_request_is_parsed() -> None:
    body = {
        **BASE,
        "id": "req-1",
        "duration": 8,
        "resolution": "720p",
        "aspect_ratio": "16:9",
        "size": "1280x720",
        "generate_audio": True,
        "seed": 42,
        "frame_images": [FRAME],
        "input_references": [REFERENCE],
        "provider": {"order": ["google-vertex"]},
        "previous_job_id": "job-0",
        "session_id": "s",
        "user": "u",
        "trace": {"span": "x"},
        "metadata": {"k": [1, 2]},
        "delivery": {"local": {"x": 1}},
    }
    r = parse(body)
    assert r.id == "req-1"
    assert r.duration == 8 and r.seed == 42 and r.generate_audio is True
    assert r.frame_images is not None and r.frame_images[0].frame_type == "first_frame"
    assert r.metadata == {"k": [1, 2]}
    assert r.delivery == {"local": {"x": 1}}
    assert VideoRequest.model_validate(r.wire()) == r


def test_provider_body_excludes_local_fields() -> None:
    r = parse({**BASE, "id": "req-1", "metadata": {"a": 1}, "delivery": {"local": {}}, "duration": 5})
    body = r.provider_body()
    assert {"id", "metadata", "delivery"} == LOCAL_FIELDS
    assert not LOCAL_FIELDS & body.keys()
    assert body == {**BASE, "duration": 5}


def test_frame_images_only_request_without_prompt_is_accepted() -> None:
    r = parse({"model": "m", "frame_images": [FRAME]})
    assert r.prompt is None
    assert "prompt" not in r.provider_body()


def test_input_references_only_request_without_prompt_is_accepted() -> None:
    assert parse({"model": "m", "input_references": [REFERENCE]}).prompt is None


@pytest.mark.parametrize("content_type", [None, "", "application/json", "application/json; charset=utf-8"])
def test_json_content_types_are_accepted(content_type: str | None) -> None:
    assert parse(BASE, content_type=content_type).model == BASE["model"]


# --- ids ----------------------------------------------------------------------------------------


def test_body_id_wins_over_message_id() -> None:
    assert parse({**BASE, "id": "from-body"}, message_id="from-amqp").id == "from-body"


def test_id_from_amqp_message_id_when_body_has_none() -> None:
    assert parse(BASE, message_id="amqp-1:x.y_z").id == "amqp-1:x.y_z"


def test_generated_id_when_neither() -> None:
    first, second = parse(BASE).id, parse(BASE).id
    assert first and second and first != second
    assert parse({**BASE, "id": first}).id == first  # a generated id is itself a valid id


@pytest.mark.parametrize("message_id", ["has space", "x" * 129, "slash/no", "ünïcode", "abc\x00"])
def test_invalid_message_id_is_refused(message_id: str) -> None:
    assert refused(BASE, message_id=message_id).field == "id"


def test_message_id_with_trailing_newline_is_refused() -> None:
    assert refused(BASE, message_id="abc\n").field == "id"


@pytest.mark.parametrize("bad_id", ["", "has space", "x" * 129, "a/b", 5, "id;drop", "abc\n"])
def test_bad_body_id_is_refused(bad_id: Any) -> None:
    error = refused({**BASE, "id": bad_id})
    assert error.field == "id"
    assert "'id'" in str(error)


def test_longest_id_is_accepted() -> None:
    assert parse({**BASE, "id": "A" * 128}).id == "A" * 128


# --- refusals -----------------------------------------------------------------------------------


def test_invalid_json_is_refused() -> None:
    assert "JSON" in str(refused(b'{"model": "m", "prompt": '))


@pytest.mark.parametrize(
    ("raw", "kind"), [(b"[1, 2]", "list"), (b'"text"', "str"), (b"42", "int"), (b"4.5", "float"), (b"null", "NoneType")]
)
def test_json_that_is_not_an_object_is_refused(raw: bytes, kind: str) -> None:
    message = str(refused(raw))
    assert "object" in message and kind in message


def test_bytes_not_utf8_are_refused() -> None:
    assert "UTF-8" in str(refused(b'{"model": "m\xff", "prompt": "p"}'))


def test_message_over_max_message_bytes_is_refused_before_parsing() -> None:
    body = json.dumps({**BASE, "prompt": "p" * 60}).encode()
    message = str(refused(body, max_message_bytes=len(body) - 1))
    assert str(len(body) - 1) in message
    assert parse(body, max_message_bytes=len(body)).prompt == "p" * 60
    # the size cap applies even to bytes that are not JSON at all
    assert "limit" in str(refused(b"\xff" * 100, max_message_bytes=10))


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m"},
        {"model": "m", "prompt": ""},
        {"model": "m", "prompt": "   \n\t"},
        {"model": "m", "prompt": None},
        {"model": "m", "frame_images": []},
    ],
)
def test_missing_or_empty_prompt_without_image_input_is_refused(body: dict[str, Any]) -> None:
    error = refused(body)
    assert error.field == "prompt"
    assert "prompt" in str(error)


def test_empty_prompt_with_images_is_refused() -> None:
    assert refused({"model": "m", "prompt": " ", "frame_images": [FRAME]}).field == "prompt"


def test_prompt_over_max_prompt_chars_is_refused() -> None:
    error = refused({**BASE, "prompt": "é" * 101})
    assert error.field == "prompt"
    assert "100" in str(error)
    assert parse({**BASE, "prompt": "é" * 100}).prompt == "é" * 100


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration", "long"),
        ("duration", 5.0),
        ("duration", True),
        ("duration", 0),
        ("duration", -5),
        ("seed", "1"),
        ("seed", 1.5),
        ("generate_audio", "yes"),
        ("generate_audio", 1),
        ("model", 7),
        ("model", ""),
        ("prompt", 123),
        ("resolution", 720),
        ("metadata", [1, 2]),
        ("metadata", "x"),
        ("delivery", {"local": "not an object"}),
        ("provider", "openai"),
        ("frame_images", FRAME),
        ("input_references", "https://img.example/a.png"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(field: str, value: Any) -> None:
    error = refused({**BASE, field: value})
    assert error.field is not None and error.field.split(".")[0] == field
    assert f"'{field}" in str(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("aspect_ratio", "16x9"),
        ("aspect_ratio", "wide"),
        ("aspect_ratio", "16:9 "),
        ("aspect_ratio", "1234:1"),
        ("size", "1280:720"),
        ("size", "1280x"),
        ("size", "big"),
        ("size", "1280x720x3"),
    ],
)
def test_bad_aspect_ratio_and_size_formats_are_refused(field: str, value: str) -> None:
    assert refused({**BASE, field: value}).field == field


def test_bad_frame_type_is_refused_naming_the_nested_field() -> None:
    error = refused({"model": "m", "frame_images": [{**FRAME, "frame_type": "middle"}]})
    assert error.field is not None and error.field.startswith("frame_images.0")


def test_missing_model_is_refused() -> None:
    error = refused({"prompt": "p"})
    assert error.field == "model"
    assert "required" in str(error)


@pytest.mark.parametrize("unknown", ["callback_url", "Prompt", "webhook"])
def test_unknown_top_level_field_is_refused_by_name(unknown: str) -> None:
    error = refused({**BASE, unknown: "x"})
    assert error.field == unknown
    assert repr(unknown) in str(error)


def test_metadata_over_max_metadata_bytes_is_refused() -> None:
    error = refused({**BASE, "metadata": {"blob": "x" * 300}})
    assert error.field == "metadata"
    assert "256" in str(error)
    assert parse({**BASE, "metadata": {"blob": "x" * 200}}).metadata == {"blob": "x" * 200}


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/jsonx", "multipart/form-data"])
def test_wrong_content_type_is_refused(content_type: str) -> None:
    assert "content_type" in str(refused(BASE, content_type=content_type))


# --- salvage_reply ------------------------------------------------------------------------------


def test_salvage_reply_keeps_id_model_and_metadata_of_a_refused_body() -> None:
    raw = json.dumps({"id": "req-9", "model": "m", "metadata": {"k": 1}, "duration": "long"}).encode()
    with pytest.raises(InvalidRequest):
        parse(raw)
    assert salvage_reply(raw) == {"id": "req-9", "model": "m", "metadata": {"k": 1}}


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b'"s"', b"null", b"\xff\xfe", b'{"id": 5, "metadata": [1]}'])
def test_salvage_reply_of_garbage_is_empty(raw: bytes) -> None:
    assert salvage_reply(raw) == {}


def test_salvage_reply_drops_an_invalid_id_and_oversized_metadata() -> None:
    raw = json.dumps({"id": "bad id", "model": "m", "metadata": {"x": "y" * 20000}}).encode()
    assert salvage_reply(raw) == {"model": "m"}


def test_salvage_reply_drops_an_id_with_trailing_newline() -> None:
    assert "id" not in salvage_reply(json.dumps({"id": "abc\n"}).encode())


@pytest.mark.parametrize("bad", [".", "..", "..."])
def test_id_of_only_dots_is_refused(bad: str) -> None:
    """Ids of only dots fit the pattern but would name directories badly: refused."""
    assert refused({**BASE, "id": bad}).field == "id"
