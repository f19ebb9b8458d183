"""Unit tests for the AsyncAPI document: committed as generated, complete, self-contained, and true to the code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.schema_check import check_event, check_request
from tests.unit.test_contract import CASES
from tests.unit.test_contract_request import INVALID, VALID
from videoworker.config import Settings
from videoworker.contract import asyncapi
from videoworker.contract.events import STATUSES, build_event, routing_key
from videoworker.contract.examples import example_events, example_request
from videoworker.contract.schemas import EVENT_SCHEMA_ID, REQUEST_SCHEMA_ID

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.json"
PACKAGE = ROOT / "worker" / "videoworker"
DOC_URI = "urn:videoworker:asyncapi-test"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    """The generated document, once per module."""
    return asyncapi.document()


def test_committed_document_is_the_generated_one() -> None:
    """docs/asyncapi.json is exactly what the code generates, so it cannot go stale."""
    assert COMMITTED.read_text(encoding="utf-8") == asyncapi.render(), (
        "docs/asyncapi.json is out of date; regenerate it with: "
        ".venv/bin/python -m videoworker.contract.asyncapi > docs/asyncapi.json"
    )


def test_document_has_every_part(doc: dict[str, Any]) -> None:
    """AsyncAPI 3.0.0 with the four channels, four operations and three messages of the contract."""
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert set(doc["channels"]) == {"requests", "events", "replies", "deadLetters"}
    assert {name: op["action"] for name, op in doc["operations"].items()} == {
        "receiveRequest": "receive",
        "sendEvent": "send",
        "sendReply": "send",
        "sendDeadLetter": "send",
    }
    messages = doc["components"]["messages"]
    assert set(messages) == {"videoRequest", "resultEvent", "refusedRequest"}
    assert all(m["contentType"] == "application/json" for m in messages.values())


def test_addresses_are_the_settings_defaults(doc: dict[str, Any]) -> None:
    """Queue and exchange names come from the settings' defaults, as the daemon declares them."""
    defaults = Settings.model_construct()
    channels = doc["channels"]
    assert channels["requests"]["address"] == defaults.request_queue == "videos.requests"
    assert channels["deadLetters"]["address"] == defaults.dead_letter_queue == "videos.requests.dead"
    assert channels["events"]["bindings"]["amqp"]["exchange"]["name"] == defaults.events_exchange
    assert channels["events"]["bindings"]["amqp"]["exchange"]["type"] == "topic"
    assert channels["replies"]["address"] is None
    for name in ("requests", "deadLetters"):
        binding = channels[name]["bindings"]["amqp"]
        assert binding["is"] == "queue" and binding["queue"]["durable"] is True
        assert channels[name]["x-queue-arguments"]["x-queue-type"] == "quorum"


def test_every_binding_is_amqp_0_3_0(doc: dict[str, Any]) -> None:
    """Every binding in the document is an AMQP binding of version 0.3.0."""
    bindings = [value for key, value in _entries(doc) if key == "bindings"]
    assert bindings
    for found in bindings:
        assert set(found) == {"amqp"} and found["amqp"]["bindingVersion"] == "0.3.0"


def test_routing_keys_match_the_events_channel(doc: dict[str, Any]) -> None:
    """The events channel's address with each status is the routing key the daemon publishes with."""
    channel = doc["channels"]["events"]
    assert channel["parameters"]["status"]["enum"] == list(STATUSES)
    for status in STATUSES:
        assert channel["address"].replace("{status}", status) == routing_key(status)


def test_operations_use_their_channels_messages(doc: dict[str, Any]) -> None:
    """Each operation's messages (and reply) are messages of the channel it names, as AsyncAPI 3 requires."""
    for name, op in doc["operations"].items():
        for part in (op, op.get("reply")):
            if part is None:
                continue
            channel = part["channel"]["$ref"]
            assert part["messages"], name
            for message in part["messages"]:
                assert message["$ref"].startswith(f"{channel}/messages/"), (name, message)


def test_every_ref_resolves_within_the_document(doc: dict[str, Any]) -> None:
    """Every $ref is a local JSON pointer that lands on an object of the document."""
    refs = [value for key, value in _entries(doc) if key == "$ref"]
    assert len(refs) > 20
    for ref in refs:
        assert ref.startswith("#/"), ref
        target = _pointer(doc, ref)
        assert isinstance(target, dict), ref


def test_dead_letter_headers_are_those_the_daemon_sets(doc: dict[str, Any]) -> None:
    """The documented dead-letter headers are exactly the x-videoworker-* / x-original-* the code writes."""
    written = set()
    for path in PACKAGE.rglob("*.py"):
        if "contract" not in path.parts:
            written |= set(re.findall(r"[\"'](x-(?:videoworker|original)-[a-z-]+)[\"']", path.read_text("utf-8")))
    documented = set(doc["components"]["schemas"]["DeadLetterHeaders"]["properties"])
    assert written, "no dead-letter header found in the code"
    assert documented == written


def test_embedded_schemas_keep_their_ids(doc: dict[str, Any]) -> None:
    """The embedded request and event schemas say which published schema they are."""
    found = doc["components"]["schemas"]
    assert found["VideoRequest"]["x-json-schema-id"] == REQUEST_SCHEMA_ID
    assert found["ResultEvent"]["x-json-schema-id"] == EVENT_SCHEMA_ID
    assert not [key for key, _ in _entries(found) if key in ("$id", "$schema", "$defs")]


def test_embedded_request_schema_judges_like_the_published_one(doc: dict[str, Any]) -> None:
    """Through the document's components, every request of the tables gets the same verdict as published."""
    validator = _component_validator(doc, "VideoRequest")
    for body in VALID.values():
        assert validator.is_valid(body), body
    for body in INVALID.values():
        assert not validator.is_valid(body), body


def test_embedded_event_schema_judges_like_the_published_one(doc: dict[str, Any]) -> None:
    """Through the document's components, real events validate and a broken one does not."""
    validator = _component_validator(doc, "ResultEvent")
    for request_id, status, kwargs in CASES.values():
        event = build_event(request_id, status, **kwargs)
        assert validator.is_valid(event), event
        assert not validator.is_valid({**event, "outputs": [{"index": 0}]})


def test_examples_fit_their_messages(doc: dict[str, Any]) -> None:
    """The message examples are valid: the README's request, and events built by build_event."""
    messages = doc["components"]["messages"]
    assert [e["payload"] for e in messages["videoRequest"]["examples"]] == [example_request()]
    check_request(example_request())
    assert [e["payload"] for e in messages["resultEvent"]["examples"]] == list(example_events().values())
    for event in example_events().values():
        check_event(event)


def _component_validator(doc: dict[str, Any], name: str) -> Any:
    """A validator of ``components/schemas/<name>`` that resolves refs against the whole document."""
    registry: Registry[Any] = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(doc))
    return Draft202012Validator({"$ref": f"{DOC_URI}#/components/schemas/{name}"}, registry=registry)


def _pointer(doc: dict[str, Any], ref: str) -> Any:
    """The node a local ``#/…`` JSON pointer names, or an AssertionError saying where it breaks."""
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve (no {part!r})"
        node = node[part]
    return node


def _entries(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of every object in ``node``, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _entries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _entries(item)
