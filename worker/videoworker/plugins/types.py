"""The objects hooks receive and return: a downloaded output, where it was stored, a job event."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class OutputFile:
    """A downloaded, verified video waiting to be stored (bytes counted, sha256, MP4 header checked)."""

    request_id: str
    index: int
    path: Path
    bytes: int
    sha256: str
    content_type: str = "video/mp4"


@dataclass(frozen=True)
class StoredOutput:
    """Where a storage plugin put an output: ``backend`` is its short name, ``location`` a URI."""

    backend: str
    location: str


FINAL_STATUSES = frozenset({"completed", "failed"})


@dataclass(frozen=True)
class JobEvent:
    """A status change as notifier plugins see it: the published event plus delivery instructions."""

    status: str
    request_id: str
    payload: dict[str, Any]
    delivery: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES
