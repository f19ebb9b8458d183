"""JSON Schemas of both wire messages, for producers in other languages (``videoworker schema``).

Both come from the pydantic models the daemon itself uses: :class:`VideoRequest` parses
requests, :class:`ResultEvent` builds events. The few request rules that
:func:`parse_request` checks in code are restated here (:data:`REQUEST_RULES`); a unit
test compares the two on a table of requests. The ``$id`` of a schema changes only when
the contract changes incompatibly.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from videoworker.config import Settings
from videoworker.contract.events import ResultEvent
from videoworker.contract.request import MAX_DEPTH, VideoRequest

__all__ = [
    "CONTRACT_VERSION",
    "DIALECT",
    "EVENT_SCHEMA_ID",
    "REQUEST_RULES",
    "REQUEST_SCHEMA_ID",
    "ResultEvent",
    "bundle",
    "schemas",
]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: The contract's major version: it moves, with both ids, only on an incompatible change.
CONTRACT_VERSION = "1"
REQUEST_SCHEMA_ID = f"urn:videoworker:schema:request:{CONTRACT_VERSION}"
EVENT_SCHEMA_ID = f"urn:videoworker:schema:event:{CONTRACT_VERSION}"


def _default(setting: str) -> Any:
    # the declared default, not the environment's: the schema must not depend on where it is printed
    return Settings.model_fields[setting].default


REQUEST_DESCRIPTION = (
    f"A video-generation request: one UTF-8 JSON object, published to the queue {_default('request_queue')} "
    "through the default exchange, with content_type application/json or none. Checked by the daemon but not "
    "expressible here (defaults of its settings): the message is at most "
    f"{_default('max_message_bytes')} bytes (max_message_bytes), metadata at most "
    f"{_default('max_metadata_bytes')} bytes of JSON (max_metadata_bytes), the prompt at most "
    f"{_default('max_prompt_chars')} characters (max_prompt_chars); nothing nests deeper than {MAX_DEPTH} levels; "
    "integers have no fraction (8, not 8.0); and every value must be one the model advertises. A refused "
    "request gets a failed event with error.code invalid_request or model_unsupported."
)
EVENT_DESCRIPTION = (
    "A job's status change. Published (at least once; drop repeats by AMQP message_id <id>:<status>) to the "
    f"topic exchange {_default('events_exchange')} with routing key video.<status>; "
    "completed and failed events also go to the request's reply_to queue with its correlation_id. Every key is "
    "always present; failed events, and only they, carry an error; completed events carry at least one output."
)

#: Descriptions of the request's fields (those the model leaves undescribed); keys must be VideoRequest fields.
REQUEST_FIELD_NOTES = {
    "id": "Idempotency key: the same id is never submitted twice. Without one the AMQP message_id is used; "
    "without both, an id is generated and duplicates cannot be recognised.",
    "model": "An OpenRouter video model, e.g. google/veo-3.1.",
    "prompt": "Required and not blank, unless frame_images or input_references are given (then leave it out).",
    "metadata": "Echoed unchanged in every event (size limited by max_metadata_bytes).",
    "delivery": "Per-plugin instructions, by plugin name; never sent to OpenRouter.",
    "provider": "OpenRouter's provider routing options, passed on as they are.",
    "trace": "OpenRouter's trace object, passed on as it is.",
}

#: What parse_request checks in code beyond the model's fields.
REQUEST_RULES: list[dict[str, Any]] = [
    # an id of only dots fits the id pattern but would name directories and keys badly
    {"properties": {"id": {"not": {"type": "string", "pattern": "^[.]+$"}}}},
    # a prompt that is not blank, or no prompt at all and at least one image
    {
        "anyOf": [
            {"required": ["prompt"], "properties": {"prompt": {"type": "string", "pattern": "\\S"}}},
            {
                "properties": {"prompt": {"type": "null"}},
                "anyOf": [
                    {"required": ["frame_images"], "properties": {"frame_images": {"type": "array", "minItems": 1}}},
                    {
                        "required": ["input_references"],
                        "properties": {"input_references": {"type": "array", "minItems": 1}},
                    },
                ],
            },
        ]
    },
]


def request_schema(delivery: Mapping[str, type[BaseModel]] | None = None) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of a request body.

    ``delivery``: the loaded plugins' delivery-option models by plugin name; their schemas
    describe ``delivery.<name>`` (the daemon also refuses names of plugins it has not loaded,
    which a schema written without the deployment's plugin list cannot say).
    """
    schema = VideoRequest.model_json_schema()
    for name, note in REQUEST_FIELD_NOTES.items():
        schema["properties"][name].setdefault("description", note)
    schema["allOf"] = copy.deepcopy(REQUEST_RULES)
    if delivery is not None:
        _describe_delivery(schema, delivery)
    return _published(schema, REQUEST_SCHEMA_ID, "VideoRequest", REQUEST_DESCRIPTION)


def _describe_delivery(schema: dict[str, Any], models: Mapping[str, type[BaseModel]]) -> None:
    properties: dict[str, Any] = {}
    defs = schema.setdefault("$defs", {})
    for name, model in sorted(models.items()):
        part = model.model_json_schema(ref_template=f"#/$defs/delivery_{name}_{{model}}")
        defs.update({f"delivery_{name}_{key}": value for key, value in part.pop("$defs", {}).items()})
        properties[name] = part
    field = schema["properties"]["delivery"]
    field["anyOf"] = [
        {"type": "object", "properties": properties, "additionalProperties": {"type": "object"}},
        {"type": "null"},
    ]


def event_schema() -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of a result event body, as :func:`build_event` writes it."""
    schema = ResultEvent.model_json_schema(mode="serialization")
    return _published(schema, EVENT_SCHEMA_ID, "ResultEvent", EVENT_DESCRIPTION)


def schemas(delivery: Mapping[str, type[BaseModel]] | None = None) -> dict[str, dict[str, Any]]:
    """Both published schemas, by message: ``request`` and ``event`` (fresh dicts on every call)."""
    return {"request": request_schema(delivery), "event": event_schema()}


def _published(schema: dict[str, Any], schema_id: str, title: str, description: str) -> dict[str, Any]:
    schema.pop("title", None)
    schema.pop("description", None)
    return {"$schema": DIALECT, "$id": schema_id, "title": title, "description": description, **schema}


def bundle(published: Iterable[dict[str, Any]], base: str) -> dict[str, dict[str, Any]]:
    """Published schemas as one flat map of named schemas, for embedding at ``base`` (e.g. AsyncAPI components).

    Each schema goes under its title, its ``$defs`` beside it, and every ``$ref`` points to
    ``base``. ``$schema`` and ``$id`` are dropped, since an embedded ``$id`` would change
    what those refs resolve against; the id stays readable as ``x-json-schema-id``.
    """
    found: dict[str, dict[str, Any]] = {}
    for schema in published:
        body = copy.deepcopy(schema)
        defs = body.pop("$defs", {})
        body = {"x-json-schema-id": body.pop("$id"), **{k: v for k, v in body.items() if k != "$schema"}}
        for name, part in {body["title"]: body, **defs}.items():
            if name in found:
                raise ValueError(f"two schemas define {name!r}; rename one of the models")
            found[name] = _rebase(part, base)
    return found


def _rebase(node: Any, base: str) -> Any:
    if isinstance(node, dict):
        return {
            key: value.replace("#/$defs/", base) if key == "$ref" else _rebase(value, base)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rebase(item, base) for item in node]
    return node
