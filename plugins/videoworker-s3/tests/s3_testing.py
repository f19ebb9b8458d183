"""Names the s3 plugin's tests share (a module of its own: test modules must not import conftest)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from videoworker import OutputFile, Settings, VideoRequest

MiB = 1024 * 1024

#: ``await start_daemon(**section)``: a started daemon's Settings.
StartDaemon = Callable[..., Awaitable[Settings]]
#: ``make_output(size, index=0, request_id="req-1")``: a verified output file.
MakeOutput = Callable[..., OutputFile]


def request(request_id: str = "req-1", **delivery: Any) -> VideoRequest:
    """A minimal request, with ``delivery.s3`` options when given."""
    return VideoRequest(
        id=request_id, model="acme/video-1", prompt="a cat", delivery={"s3": delivery} if delivery else None
    )


class ServerLog:
    """What reached moto's S3 backend, and the faults a test asks it to make.

    ``calls`` counts backend operations and ``parts`` lists uploaded part numbers in order;
    ``fail(operation, args)`` returning True makes that operation fail with SlowDown;
    ``corrupt_part`` flips the bits of that part's first byte as it arrives; a key in ``hide_once``
    looks absent to the next lookup only (another writer racing the plugin).
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.parts: list[int] = []
        self.fail: Callable[[str, tuple[Any, ...]], bool] = lambda operation, args: False
        self.corrupt_part: int | None = None
        self.hide_once: set[str] = set()
