"""The result half of the wire contract: event bodies, their ids and routing keys.

Events are published at least once (through the outbox). Each carries a stable
``message_id`` (``<id>:<status>``), so a consumer that sees one twice can tell.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def iso(ts: float | None = None) -> str:
    """A UTC timestamp as the contract writes it."""
    moment = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_body(code: str, message: str, *, retryable: bool = False) -> dict[str, Any]:
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
    """The event body for ``status``, from what the ledger knows of the job."""
    return {
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
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()


def routing_key(status: str) -> str:
    return f"video.{status}"


def message_id(request_id: str, status: str) -> str:
    return f"{request_id}:{status}"
