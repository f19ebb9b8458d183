"""What storage plugins receive and return, and the host's storage step around them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
