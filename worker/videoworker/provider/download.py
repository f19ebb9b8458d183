"""Streaming a video download to disk: the body is size-capped, length-checked, MP4-checked, hashed and fsynced.

This module owns what happens to the bytes of a content answer once the HTTP status is
known to be 2xx (:func:`save`), and the capped read of an error body (:func:`read_capped`).
:class:`videoworker.provider.client.OpenRouterClient` sends the request and maps HTTP failures;
a cut, oversized or non-MP4 body, or a local write failure, raises :class:`DownloadError` here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import IO

import httpx

from videoworker.errors import DownloadError
from videoworker.provider.models import Download

_WRITE_BATCH = 1 << 20  # write to disk in 1 MiB batches so the event loop is never blocked long
_MP4_BRAND = b"ftyp"


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Up to ``limit`` bytes of a streamed (error) body: enough for a message, never a whole video."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])


def _content_length(response: httpx.Response) -> int | None:
    try:
        value = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


async def save(where: str, response: httpx.Response, dest: Path, max_bytes: int) -> Download:
    """Stream the body of a 2xx content answer into ``dest``, checking it on the way."""
    expected = _content_length(response)
    if expected is not None and expected > max_bytes:
        raise DownloadError(f"{where}: {expected} bytes announced, over the {max_bytes}-byte cap", retryable=False)
    try:
        sink = _Sink(where, dest, max_bytes)
    except OSError as exc:
        raise _write_error(where, exc) from None
    try:
        async for chunk in response.aiter_bytes():
            sink.feed(chunk)
        received = _wire_bytes(response, sink.size)
        if expected is not None and received != expected:
            raise DownloadError(f"{where}: truncated, {received} of {expected} bytes", retryable=True)
        sink.check_complete()
        await sink.finish()
    except httpx.RequestError as exc:
        raise DownloadError(f"{where}: cut after {sink.size} bytes: {type(exc).__name__}", retryable=True) from None
    except OSError as exc:
        raise _write_error(where, exc) from None
    finally:
        sink.abort()
    content_type = response.headers.get("Content-Type", "video/mp4").split(";")[0].strip() or "video/mp4"
    return Download(path=dest, bytes=sink.size, sha256=sink.sha256, content_type=content_type)


def _wire_bytes(response: httpx.Response, decoded: int) -> int:
    """Bytes as sent, to compare with Content-Length: the decoded count unless a content coding applies."""
    coding = response.headers.get("Content-Encoding", "identity").strip().lower()
    return decoded if coding in ("", "identity") else response.num_bytes_downloaded


def _write_error(where: str, exc: OSError) -> DownloadError:
    # A local disk problem (full, read-only) may pass; the caller retries like a cut download.
    return DownloadError(f"{where}: cannot write the file: {exc.strerror or type(exc).__name__}", retryable=True)


class _Sink:
    """Counts, hashes, checks and writes one download; the file is written in large batches."""

    def __init__(self, where: str, dest: Path, max_bytes: int) -> None:
        self._where = where
        self._max = max_bytes
        self._file: IO[bytes] = open(dest, "wb")  # noqa: SIM115 (closed by finish() or abort())
        self._owned = True
        self._hash = hashlib.sha256()
        self._pending = bytearray()
        self._head = b""
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the body; raise as soon as it is too big or clearly not an MP4."""
        self.size += len(chunk)
        if self.size > self._max:
            raise DownloadError(f"{self._where}: more than the {self._max}-byte cap", retryable=False)
        self._hash.update(chunk)
        if len(self._head) < 8:
            self._head += chunk[: 8 - len(self._head)]
            self._check_head()
        self._pending += chunk
        if len(self._pending) >= _WRITE_BATCH:
            self._write_pending()

    def check_complete(self) -> None:
        """Raise unless a whole MP4 header arrived (an empty or tiny body is not a video)."""
        if len(self._head) < 8:
            raise DownloadError(f"{self._where}: {self.size} bytes is not an MP4", retryable=False)

    async def finish(self) -> None:
        """Write what is left, fsync and close in a thread; the file is the thread's from here on."""
        self._write_pending()
        self._owned = False
        await asyncio.to_thread(_fsync_and_close, self._file)

    def abort(self) -> None:
        """Close the file unless :meth:`finish` handed it to its thread. Safe to call twice."""
        if self._owned:
            self._owned = False
            self._file.close()

    def _check_head(self) -> None:
        if len(self._head) >= 8 and self._head[4:8] != _MP4_BRAND:
            raise DownloadError(f"{self._where}: body is not an MP4 (no ftyp box)", retryable=False)

    def _write_pending(self) -> None:
        self._file.write(self._pending)
        self._pending.clear()


def _fsync_and_close(file: IO[bytes]) -> None:
    try:
        file.flush()
        os.fsync(file.fileno())
    finally:
        file.close()
