"""Unit tests for the result event: one model builds it, the published schema describes it, the bytes never change."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from tests.schema_check import check_event
from videoworker.contract.events import STATUSES, build_event, encode, error_body, iso, message_id, routing_key
from videoworker.contract.schemas import DIALECT, EVENT_SCHEMA_ID, REQUEST_SCHEMA_ID, schemas


def old_build_event(
    request_id: str,
    status: str,
    *,
    model: str | None,
    data: dict[str, Any],
    metadata: dict[str, Any] | None,
    job_id: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The builder before the model existed (commit e40fc9b), kept as the oracle of the event's exact bytes.

    Extended only by what the contract gained since, at the end of their objects:
    ``outputs[i].url`` and ``cost`` (always present, null when unknown).
    """
    return {
        "id": request_id,
        "status": status,
        "job_id": job_id,
        "generation_id": data.get("generation_id"),
        "model": model,
        "outputs": [{**o, "url": o.get("url")} if isinstance(o, dict) else o for o in data.get("outputs", [])],
        "usage": data.get("usage"),
        "error": error,
        "metadata": metadata or {},
        "timestamps": data.get("timestamps", {}),
        "cost": {"estimate_usd": None, "actual_usd": None, **(data.get("cost") or {})},
    }


SHA = "5d41402abc4b2a76b9719d911017c592" * 2
STAMPS = {"received": iso(1.0), "submitted": iso(2.5), "completed": iso(60.0), "delivered": iso(61.25)}


def output(n: int, **changes: Any) -> dict[str, Any]:
    """Output ``n`` of a completed job as the deliver step records it, with ``changes`` applied."""
    uri = f"file:///data/videos/req-1/{n}.mp4"
    return {
        "index": n,
        "location": uri,
        "locations": {"local": uri, "s3": f"s3://bucket/req-1/{n}.mp4"},
        "content_type": "video/mp4",
        "bytes": 1024 * (n + 1),
        "sha256": SHA,
        **changes,
    }


# (request_id, status, keyword arguments) as the intake and the engine call build_event
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "submitted": (
        "req-1",
        "submitted",
        {
            "model": "google/veo-3.1",
            "data": {"timestamps": {"received": STAMPS["received"], "submitted": STAMPS["submitted"]}},
            "metadata": {"order": 42, "note": "café ☕", "nested": {"list": [1, 2.5, None, True]}},
            "job_id": "job-abc",
        },
    ),
    "in_progress": (
        "req-1",
        "in_progress",
        {
            "model": "google/veo-3.1",
            "data": {"timestamps": {"received": STAMPS["received"]}, "submitted_at": 2.5, "output_count": 1},
            "metadata": None,
            "job_id": "job-abc",
        },
    ),
    "completed": (
        "req-1",
        "completed",
        {
            "model": "google/veo-3.1",
            "data": {
                "generation_id": "gen-1",
                "output_count": 2,
                "outputs": [output(0), output(1)],
                "usage": {"cost": 0.25, "is_byok": False, "tokens": {"video": 12}},
                "timestamps": dict(STAMPS),
                "submitted_at": 2.5,
            },
            "metadata": {"z": 1, "a": 2},
            "job_id": "job-abc",
        },
    ),
    "completed with a presigned url and a cost": (
        "req-3",
        "completed",
        {
            "model": "google/veo-3.1",
            "data": {
                "outputs": [output(0, url="https://bucket.example/req-3/0.mp4?X-Amz-Signature=abc")],
                "usage": {"cost": 1.5},
                "timestamps": dict(STAMPS),
                "cost": {"estimate_usd": 2.0, "actual_usd": 1.5},
            },
            "metadata": None,
            "job_id": "job-def",
        },
    ),
    "failed after completion": (
        "req-2",
        "failed",
        {
            "model": "google/veo-3.1",
            "data": {"generation_id": "gen-2", "usage": {"cost": None, "is_byok": None}, "timestamps": dict(STAMPS)},
            "metadata": {},
            "job_id": "job-def",
            "error": error_body("storage_failed", "storage failed for 600s: disk full", retryable=True),
        },
    ),
    "refused": (
        "unparsed-7",
        "failed",
        {
            "model": None,
            "data": {"timestamps": {"received": STAMPS["received"]}},
            "metadata": None,
            "error": error_body("invalid_request", "body is not valid JSON: Expecting value: line 1 column 1"),
        },
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_event_is_byte_for_byte_what_the_old_builder_wrote(case: str) -> None:
    """For the inputs the daemon passes, the model-built event has the old keys, order, values and bytes."""
    request_id, status, kwargs = CASES[case]
    new, old = build_event(request_id, status, **kwargs), old_build_event(request_id, status, **kwargs)
    assert encode(new) == encode(old)
    assert list(new) == list(old) and new == old


@pytest.mark.parametrize("case", CASES)
def test_built_event_fits_the_published_schema(case: str) -> None:
    """Every kind of event the daemon builds validates against the published JSON Schema."""
    request_id, status, kwargs = CASES[case]
    event = build_event(request_id, status, **kwargs)
    check_event(event, routing_key=routing_key(status), message_id=message_id(request_id, status))
    check_event(encode(event))


def test_cases_cover_every_status() -> None:
    """The table above builds at least one event of each status."""
    assert {status for _, status, _ in CASES.values()} == set(STATUSES)


def test_timestamps_keep_their_recorded_order() -> None:
    """Timestamps come out in the order they were recorded, as the old builder passed them on."""
    data = {"timestamps": {"delivered": STAMPS["delivered"], "received": STAMPS["received"]}}
    event = build_event("r", "failed", model="m", data=data, metadata=None, error=error_body("timeout", "late"))
    assert list(event["timestamps"]) == ["delivered", "received"]


# Bodies the schema forbids, by what changes from a valid completed event (or its data).
BROKEN: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "unknown status": ({"status": "queued"}, {}),
    "completed without outputs": ({}, {"outputs": []}),
    "completed with an error": ({"error": error_body("timeout", "late")}, {}),
    "output with a short sha256": ({}, {"outputs": [output(0, sha256="abc")]}),
    "output with an unknown field": ({}, {"outputs": [output(0, colour="red")]}),
    "negative cost": ({}, {"cost": {"estimate_usd": -1.0}}),
    "output without locations": ({}, {"outputs": [{k: v for k, v in output(0).items() if k != "locations"}]}),
    "index as a boolean": ({}, {"outputs": [output(0, index=True)]}),
    "bytes as a string": ({}, {"outputs": [output(0, bytes="1024")]}),
    "unknown timestamp": ({}, {"timestamps": {"queued": STAMPS["received"]}}),
    "timestamp as a number": ({}, {"timestamps": {"received": 1.0}}),
    "usage as a list": ({}, {"usage": [0.25]}),
}


