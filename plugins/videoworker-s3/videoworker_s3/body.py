"""A part's bytes as a seekable file, so the HTTP stack streams them instead of copying them.

botocore turns a ``bytes`` body into a ``BytesIO``, and aiohttp asks that for its buffer,
which makes a private copy of the whole part: two parts in memory instead of one. A
file-like view over the same buffer is read in small chunks (and rewound for a retry)
without a copy, and lets one buffer serve every part of an upload.
"""

from __future__ import annotations

import io
from typing import Any


class PartBody(io.RawIOBase):
    """A read-only, seekable view of ``data``."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        start = self._position
        count = min(len(buffer), len(self._view) - start)
        buffer[:count] = self._view[start : start + count]
        self._position = start + count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        # the view pins the part's bytes; drop it once the HTTP stack is done
        self._view.release()
        super().close()
