"""The AsyncAPI 3.0 document of the wire contract, generated from the same schemas ``videoworker schema`` prints.

docs/asyncapi.json is this module's output, committed so that producers can read it
without installing anything; a unit test fails when the two differ. Regenerate with::

    python -m videoworker.contract.asyncapi > docs/asyncapi.json

Names are the defaults of the settings (``request_queue``, ``events_exchange``); a
deployment that changes them changes the addresses, not the messages.
"""

from __future__ import annotations

import json
from typing import Any

from videoworker.config import Settings
from videoworker.contract.events import STATUSES
from videoworker.contract.examples import example_events, example_request
from videoworker.contract.schemas import CONTRACT_VERSION, bundle, schemas
from videoworker.contract.topology import request_queue_arguments

AMQP = "0.3.0"  # bindingVersion of the AMQP 0-9-1 bindings
_DEFAULTS = Settings.model_construct()  # the declared defaults, untouched by environment or config files


def document() -> dict[str, Any]:
    """The whole AsyncAPI document, as JSON-ready data."""
    return {
        "asyncapi": "3.0.0",
        "id": f"urn:videoworker:asyncapi:{CONTRACT_VERSION}",
        "info": {
            "title": "videoworker",
            "version": CONTRACT_VERSION,
            "description": (
                "Video generation over RabbitMQ: producers publish requests to a queue; videoworker submits them "
                "to OpenRouter's video API, stores the videos, and announces every status change on a topic "
                "exchange. Final events also go to the request's reply_to queue. Refused requests are answered "
                "with a failed event and dead-lettered."
            ),
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "The deployment's RabbitMQ (setting amqp_url); localhost:5672 is the default.",
            }
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": _components(),
    }