@pytest.mark.parametrize("case", BROKEN)
def test_builder_and_schema_refuse_the_same_bodies(case: str) -> None:
    """What build_event refuses to build, the published schema also refuses (so they cannot drift apart)."""
    changes, data_changes = BROKEN[case]
    request_id, status, kwargs = CASES["completed"]
    kwargs = {**kwargs, "data": {**kwargs["data"], **data_changes}}
    args = {"request_id": request_id, "status": status, **kwargs, **changes}
    with pytest.raises(ValidationError):
        build_event(**args)
    with pytest.raises(AssertionError, match="breaks the published schema"):
        check_event(old_build_event(**args))


def test_failed_event_needs_an_error() -> None:
    """A failed event without an error is refused by the builder and by the schema."""
    kwargs: dict[str, Any] = {"model": "m", "data": {}, "metadata": None}
    with pytest.raises(ValidationError, match="carries an error"):
        build_event("r", "failed", **kwargs)
    with pytest.raises(AssertionError, match=r"\$\.error"):
        check_event(old_build_event("r", "failed", **kwargs))


def test_nan_is_still_refused_when_encoding() -> None:
    """NaN in usage passes the model untouched and encode() refuses it, as before (it is not JSON)."""
    event = build_event("r", "submitted", model="m", data={"usage": {"cost": float("nan")}}, metadata=None)
    with pytest.raises(ValueError, match="JSON compliant"):
        encode(event)


def test_check_event_names_the_delivery_mismatch() -> None:
    """The helper also checks a delivery's routing key, message_id and reply-ness against the body."""
    request_id, status, kwargs = CASES["submitted"]
    event = build_event(request_id, status, **kwargs)
    with pytest.raises(AssertionError, match=r"routing key 'video\.completed'"):
        check_event(event, routing_key="video.completed")
    with pytest.raises(AssertionError, match="message_id 'req-1'"):
        check_event(event, message_id="req-1")
    with pytest.raises(AssertionError, match="only final events are replies"):
        check_event(event, reply=True)


@pytest.mark.parametrize(("which", "schema_id"), [("request", REQUEST_SCHEMA_ID), ("event", EVENT_SCHEMA_ID)])
def test_schema_names_its_dialect_and_id(which: str, schema_id: str) -> None:
    """Each published schema starts with the 2020-12 $schema, its stable URN $id, a title and a description."""
    schema = schemas()[which]
    assert list(schema)[:4] == ["$schema", "$id", "title", "description"]
    assert schema["$schema"] == DIALECT and schema["$id"] == schema_id
    assert schema_id.startswith("urn:videoworker:schema:")
    assert schema["title"] and len(schema["description"]) > 40


@pytest.mark.parametrize("which", ["request", "event"])
def test_schema_is_valid_draft_2020_12(which: str) -> None:
    """The published schemas are themselves valid Draft 2020-12 schemas, and plain JSON."""
    schema = schemas()[which]
    Draft202012Validator.check_schema(schema)
    assert json.loads(json.dumps(schema)) == schema


def test_schema_command_prints_the_published_schemas() -> None:
    """`videoworker schema` prints what schemas() returns for the plugins loaded here (their delivery options)."""
    from videoworker.cli import main
    from videoworker.config import load_settings
    from videoworker.plugins.hooks import Hooks
    from videoworker.plugins.manager import make_plugin_manager

    result = CliRunner().invoke(main, ["schema", "all"])
    assert result.exit_code == 0, result.output
    settings = load_settings(None)
    models = Hooks(make_plugin_manager(settings), settings).declared_models("videoworker_delivery_model")
    assert json.loads(result.output) == schemas(models)
    delivery = json.loads(result.output)["request"]["properties"]["delivery"]["anyOf"][0]["properties"]
    assert set(delivery) == set(models)
