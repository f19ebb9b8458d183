"""The result half of the wire contract: event bodies, their ids and routing keys.

Events are published at least once (through the outbox). Each carries a stable
``message_id`` (``<id>:<status>``), so a consumer that sees one twice can tell.

:class:`ResultEvent` is the one definition of the event: :func:`build_event` builds every
body through it, and ``videoworker schema`` publishes its JSON Schema, so the two cannot
drift. The models are strict and closed, so a value the schema does not allow fails the
build (loudly, as a bug) instead of reaching consumers; nothing is coerced, so a valid
body comes out with the same keys, order and values that went in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

Status = Literal["submitted", "in_progress", "completed", "failed"]
#: Every status, in the order a job passes them; each has routing key ``video.<status>``.
STATUSES: tuple[str, ...] = get_args(Status)
#: Statuses that end a job; only these also go to the request's ``reply_to``.
FINAL_STATUSES = ("completed", "failed")

Stamp = Literal["received", "submitted", "completed", "delivered"]
IsoTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]

# Open on purpose: OpenRouter adds fields to usage; only the two videoworker relies on are named.
Usage = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "description": "What OpenRouter reported the job cost, passed on as it came (more fields may appear).",
            "properties": {
                "cost": {"type": ["number", "null"], "description": "Cost in USD."},
                "is_byok": {"type": ["boolean", "null"], "description": "Run on the caller's own provider key."},
            },
            "additionalProperties": True,
        }
    ),
]


class _Closed(BaseModel):
    # strict: nothing is coerced, so values come out exactly as they went in.
    # constants: NaN and Infinity stay floats, so encode() refuses them as it always did.
    model_config = ConfigDict(strict=True, extra="forbid", ser_json_inf_nan="constants")


class ErrorInfo(_Closed):
    """Why a job failed or a request was refused; only in failed events."""

    code: str = Field(
        description="Stable error code, e.g. invalid_request, model_unsupported, over_budget, provider_failed, "
        "timeout, download_failed, storage_failed (README, For producers). Plugins may add codes.",
    )
    message: str = Field(description="What went wrong, for people; never parse it.")
    retryable: bool = Field(description="True if publishing the same request again (with a new id) may succeed.")


class Output(_Closed):
    """One stored video of a completed job."""

    index: int = Field(ge=0, description="Position among the job's outputs, from 0.")
    location: str = Field(description="URI of the copy the first storage plugin kept.")
    locations: dict[str, str] = Field(description="Every kept copy: storage backend name -> URI.")
    content_type: str = Field(description="Media type of the video, e.g. video/mp4.")
    bytes: int = Field(ge=0, description="Size of the video in bytes.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the video, lower-case hex.")
    url: str | None = Field(
        default=None,
        description="A link the video can be fetched from (e.g. a presigned URL), when a storage plugin gave one.",
    )


class Cost(_Closed):
    """What the job was expected to cost and what the provider says it cost, in USD."""

    estimate_usd: float | None = Field(
        default=None, ge=0, description="The estimate reserved against the budget before the submit (null: none)."
    )
    actual_usd: float | None = Field(
        default=None, ge=0, description="The cost OpenRouter reported once the job ended there (null: not known)."
    )


class ResultEvent(_Closed):
    """A job's status change, published to the events exchange (``video.<status>``) and, when final, to ``reply_to``.

    Every key is always present. ``failed`` events, and only they, carry ``error``;
    ``completed`` events carry at least one output.
    """

    model_config = ConfigDict(
        title="ResultEvent",
        json_schema_extra={
            # the rules of _status_rules below, restated for JSON Schema
            "allOf": [
                {
                    "if": {"properties": {"status": {"const": "failed"}}},
                    "then": {"properties": {"error": {"type": "object"}}},
                    "else": {"properties": {"error": {"type": "null"}}},
                },
                {
                    "if": {"properties": {"status": {"const": "completed"}}},
                    "then": {"properties": {"outputs": {"minItems": 1}}},
                },
            ]
        },
    )

    id: str = Field(
        min_length=1,
        description="The request's id. For a refused message without a readable id: its AMQP message_id, "
        "else unparsed-<delivery tag>.",
    )
    status: Status = Field(description="The job's new status; also the routing key's last part.")
    job_id: str | None = Field(description="OpenRouter's job id; null until the submit is accepted.")
    generation_id: str | None = Field(description="OpenRouter's generation id, once the job completed there.")
    model: str | None = Field(description="The requested model; null if a refused message named none.")
    outputs: list[Output] = Field(description="The stored videos; empty until completed.")
    usage: Usage | None = Field(description="OpenRouter's usage report, once the job completed there.")
    error: ErrorInfo | None = Field(description="Why the job failed; null unless status is failed.")
    metadata: dict[str, Any] = Field(description="The request's metadata, echoed unchanged ({} without one).")
    timestamps: dict[Stamp, IsoTime] = Field(
        description="When the job was received, submitted, completed (at OpenRouter) and the final event "
        "delivered, as UTC ISO 8601 with milliseconds; a key appears once the step happened."
    )
    cost: Cost = Field(default_factory=Cost, description="The job's estimated and actual cost.")

    @model_validator(mode="after")
    def _status_rules(self) -> Self:
        if (self.status == "failed") != (self.error is not None):
            raise ValueError("a failed event carries an error, and no other event does")
        if self.status == "completed" and not self.outputs:
            raise ValueError("a completed event has at least one output")
        return self


def iso(ts: float | None = None) -> str:
    """A UTC timestamp as the contract writes it."""
    moment = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_body(code: str, message: str, *, retryable: bool = False) -> dict[str, Any]:
    """The ``error`` of a failed event (an :class:`ErrorInfo` as JSON)."""
    return {"code": code, "message": message, "retryable": retryable}


def build_event(
    request_id: str,
    status: str,
    *,
    model: str | None,
    data: dict[str, Any],
    metadata: dict[str, Any] | None,
    job_id: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event body for ``status``, from what the ledger knows of the job.

    Raises :class:`pydantic.ValidationError` if the body would break the published schema.
    """
    event = ResultEvent.model_validate(
        {
            "id": request_id,
            "status": status,
            "job_id": job_id,
            "generation_id": data.get("generation_id"),
            "model": model,
            "outputs": data.get("outputs", []),
            "usage": data.get("usage"),
            "error": error,
            "metadata": metadata or {},
            "timestamps": data.get("timestamps", {}),
            "cost": data.get("cost") or {},
        }
    )
    return event.model_dump(mode="json")


def encode(event: dict[str, Any]) -> bytes:
    """The AMQP body of an event: compact JSON, never NaN or Infinity."""
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()


def routing_key(status: str) -> str:
    """The events exchange's routing key for ``status``."""
    return f"video.{status}"


def message_id(request_id: str, status: str) -> str:
    """The AMQP message_id of an event: the same on every republish, so consumers can drop repeats."""
    return f"{request_id}:{status}"
