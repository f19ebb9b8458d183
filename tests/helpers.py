"""Small builders shared by tests: a parsed request, a downloaded output file, an in-memory broker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videoworker import OutputFile, VideoRequest
from videoworker.contract.request import parse_request
from videoworker.errors import Unroutable


def make_request(request_id: str = "req-1", **fields: Any) -> VideoRequest:
    """A request for ``acme/video-1`` as intake would have parsed it; ``fields`` override or add."""
    body = {"id": request_id, "model": "acme/video-1", "prompt": "waves", **fields}
    return parse_request(
        json.dumps(body).encode(),
        message_id=None,
        content_type=None,
        max_message_bytes=1 << 20,
        max_prompt_chars=8000,
        max_metadata_bytes=16384,
    )


def make_output(tmp_path: Path, data: bytes, request_id: str = "req-1", index: int = 0) -> OutputFile:
    """A verified download of ``data``, as storage plugins receive it."""
    src = tmp_path / f"download-{request_id}-{index}-{len(data)}.part"
    src.write_bytes(data)
    return OutputFile(request_id, index, src, len(data), hashlib.sha256(data).hexdigest())


@dataclass
class Published:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    correlation_id: str | None


@dataclass
class MemoryPublisher:
    """Stands in for the broker: records confirmed publishes; can refuse some or fail all."""

    connected: bool = True
    messages: list[Published] = field(default_factory=list)
    unroutable: set[str] = field(default_factory=set)  # routing keys with no queue
    failure: Exception | None = None  # raised by every publish while set

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        correlation_id: str | None = None,
        order_key: str | None = None,
    ) -> None:
        if self.failure is not None:
            raise self.failure
        if routing_key in self.unroutable:
            raise Unroutable(f"no queue for {routing_key}")
        self.messages.append(Published(exchange, routing_key, body, message_id, correlation_id))

    def keys(self, request_id: str) -> list[str]:
        return [m.routing_key for m in self.messages if m.message_id.startswith(f"{request_id}:")]

    def keys_by_id(self) -> list[str]:
        """The message ids published so far, in order."""
        return [m.message_id for m in self.messages]


async def closed_by_server(reader: asyncio.StreamReader) -> float:
    """Read until the server closes the connection (end of stream or reset); return when it did."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    return time.monotonic()
