"""Streaming a video download to disk: the body is size-capped, length-checked, MP4-checked, hashed and fsynced.

This module owns what happens to the bytes of a content answer once the HTTP status is
known to be 2xx (:func:`save`). :class:`videoworker.provider.client.OpenRouterClient`
sends the request, maps HTTP failures and enforces the download deadline; a cut,
oversized, content-encoded or non-MP4 body, or a local write failure, raises
:class:`DownloadError` here.

The answer is untrusted, and so is whatever sits at the destination path:

- The body is stored exactly as it came (raw bytes, no decoding): a ``Content-Encoding``
  other than identity is refused, since httpx would otherwise inflate a 1 MB gzip into
  a 1 GiB file, past every check made on the wire.
- The file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` after unlinking any
  leftover (``unlink`` removes a symlink, never its target), so a symlink planted at
  the path is never followed. Its mode is ``file_mode`` exactly (set on the descriptor,
  so a service ``UMask=0077`` does not silently turn 0640 into 0600).
- The recorded media type comes from an allowlist, else ``video/mp4``
  (:func:`~videoworker.provider.untrusted.video_type` says why).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import IO

import httpx

from videoworker.errors import DownloadError
from videoworker.plugins.threads import run_in_thread
from videoworker.provider.bodies import raw_chunks, refuse_coding
from videoworker.provider.models import Download
from videoworker.provider.untrusted import AnswerRefused, video_type

#: Bytes gathered before each write on the loop: few writes, each short. 256 KiB, not 1 MiB: up to
#: max_concurrent_downloads (32) run at once, so this is 8 MiB in all.
_WRITE_BATCH = 256 << 10
_MP4_BRAND = b"ftyp"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _content_length(response: httpx.Response) -> int | None:
    try:
        value = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


async def save(where: str, response: httpx.Response, dest: Path, max_bytes: int, mode: int = 0o600) -> Download:
    """Stream the body of a 2xx content answer into a new file ``dest`` with permissions ``mode``, checking it."""
    try:
        refuse_coding(response)
    except AnswerRefused as exc:
        raise DownloadError(f"{where}: {exc}", retryable=False) from None
    expected = _content_length(response)
    if expected is not None and expected > max_bytes:
        raise DownloadError(f"{where}: {expected} bytes announced, over the {max_bytes}-byte cap", retryable=False)
    sink = _Sink(where, dest, max_bytes, mode)
    try:
        async for chunk in raw_chunks(response):
            sink.feed(chunk)
        if expected is not None and sink.size != expected:
            raise DownloadError(f"{where}: truncated, {sink.size} of {expected} bytes", retryable=True)
        sink.check_complete()
        await sink.finish()
    except httpx.RequestError as exc:
        raise DownloadError(f"{where}: cut after {sink.size} bytes: {type(exc).__name__}", retryable=True) from None
    except OSError as exc:
        raise _write_error(where, exc) from None
    finally:
        sink.abort()
    content_type = video_type(response.headers.get("Content-Type"))
    return Download(path=dest, bytes=sink.size, sha256=sink.sha256, content_type=content_type)


def _write_error(where: str, exc: OSError) -> DownloadError:
    # A local disk problem (full, read-only) may pass; the caller retries like a cut download.
    return DownloadError(f"{where}: cannot write the file: {exc.strerror or type(exc).__name__}", retryable=True)


class _Sink:
    """Counts, hashes, checks and writes one download; the file is written in large batches.

    The file is made on the first batch, so a video under one batch (most, at
    :data:`_WRITE_BATCH`) is created, written, fsynced and closed in one trip to a thread:
    the five system calls of making it no longer wait for the event loop's turn, nor hold
    it up.
    """

    def __init__(self, where: str, dest: Path, max_bytes: int, mode: int) -> None:
        self._where = where
        self._dest = dest
        self._mode = mode
        self._max = max_bytes
        self._file: IO[bytes] | None = None
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
            if self._file is None:
                self._file = _create(self._dest, self._mode)
            self._write_pending(self._file)

    def check_complete(self) -> None:
        """Raise unless a whole MP4 header arrived (an empty or tiny body is not a video)."""
        if len(self._head) < 8:
            raise DownloadError(f"{self._where}: {self.size} bytes is not an MP4", retryable=False)

    async def finish(self) -> None:
        """Write what is left, fsync and close in a thread (creating the file first if no batch did).

        A cancel (the stop, the download deadline) waits for the thread: the caller then
        deletes the file, and must not find it made, or still open, after it looked.
        """
        if self._file is None:
            self._owned = False
            await run_in_thread(self._create_whole)
            return
        self._write_pending(self._file)  # a failure here leaves the file to abort()
        self._owned = False
        await run_in_thread(_fsync_and_close, self._file)

    def abort(self) -> None:
        """Close the file unless :meth:`finish` handed it to its thread, which closes it. Safe to call twice."""
        if self._owned:
            self._owned = False
            if self._file is not None:
                self._file.close()

    def _create_whole(self) -> None:
        file = _create(self._dest, self._mode)
        try:
            self._write_pending(file)
        except BaseException:
            file.close()
            raise
        _fsync_and_close(file)

    def _check_head(self) -> None:
        if len(self._head) >= 8 and self._head[4:8] != _MP4_BRAND:
            raise DownloadError(f"{self._where}: body is not an MP4 (no ftyp box)", retryable=False)

    def _write_pending(self, file: IO[bytes]) -> None:
        file.write(self._pending)
        self._pending.clear()


def _create(dest: Path, mode: int) -> IO[bytes]:
    """A new, empty file at ``dest`` with exactly ``mode``; whatever was there (a leftover, a symlink) is removed."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dest)  # removes a symlink itself, never what it points to
    fd = os.open(dest, _CREATE, mode)  # O_EXCL: if anything reappeared in between, fail rather than follow it
    try:
        os.fchmod(fd, mode)  # the umask would otherwise narrow it
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def _fsync_and_close(file: IO[bytes]) -> None:
    try:
        file.flush()
        os.fsync(file.fileno())
    finally:
        file.close()
