"""Small builders shared by tests: a parsed request and a downloaded output file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from videoworker import OutputFile, VideoRequest
from videoworker.contract.request import parse_request


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
