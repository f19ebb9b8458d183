"""Example messages of the wire contract, for the AsyncAPI document and for tests.

The events are built by :func:`build_event`, so they are what the daemon would send.
"""

from __future__ import annotations

from typing import Any

from videoworker.contract.events import build_event, error_body


def example_request() -> dict[str, Any]:
    """The README's example request (a fresh copy); the example events answer it."""
    return {
        "id": "order-42-intro",
        "model": "google/veo-3.1",
        "prompt": "A paper boat on a rainy street",
        "duration": 8,
        "resolution": "1080p",
        "aspect_ratio": "16:9",
        "metadata": {"order": 42},
        "delivery": {"local": {}},
    }


def example_events() -> dict[str, dict[str, Any]]:
    """A completed and a refused event, built by :func:`build_event` (so they follow the schema)."""
    request = example_request()
    received = "2025-01-01T12:00:00.000Z"
    uri = "file:///var/lib/videoworker/videos/order-42-intro/0.mp4"
    output = {
        "index": 0,
        "location": uri,
        "locations": {"local": uri},
        "content_type": "video/mp4",
        "bytes": 5242880,
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    }
    stamps = {
        "received": received,
        "submitted": "2025-01-01T12:00:01.000Z",
        "completed": "2025-01-01T12:01:30.000Z",
        "delivered": "2025-01-01T12:01:32.000Z",
    }
    done = {"generation_id": "gen-1735732861-abc", "outputs": [output], "usage": {"cost": 0.4, "is_byok": False}}
    model, metadata = request["model"], request["metadata"]
    completed = build_event(
        request["id"],
        "completed",
        model=model,
        data={**done, "timestamps": stamps},
        metadata=metadata,
        job_id="job-7f3a",
    )
    refused = build_event(
        "order-43",
        "failed",
        model=model,
        data={"timestamps": {"received": received}},
        metadata=metadata,
        error=error_body("invalid_request", "unknown field 'colour'", retryable=False),
    )
    return {"completed": completed, "refused": refused}
