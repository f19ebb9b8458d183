"""Reading answer bodies off the wire, bounded: JSON answers, error bodies, and the content-coding check.

Every read here is of raw bytes (``aiter_raw``): the client asks for
``Accept-Encoding: identity`` and nothing is ever decompressed, so a small gzip bomb
cannot become a huge answer or file. A body in any other coding is refused
(:func:`refuse_coding`), since a server that compresses anyway ignored the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from videoworker.provider.untrusted import AnswerRefused

_IDENTITY = frozenset({"", "identity"})


def refuse_coding(response: httpx.Response) -> None:
    """Raise :class:`AnswerRefused` unless the body comes without a content coding (gzip, br, …)."""
    coding = response.headers.get("Content-Encoding", "").strip().lower()
    if coding not in _IDENTITY:
        raise AnswerRefused(f"answer has Content-Encoding {coding[:40]!r}; only identity is accepted")


async def raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as sent, piece by piece, never decoded."""
    if response.is_stream_consumed:  # built in memory (httpx.MockTransport): nothing left on the wire
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


async def read_answer(response: httpx.Response, limit: int) -> bytes:
    """The whole body of a 2xx JSON answer; :class:`AnswerRefused` as soon as it passes ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before anything is read.
    """
    refuse_coding(response)
    too_big = AnswerRefused(f"answer over {_size(limit)}; refused")
    announced = response.headers.get("Content-Length", "").strip()
    if announced.isdigit() and (len(announced) > 18 or int(announced) > limit):
        raise too_big
    body = bytearray()
    async for chunk in raw_chunks(response):
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Up to ``limit`` bytes of an error body: enough for a message, never a whole video. Empty when encoded."""
    if response.headers.get("Content-Encoding", "").strip().lower() not in _IDENTITY:
        return b""
    body = bytearray()
    async for chunk in raw_chunks(response):
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
