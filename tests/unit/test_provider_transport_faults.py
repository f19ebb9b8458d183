"""The aiohttp transport (videoworker.provider.transport) against servers that misbehave, over raw sockets.

From a review of the transport. Tests named after a FIXED defect failed on the first
version (the docstring says why it mattered); the others pin down behaviour the money
rule or the client depends on. Servers are raw asyncio servers, so every byte on the
wire is the test's choice; waits are on conditions with deadlines, never bare sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from pathlib import Path

import pytest

from tests.unit.raw_http import JOB, Handler, Server, answer, job_answer, keep_answering, linger, serving
from videoworker.errors import AmbiguousSubmit, DownloadError, PermanentError, ProviderError, RetryableError
from videoworker.provider.client import OpenRouterClient
from videoworker.provider.untrusted import ProviderLimits
from videoworker.testing.recorder import until

KEY = "sk-secret-review-0123456789"
JOB2 = {"id": "gen-vid-2-abcdefghij", "status": "pending"}
FAILED = {"id": "gen-vid-1-abcdefghij", "status": "failed", "error": "stale"}
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


def pooled_protocols(client: OpenRouterClient) -> list[object]:
    """The idle connections of the client's aiohttp pool (reaches into both libraries, to show what is pooled)."""
    session = client._http.transport._session  # type: ignore[attr-defined]
    if session is None:
        return []
    return [proto for conns in session.connector._conns.values() for proto, _ in conns]


