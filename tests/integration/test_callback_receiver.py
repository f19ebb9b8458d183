"""The callback port on real sockets: what a delivery gets back, and what a slow or large one cannot hold.

The port faces the provider's network, so every answer here is one an outsider can
provoke. The daemon-level behaviour (hints, routing, reconciliation) is in test_callbacks.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.helpers import closed_by_server
from videoworker import metrics
from videoworker.callbacks.receiver import MAX_BODY, CallbackReceiver, Hint
from videoworker.callbacks.signature import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign
from videoworker.testing.recorder import until

SECRET = "whsec_receiver_test"
TIMEOUT = 0.5
MARGIN = 1.5  # scheduling slack on a busy test machine, s


class Receiver:
    def __init__(self, **options: Any) -> None:
        self.hints: list[Hint] = []
        self.server = CallbackReceiver(self.hints.append, secret=SECRET, **{"request_timeout": TIMEOUT, **options})
        self.port = 0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    got.port = await got.server.start("127.0.0.1", 0)
    yield got
    await got.server.stop()


@pytest.fixture
async def small_receiver() -> AsyncIterator[Receiver]:
    """Two connections at most, and a deadline long enough that only eviction can free a slot in time."""
    got = Receiver(max_connections=2, request_timeout=30)
    got.port = await got.server.start("127.0.0.1", 0)
    yield got
    await got.server.stop()


def delivery(request_id: str, *, job_id: str = "job-1", key: str = "key-1", secret: str = SECRET) -> bytes:
    body = json.dumps({"type": "video.generation.completed", "data": {"id": job_id, "status": "completed"}}).encode()
    headers = {
        "Host": "x",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        IDEMPOTENCY_HEADER: key,
    }
    head = f"POST /cb/{request_id} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


async def answer_of(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer: its status and body (read by Content-Length)."""
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def refused(outcome: str) -> float:
    return metrics.CALLBACKS.labels(outcome=outcome)._value.get()


async def test_signed_deliveries_on_one_connection_each_give_one_hint_and_repeats_none(receiver: Receiver) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", receiver.port)
    for data in (delivery("req-a"), delivery("req-a"), delivery("req-b", job_id="job-2", key="key-2")):
        writer.write(data)
        assert (await answer_of(reader))[0] == 204
    assert receiver.hints == [
        Hint("req-a", "job-1", "completed", signed=True),
        Hint("req-b", "job-2", "completed", signed=True),
    ]
    writer.close()


@pytest.mark.parametrize(
    ("data", "status", "why"),
    [
        (delivery("req-a", secret="someone-else"), 401, "signature does not match"),
        (delivery(".."), 404, "no request id"),
        (delivery("req%20a"), 404, "no request id"),
        (b"GET /cb/req-a HTTP/1.1\r\nHost: x\r\n\r\n", 405, ""),
        (b"POST /cb/req-a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nnope!", 401, "no signature header"),
    ],
)
async def test_a_refused_delivery_gets_its_reason_and_no_hint(
    receiver: Receiver, data: bytes, status: int, why: str
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", receiver.port)
    writer.write(data)
    got, body = await answer_of(reader)
    assert got == status and why.encode() in body
    assert receiver.hints == []
    writer.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_the_cap_is_refused_without_reading_it_all(receiver: Receiver, framing: str) -> None:
    before = refused("too_large")
    reader, writer = await asyncio.open_connection("127.0.0.1", receiver.port)
    if framing == "content-length":  # said up front: refused before a byte of it is sent
        writer.write(f"POST /cb/req-a HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
    else:  # found while reading: refused once past the cap, the sender still sending
        chunk = b"x" * 16384
        writer.write(b"POST /cb/req-a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 1)))
    async with asyncio.timeout(MARGIN):
        status, body = await answer_of(reader)
        await closed_by_server(reader)  # and the connection is not kept for the rest of it
    assert status == 413 and b"body over" in body
    assert refused("too_large") == before + 1 and receiver.hints == []
    writer.close()


async def test_a_body_that_trickles_is_refused_at_the_deadline_not_held(receiver: Receiver) -> None:
    """The head is in, so the connection is being answered: only the body's own deadline can free it."""
    before = refused("too_slow")
    reader, writer = await asyncio.open_connection("127.0.0.1", receiver.port)
    writer.write(b"POST /cb/req-a HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n{")
    sent = time.monotonic()
    async with asyncio.timeout(TIMEOUT + MARGIN):
        status, body = await answer_of(reader)
        await closed_by_server(reader)
    assert status == 408 and b"not sent within" in body
    assert time.monotonic() - sent >= TIMEOUT * 0.9, "refused before its deadline"
    await until(lambda: receiver.server.guard.open == 0, MARGIN, "its connection released", every=0.01)
    assert refused("too_slow") == before + 1 and receiver.hints == []
    writer.close()


async def test_bodies_that_trickle_are_pushed_out_at_the_cap_so_a_real_callback_gets_in(
    small_receiver: Receiver,
) -> None:
    """Head sent, body trickling: the request is not whole, so the connection is not safe from eviction."""
    tricklers = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", small_receiver.port)
        writer.write(b"POST /cb/req-slow HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n{")
        tricklers.append((reader, writer))
    await until(lambda: small_receiver.server.guard.open == 2, MARGIN, "both tricklers held", every=0.01)
    await asyncio.sleep(0.3)  # their heads parsed and their bodies being read, as a real trickler's would be
    reader, writer = await asyncio.open_connection("127.0.0.1", small_receiver.port)
    writer.write(delivery("req-a"))
    async with asyncio.timeout(MARGIN):
        assert (await answer_of(reader))[0] == 204
    assert small_receiver.hints == [Hint("req-a", "job-1", "completed", signed=True)]
    assert small_receiver.server.guard.evicted >= 1
    for _, trickler in tricklers:
        trickler.close()
    writer.close()


async def test_expect_100_continue_is_answered_before_the_body_is_sent(receiver: Receiver) -> None:
    data = delivery("req-a")
    head, _, body = data.partition(b"\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", receiver.port)
    writer.write(head + b"\r\nExpect: 100-continue\r\n\r\n")
    async with asyncio.timeout(MARGIN):
        assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert await reader.readline() == b"\r\n"
        writer.write(body)
        assert (await answer_of(reader))[0] == 204
    assert receiver.hints == [Hint("req-a", "job-1", "completed", signed=True)]
    writer.close()