def render() -> str:
    """The document as committed in docs/asyncapi.json."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def _channels() -> dict[str, Any]:
    s = _DEFAULTS
    return {
        "requests": {
            "address": s.request_queue,
            "title": "Video requests",
            "description": (
                "Durable quorum queue the daemon consumes. Publish through the default exchange with routing key "
                f"{s.request_queue}, persistent, with publisher confirms; at most {s.max_message_bytes} bytes. "
                f"After {s.delivery_limit} deliveries (setting delivery_limit) the broker dead-letters a message."
            ),
            "messages": {"videoRequest": _ref("components/messages/videoRequest")},
            "bindings": {"amqp": _queue_binding(s.request_queue)},
            "x-queue-arguments": request_queue_arguments(s.delivery_limit, s.dead_letter_queue),
        },
        "events": {
            "address": "video.{status}",
            "title": "Result events",
            "description": (
                f"Routing keys of the durable topic exchange {s.events_exchange}: every status change of every "
                "job, published at least once (drop repeats by message_id). Bind a queue with video.# for all, "
                "or video.completed / video.failed for outcomes only."
            ),
            "parameters": {
                "status": {
                    "enum": list(STATUSES),
                    "description": "The event's status.",
                    "location": "$message.payload#/status",
                }
            },
            "messages": {"resultEvent": _ref("components/messages/resultEvent")},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": s.events_exchange,
                        "type": "topic",
                        "durable": True,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                    "bindingVersion": AMQP,
                }
            },
        },
        "replies": {
            "address": None,
            "title": "Replies",
            "description": (
                "The producer's own queue, named by the request's reply_to: the final event (completed or "
                "failed) only, through the default exchange, with the request's correlation_id. A duplicate "
                "request of a finished id is answered again from the ledger."
            ),
            "messages": {"resultEvent": _ref("components/messages/resultEvent")},
        },
        "deadLetters": {
            "address": s.dead_letter_queue,
            "title": "Dead letters",
            "description": (
                "Durable quorum queue of refused requests, byte for byte, with the reason in headers. Messages "
                "the broker dead-lettered after delivery_limit deliveries land here too, with RabbitMQ's "
                "x-death headers instead."
            ),
            "messages": {"refusedRequest": _ref("components/messages/refusedRequest")},
            "bindings": {"amqp": _queue_binding(s.dead_letter_queue)},
            "x-queue-arguments": {"x-queue-type": "quorum"},
        },
    }


def _operations() -> dict[str, Any]:
    return {
        "receiveRequest": {
            "action": "receive",
            "channel": _ref("channels/requests"),
            "title": "Take a request",
            "description": (
                "Acked once the request is recorded (or refused and dead-lettered). A known id is never "
                "submitted again: its final event is sent to reply_to instead."
            ),
            "messages": [_ref("channels/requests/messages/videoRequest")],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP}},
            "reply": {
                "address": {
                    "location": "$message.header#/reply_to",
                    "description": "The request's AMQP reply_to property.",
                },
                "channel": _ref("channels/replies"),
                "messages": [_ref("channels/replies/messages/resultEvent")],
            },
        },
        "sendEvent": {
            "action": "send",
            "channel": _ref("channels/events"),
            "title": "Announce a status change",
            "messages": [_ref("channels/events/messages/resultEvent")],
            "bindings": _persistent(),
        },
        "sendReply": {
            "action": "send",
            "channel": _ref("channels/replies"),
            "title": "Answer the producer",
            "description": "Final events only, to the request's reply_to, with its correlation_id.",
            "messages": [_ref("channels/replies/messages/resultEvent")],
            "bindings": _persistent(),
        },
        "sendDeadLetter": {
            "action": "send",
            "channel": _ref("channels/deadLetters"),
            "title": "Dead-letter a refused request",
            "messages": [_ref("channels/deadLetters/messages/refusedRequest")],
            "bindings": _persistent(),
        },
    }


def _components() -> dict[str, Any]:
    found = schemas()
    return {
        "schemas": {**bundle(found.values(), "#/components/schemas/"), "DeadLetterHeaders": _dead_letter_headers()},
        "messages": _messages(),
        "messageTraits": {
            "amqpProperties": {
                "contentType": "application/json",
                "correlationId": _ref("components/correlationIds/correlationId"),
                "x-amqp-properties": {
                    "message_id": "Requests: the id if the body has none. Events: <id>:<status>, the same on "
                    "every republish. Dead letters: the refused message's own.",
                    "correlation_id": "Set by the producer on a request; copied to its replies and dead letter.",
                    "reply_to": "Requests only: the queue that gets the final event.",
                    "content_type": "application/json (requests may leave it out)",
                    "delivery_mode": "2 (persistent) on everything videoworker sends",
                },
            }
        },
        "correlationIds": {
            "correlationId": {
                "description": "The AMQP correlation_id property: the request's, echoed on its replies.",
                "location": "$message.header#/correlation_id",
            }
        },
    }


def _messages() -> dict[str, Any]:
    events = example_events()
    return {
        "videoRequest": {
            "name": "VideoRequest",
            "title": "Video request",
            "summary": "Make a video; the body is OpenRouter's video request plus id, metadata and delivery.",
            "contentType": "application/json",
            "payload": _ref("components/schemas/VideoRequest"),
            "traits": [_ref("components/messageTraits/amqpProperties")],
            "examples": [{"name": "readme", "payload": example_request()}],
        },
        "resultEvent": {
            "name": "ResultEvent",
            "title": "Result event",
            "summary": "A job's status changed: submitted, in_progress, completed or failed.",
            "contentType": "application/json",
            "payload": _ref("components/schemas/ResultEvent"),
            "traits": [_ref("components/messageTraits/amqpProperties")],
            "examples": [{"name": name, "payload": event} for name, event in events.items()],
        },
        "refusedRequest": {
            "name": "RefusedRequest",
            "title": "Refused request",
            "summary": "A request that was refused (its failed event says why), with the reason in headers.",
            "contentType": "application/json",
            "headers": _ref("components/schemas/DeadLetterHeaders"),
            "payload": {"description": "The refused message's body, unchanged; it may not be JSON at all."},
            "traits": [_ref("components/messageTraits/amqpProperties")],
        },
    }


def _dead_letter_headers() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "description": "AMQP headers of a dead letter that videoworker refused (all but the optional two are set).",
        "properties": {
            "x-videoworker-error-code": {
                **text,
                "description": "The failed event's error.code.",
                "examples": ["invalid_request", "model_unsupported"],
            },
            "x-videoworker-error": {**text, "maxLength": 1000, "description": "The failed event's error.message."},
            "x-videoworker-error-field": {**text, "description": "The offending field, when there is one."},
            "x-videoworker-instance": {**text, "description": "The instance_id of the daemon that refused it."},
            "x-original-reply-to": {**text, "description": "The request's reply_to, when it had one."},
            "x-videoworker-replays": {
                "type": "integer",
                "minimum": 1,
                "description": "On a request republished by `videoworker dead-letters replay`: how often it was.",
            },
        },
        "additionalProperties": True,
    }


def _persistent() -> dict[str, Any]:
    return {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP}}


def _queue_binding(name: str) -> dict[str, Any]:
    queue = {"name": name, "durable": True, "exclusive": False, "autoDelete": False, "vhost": "/"}
    return {"is": "queue", "queue": queue, "bindingVersion": AMQP}


def _ref(pointer: str) -> dict[str, str]:
    return {"$ref": f"#/{pointer}"}


if __name__ == "__main__":
    print(render(), end="")