# --- 1. the money rule: nothing after the send may read as "never sent" ------------------------------


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["FIN", "RST"])
async def test_post_on_a_connection_closed_under_it_is_ambiguous_and_never_resent(how: str) -> None:
    """A pooled connection the server drops (FIN: ServerDisconnectedError; RST: ClientOSError) after
    reading the next POST: aiohttp does not retry a POST (only GET/HEAD/OPTIONS/TRACE/PUT/DELETE, client.py
    IDEMPOTENT_METHODS), nothing maps to a "not sent" class, and the submit is ambiguous."""

    async def drop_second(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(job_answer())
        await writer.drain()
        await server.read_request(reader)  # the second submit arrives, then the connection dies without an answer
        if how == "RST":
            reset(writer)

    async with serving(drop_second) as (server, base), OpenRouterClient(base, KEY) as client:
        await client.submit({"model": "m"})
        with pytest.raises(AmbiguousSubmit):
            await client.submit({"model": "m"})
    assert len(server.heads) == 2 and server.connections == 1  # sent once, not resent on a new connection


@pytest.mark.asyncio
async def test_connect_that_never_completes_is_connect_timeout_not_sent() -> None:
    """A listener whose accept queue is full drops the SYN: past connect_timeout (sock_connect) the
    submit is ConnectTimeout, certainly not sent, so retryable."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            async with OpenRouterClient(f"http://127.0.0.1:{port}/api/v1", KEY, connect_timeout=0.2) as client:
                with pytest.raises(RetryableError, match="ConnectTimeout"):
                    await client.submit({"model": "m"})
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.asyncio
async def test_get_on_a_connection_closed_under_it_is_retried_once_by_aiohttp() -> None:
    """(Documents aiohttp's own retry.) The same for a poll: aiohttp resends a GET once on a new
    connection (RFC 9112 9.3.1.1), so the poll succeeds; harmless, a GET costs nothing."""

    async def drop_second(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if n == 1:
            writer.write(job_answer())
            await writer.drain()
            await server.read_request(reader)
            return
        writer.write(job_answer())
        await writer.drain()

    async with serving(drop_second) as (server, base), OpenRouterClient(base, KEY) as client:
        await client.poll(JOB["id"])
        job = await client.poll(JOB["id"])
    assert job.id == JOB["id"] and server.connections == 2 and len(server.heads) == 3


@pytest.mark.asyncio
async def test_idle_connection_closed_by_the_server_is_not_reused() -> None:
    """The server closes a kept-alive connection while it is idle: the next submit goes on a new
    connection and succeeds (aiohttp checks ``is_connected`` before reuse), and is sent exactly once."""

    async def close_when_idle(
        server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.read_request(reader)
        writer.write(job_answer())
        await writer.drain()
        if n == 1:
            return  # closed: FIN while the client holds it idle in its pool

    async with serving(close_when_idle) as (server, base), OpenRouterClient(base, KEY) as client:
        await client.submit({"model": "m"})
        await until(
            lambda: not any(p.is_connected() for p in pooled_protocols(client)), 1.5, "the pooled connection to close"
        )  # type: ignore[attr-defined]
        job = await client.submit({"model": "m"})
    assert job.id == JOB["id"] and len(server.heads) == 2 and server.connections == 2


def stale_connection(unsolicited: bytes, *, then: bytes | None = None) -> Handler:
    """Answer, then (once ``server.go`` is set) send ``unsolicited`` on the idle first connection, which
    stays open; ``then`` answers a request that still arrives there (a POST already on the wire)."""

    async def handle(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(job_answer())
        await writer.drain()
        if n == 1:
            await server.go.wait()
            writer.write(unsolicited)
            await writer.drain()
            if then is not None:
                await server.read_request(reader)
                writer.write(then)
                await writer.drain()
        await keep_answering(server, n, reader, writer)

    return handle


@pytest.mark.asyncio
async def test_unsolicited_answer_on_an_idle_connection_is_not_taken_for_the_next_poll() -> None:
    """FIXED defect (correctness; money-adjacent). Bytes a server sends on an idle pooled connection are parsed
    and queued by aiohttp, and the next request on that connection takes the queued answer as its own:
    here a stale ``failed`` job is returned for a poll whose real answer is ``pending``.

    aiohttp's pool only checks ``is_connected()`` (connector.py ``_get``); httpcore, the transport this
    replaces, drops an idle connection that became readable. For a submit the same desync gives a
    stale 408/429/503 -> RetryableError -> a resend (see the next test).
    Now: the transport's connector closes a pooled connection whose protocol ``should_close`` (true once
    anything was queued) instead of reusing it."""

    async with serving(stale_connection(job_answer(FAILED))) as (server, base), OpenRouterClient(base, KEY) as client:
        await client.poll(JOB["id"])
        server.go.set()
        await until(lambda: any(p._buffer for p in pooled_protocols(client)), 1.5, "the unsolicited bytes")  # type: ignore[attr-defined]
        job = await client.poll(JOB["id"])
    assert job.status == "pending", f"the poll got the unsolicited answer: {job.status}"


@pytest.mark.asyncio
async def test_unsolicited_503_on_an_idle_connection_does_not_make_a_submit_retryable() -> None:
    """FIXED defect (money on Python >= 3.12, which pyproject allows). A 503 sent on an idle pooled connection
    becomes the answer of the next submit: RetryableError, so the step resends. On 3.11 aiohttp's body
    writer task has not run yet when the stale answer is read, and the POST never leaves; on 3.12+ the
    writer starts eagerly (client_reqrep.py ``send``, ``eager_start=True``): the POST is on the wire, the
    server takes it (checked with CPython 3.12.1: the server received both POSTs and answered the second
    with a job id), and the daemon resubmits a job it was charged for. Now: fixed as above."""

    async with (
        serving(stale_connection(answer(503, b'{"error":"stale"}'), then=job_answer(JOB2))) as (server, base),
        OpenRouterClient(base, KEY) as client,
    ):
        await client.submit({"model": "m"})
        server.go.set()
        await until(lambda: any(p._buffer for p in pooled_protocols(client)), 1.5, "the unsolicited bytes")  # type: ignore[attr-defined]
        try:
            job = await client.submit({"model": "m"})
        except RetryableError as exc:
            pytest.fail(f"a stale answer read as this submit's: {exc}")
    assert job.id in (JOB["id"], JOB2["id"])


@pytest.mark.asyncio
async def test_stalled_upload_ends_in_a_write_timeout() -> None:
    """FIXED defect (correctness). aiohttp has no write timeout, and its sock_read timer is armed only after the
    whole body was written (client_reqrep.py ``write_bytes`` -> ``protocol.start_timeout()``). A server
    that stops reading a large submit body (inputs may carry data URLs up to max_message_bytes) leaves the
    submit waiting for ever: no error, the job stuck in ``submitting``, a pool slot held. httpx's own
    transport raises WriteTimeout after ``write`` (= read_timeout) -> AmbiguousSubmit.
    (24 MiB here only because loopback socket buffers swallow several MiB; on a real link a zero receive
    window stalls a ~1 MiB body the same way.)
    Now: a body over 64 KiB goes in pieces, and httpx.WriteTimeout (ambiguous for a submit) ends the
    request when no piece was taken for ``timeout["write"]`` seconds."""

    async def stop_reading(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.heads.append(await reader.readuntil(b"\r\n\r\n"))
        await linger()

    async with (
        serving(stop_reading, rcvbuf=4096) as (server, base),  # the server reads the head and nothing more
        OpenRouterClient(base, KEY, read_timeout=0.3) as client,
    ):
        try:
            async with asyncio.timeout(1.5):
                with pytest.raises(AmbiguousSubmit):
                    await client.submit({"model": "m", "prompt": "x" * (24 << 20)})
        except TimeoutError:
            pytest.fail("the submit was still writing its body 1.5 s in, read_timeout=0.3 s: no bound at all")
    assert len(server.heads) == 1


# --- 2. cancellation, and 3. bodies left unread ----------------------------------------------------


@pytest.mark.asyncio
async def test_cancel_while_waiting_for_the_answer_closes_the_connection() -> None:
    """A submit cancelled while waiting for its answer: the connection is closed (aiohttp's
    ``conn.close()`` on BaseException), never pooled; the next call gets its own, correct answer."""

    async def slow_first(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if n == 1:
            await server.read_request(reader)
            await server.go.wait()
            writer.write(job_answer(FAILED))  # a late answer: must never reach a later request
            await writer.drain()
        await keep_answering(server, n, reader, writer)

    async with serving(slow_first) as (server, base), OpenRouterClient(base, KEY) as client:
        task = asyncio.create_task(client.submit({"model": "m"}))
        await until(lambda: len(server.heads) == 1, 1.5, "the request")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.go.set()
        job = await client.poll(JOB["id"])
    assert job.status == "pending" and server.connections == 2


@pytest.mark.asyncio
async def test_download_deadline_mid_body_closes_the_connection(tmp_path: Path) -> None:
    """``download_deadline`` (asyncio.timeout) fires mid-body: retryable DownloadError, no file, and
    the half-read connection is closed (payload not at EOF -> ``should_close``); the next poll is right."""

    async def cut(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if n == 1:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {len(MP4) * 2}\r\n\r\n"
            writer.write(head.encode() + MP4)
            await writer.drain()
            await server.go.wait()
            writer.write(MP4 + job_answer(FAILED))  # the rest, then bytes that look like a next answer
            await writer.drain()
        else:
            writer.write(job_answer())
            await writer.drain()
        await keep_answering(server, n, reader, writer)

    limits = ProviderLimits(download_deadline=0.3)
    dest = tmp_path / "v.part"
    async with serving(cut) as (server, base), OpenRouterClient(base, KEY, read_timeout=5, limits=limits) as client:
        with pytest.raises(DownloadError) as info:
            await client.download(JOB["id"], 0, dest, max_bytes=10**6)
        server.go.set()
        job = await client.poll(JOB["id"])
    assert info.value.retryable and not dest.exists()
    assert job.status == "pending" and server.connections == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("framing", ["length", "chunked", "gzip-labelled"])
@pytest.mark.parametrize("size_kib", [100, 200, 1024])
async def test_large_error_body_read_in_part_leaves_no_bytes_for_the_next_request(framing: str, size_kib: int) -> None:
    """A 404 whose body is 100 KiB to 1 MiB: the client reads at most 64 KiB (none when it is labelled
    gzip) and ``_Body.aclose`` -> ``release()``. aiohttp pools the connection only when the answer was read
    off the wire to its end (what is left sits in the discarded StreamReader), and closes it otherwise
    (payload not at EOF -> ``should_close``); either way the next request gets its own answer, never the
    rest of the old body."""
    big = b'{"error":{"message":"' + b"x" * (size_kib * 1024) + b'"}}'

    async def big_error(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if n == 1:
            if framing == "chunked":
                head = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                pieces = [big[i : i + 8192] for i in range(0, len(big), 8192)]
                writer.write(head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n")
            else:
                writer.write(answer(404, big, *(["Content-Encoding: gzip"] if framing == "gzip-labelled" else [])))
            await writer.drain()
        else:
            writer.write(job_answer())
            await writer.drain()
        await keep_answering(server, n, reader, writer)

    async with serving(big_error) as (server, base), OpenRouterClient(base, KEY) as client:
        with pytest.raises(PermanentError, match="HTTP 404"):
            await client.poll(JOB["id"])
        for _ in range(2):
            job = await client.poll(JOB["id"])
            assert job.id == JOB["id"] and job.status == "pending"
    assert len(server.heads) == 3


@pytest.mark.asyncio
async def test_small_error_body_read_in_full_keeps_the_connection() -> None:
    """An error body read to its end leaves a clean connection, which is reused."""

    async def small_error(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(404, b'{"error":{"message":"no such job"}}'))
        await writer.drain()
        await keep_answering(server, n, reader, writer)

    async with serving(small_error) as (server, base), OpenRouterClient(base, KEY) as client:
        with pytest.raises(PermanentError):
            await client.poll(JOB["id"])
        job = await client.poll(JOB["id"])
    assert job.id == JOB["id"] and server.connections == 1


# --- 4. timeouts -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_read_timeout_is_per_read_like_httpx() -> None:
    """sock_read restarts on each piece received, as httpx's read timeout applies to each read: a body
    trickled at 0.1 s gaps under read_timeout=0.4 s arrives whole although it takes longer than 0.4 s."""
    body = json.dumps(JOB).encode()

    async def trickle(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for i in range(0, len(body), len(body) // 6 + 1):
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(body[i : i + len(body) // 6 + 1])
        await writer.drain()
        await linger()

    async with serving(trickle) as (_, base), OpenRouterClient(base, KEY, read_timeout=0.4) as client:
        started = time.monotonic()
        job = await client.poll(JOB["id"])
    assert job.id == JOB["id"] and time.monotonic() - started > 0.4


@pytest.mark.asyncio
@pytest.mark.parametrize("where", ["before headers", "mid-body"])
async def test_read_timeout_is_ambiguous_for_a_submit_retryable_for_a_poll(where: str) -> None:
    """A stall past read_timeout, before the headers or mid-body, is a read timeout: a submit is
    ambiguous (sent once), a poll retryable."""
    body = json.dumps(JOB).encode()

    async def stall(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if where == "mid-body":
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:5])
            await writer.drain()
        await linger()

    async with serving(stall) as (server, base), OpenRouterClient(base, KEY, read_timeout=0.2) as client:
        with pytest.raises(AmbiguousSubmit, match="ReadTimeout"):
            await client.submit({"model": "m"})
        with pytest.raises(RetryableError, match="ReadTimeout"):
            await client.poll(JOB["id"])
    assert len(server.heads) == 2


# --- 5. hostile answers ------------------------------------------------------------------------------

HOSTILE = {
    "header line over 8 KiB": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\nContent-Length: 2\r\n\r\n{}",
    "200 headers": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
    "invalid status line": b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}",
    "not HTTP": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n",
    "headers cut": b"HTTP/1.1 200 OK\r\nContent-Le",
    "body shorter than Content-Length": b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id":',
    "two Content-Lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
    "Content-Length not a number": b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\n{}",
    "chunked and Content-Length": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "chunk cut": b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"id"',
    "no final chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
    "NUL in a header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    "space before colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n{}",
    "1xx then close": b"HTTP/1.1 100 Continue\r\n\r\n",
}


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_answer_is_ambiguous_for_a_submit_retryable_for_a_poll(name: str) -> None:
    """Broken answers after the request went out: a submit is ambiguous, a poll retryable, and no
    exception other than the client's own escapes."""

    async def hostile(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(HOSTILE[name])
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        await linger()

    async with serving(hostile) as (server, base), OpenRouterClient(base, KEY, read_timeout=1) as client:
        with pytest.raises(AmbiguousSubmit) as submitted:
            await client.submit({"model": "m"})
        with pytest.raises(RetryableError) as polled:
            await client.poll(JOB["id"])
    assert len([h for h in server.heads if h.startswith(b"POST")]) == 1
    assert KEY not in str(submitted.value) and KEY not in str(polled.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("reason", ["Créé €", "OK \udcff"])
async def test_reason_phrase_outside_latin1_is_kept(reason: str) -> None:
    """FIXED defect (correctness). aiohttp decodes the reason phrase as UTF-8 (surrogateescape); the transport
    re-encodes it as latin-1 outside its try, so a reason like ``Créé €`` (or any non-UTF-8 byte) raises
    UnicodeEncodeError out of ``handle_async_request``: not an httpx error, so the client does not map it.
    A 201 that carries the job id becomes "submit outcome unknown" (an alert, a job parked though the
    provider answered), a poll crashes the step, and the aiohttp answer is never released (its pool slot
    waits for the garbage collector). Now: the reason goes back to the exact bytes received, and a failure
    building the httpx.Response closes the answer."""
    body = json.dumps(JOB).encode()
    raw = f"HTTP/1.1 201 {reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode("utf-8", "surrogateescape") + body

    async def odd_reason(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(raw)
            await writer.drain()

    async with serving(odd_reason) as (_, base), OpenRouterClient(base, KEY) as client:
        try:
            job = await client.submit({"model": "m"})
        except UnicodeError as exc:
            pytest.fail(f"a non-httpx exception escaped the client: {exc!r}")
    assert job.id == JOB["id"]


# --- 6. what goes on the wire, and what goes in messages ----------------------------------------------


@pytest.mark.asyncio
async def test_request_headers_on_the_wire() -> None:
    """One Host, one Content-Length equal to the body, one Content-Type, the key once as a bearer,
    identity encoding, and nothing aiohttp adds by itself (no aiohttp User-Agent, no chunking)."""
    async with serving(keep_answering) as (server, base), OpenRouterClient(base, KEY) as client:
        await client.submit({"model": "m", "prompt": "p"})
        await client.poll(JOB["id"])
    post, get = ([line.lower() for line in h.decode().split("\r\n")[1:] if line] for h in server.heads)
    names = [line.partition(":")[0] for line in post]
    assert names.count("host") == 1 and names.count("content-length") == 1 and names.count("content-type") == 1
    assert f"content-length: {len(server.bodies[0])}" in post and "content-type: application/json" in post
    assert names.count("authorization") == 1 and f"authorization: bearer {KEY.lower()}" in post
    assert "accept-encoding: identity" in post and "transfer-encoding" not in names
    assert not any("aiohttp" in line for line in post + get)
    assert "content-length" not in [line.partition(":")[0] for line in get]


@pytest.mark.asyncio
async def test_https_proxy_connect_carries_no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through HTTPS_PROXY the CONNECT carries Proxy-Authorization and never the API key; a proxy
    refusing the tunnel is a ProxyError: the submit never left, so it is retryable, and the proxy password
    is in no message."""

    async def refuse(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with serving(refuse) as (proxy, proxy_base):
        monkeypatch.setenv("HTTPS_PROXY", proxy_base.removesuffix("/api/v1").replace("http://", "http://u:pw-hush@"))
        for name in ("NO_PROXY", "no_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        async with OpenRouterClient("https://provider.invalid/api/v1", KEY) as client:
            with pytest.raises(RetryableError) as info:
                await client.submit({"model": "m"})
    head = proxy.heads[0].decode()
    assert head.startswith("CONNECT provider.invalid:443 ") and "proxy-authorization: basic" in head.lower()
    assert KEY not in head and "authorization: bearer" not in head.lower()
    assert "pw-hush" not in str(info.value) and "ProxyError" in str(info.value)


@pytest.mark.asyncio
async def test_unreachable_proxy_message_has_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY with credentials, nobody listening: ProxyError (never sent, retryable), and the
    message names the proxy without its user or password."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://u:pw-hush@127.0.0.1:{port}")
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with OpenRouterClient("http://provider.invalid/api/v1", KEY) as client:
        with pytest.raises(RetryableError) as info:
            await client.submit({"model": "m"})
    assert "pw-hush" not in str(info.value) and "u:" not in str(info.value) and "ProxyError" in str(info.value)


@pytest.mark.asyncio
async def test_proxy_variable_without_scheme_means_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """FIXED defect (minor; a common configuration). ``HTTP_PROXY=host:port`` (no scheme) is read by httpx as
    ``http://host:port`` (httpx/_utils.py ``get_environment_proxies``); here ``URL("host:port")`` is a
    relative URL and ``with_user`` raises ValueError in ``_proxy``, outside the transport's try: every
    request fails with a non-httpx exception (a submit that never left is reported "outcome unknown").
    Now: ``http://`` is assumed when no scheme is given, as httpx does, a value that is no proxy URL stops
    the start with a ConfigError, and ALL_PROXY is honoured (videoworker.provider.proxies)."""
    async with serving(keep_answering) as (proxy, proxy_base):
        monkeypatch.setenv("HTTP_PROXY", proxy_base.removeprefix("http://").removesuffix("/api/v1"))
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        async with OpenRouterClient("http://provider.invalid/api/v1", KEY) as client:
            try:
                await client.poll(JOB["id"])
            except ProviderError:
                pass
            except ValueError as exc:
                pytest.fail(f"a non-httpx exception escaped the client: {exc!r}")
    assert proxy.heads, "the proxy was not used"


@pytest.mark.asyncio
@pytest.mark.parametrize("status_line", ["HTTP/1.1 099 Odd", "HTTP/1.1 000 Odd", "HTTP/1.1 101 Switching Protocols"])
async def test_status_that_is_no_final_answer_is_a_protocol_error(status_line: str) -> None:
    """FIXED defect (minor, money-adjacent). aiohttp hands over a status under 100, or a 101 nobody asked for, as a
    final answer; the client's status rule then calls the submit refused (PermanentError: budget released,
    job failed as "not charged"). httpx's own transport (h11) rejects a status under 100 as a protocol
    error and never takes an unrequested 101 as final, so the submit was ambiguous there.
    Now: a status under 200 closes the answer and raises httpx.RemoteProtocolError (no 1xx can be final
    here: no Upgrade is ever sent)."""

    async def odd(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(f"{status_line}\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        await writer.drain()
        await linger()

    async with serving(odd) as (_, base), OpenRouterClient(base, KEY, read_timeout=0.3) as client:
        with pytest.raises(ProviderError) as info:
            await client.submit({"model": "m"})
    assert isinstance(info.value, AmbiguousSubmit), f"read as {type(info.value).__name__}: {info.value}"
