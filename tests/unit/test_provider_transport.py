"""The aiohttp transport under httpx: which failures mean "never sent", over real local sockets.

A submit costs money and has no idempotency key, so the one thing this transport must
get right is telling "the request never left" (safe to send again) from "it may have
arrived" (report, never resend). Each case below runs against a raw asyncio server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from pathlib import Path

import aiohttp
import httpx
import pytest
import trustme
from yarl import URL

from tests.unit.raw_http import JOB, Server, answer, hang, keep_answering, serving
from videoworker.errors import AmbiguousSubmit, ConfigError, PermanentError, RetryableError
from videoworker.provider.answers import transport_error_class
from videoworker.provider.client import OpenRouterClient
from videoworker.provider.proxies import EnvironmentProxies
from videoworker.provider.transport import PIECE, AiohttpTransport, mapped
from videoworker.testing.recorder import until

KEY = "sk-secret-transport"
# --- the mapping, class by class -------------------------------------------------------------

KEY_OBJ = aiohttp.client_reqrep.ConnectionKey("h", 443, True, True, None, None, None)
INFO = aiohttp.RequestInfo(URL("http://h/"), "POST", {}, URL("http://h/"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected", "submit_is"),
    [
        (aiohttp.ClientConnectorError(KEY_OBJ, OSError(111, "refused")), httpx.ConnectError, RetryableError),
        (aiohttp.ClientConnectorDNSError(KEY_OBJ, OSError(-2, "no name")), httpx.ConnectError, RetryableError),
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout, RetryableError),
        (aiohttp.ClientProxyConnectionError(KEY_OBJ, OSError(111, "x")), httpx.ProxyError, RetryableError),
        (aiohttp.ClientHttpProxyError(INFO, (), status=403), httpx.ProxyError, RetryableError),
        (aiohttp.NonHttpUrlClientError("ftp://x"), httpx.UnsupportedProtocol, PermanentError),
        # after the request went out: never "not sent"
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout, AmbiguousSubmit),
        (aiohttp.ServerTimeoutError("read"), httpx.ReadTimeout, AmbiguousSubmit),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError, AmbiguousSubmit),
        (aiohttp.ClientPayloadError("cut"), httpx.RemoteProtocolError, AmbiguousSubmit),
        (
            aiohttp.ClientResponseError(INFO, (), status=400, message="bad status line"),
            httpx.RemoteProtocolError,
            AmbiguousSubmit,
        ),
        (aiohttp.ClientOSError(104, "reset by peer"), httpx.ReadError, AmbiguousSubmit),
        (aiohttp.ClientConnectionResetError("reset"), httpx.ReadError, AmbiguousSubmit),
        (RuntimeError("something new"), httpx.ReadError, AmbiguousSubmit),
    ],
)
def test_mapping(error: Exception, expected: type[httpx.TransportError], submit_is: type[Exception]) -> None:
    """Only failures before a connection was had are "not sent"; anything else, known or not, is ambiguous."""
    got = mapped(error)
    assert type(got) is expected
    assert transport_error_class("submit", got) is submit_is
    assert transport_error_class("poll", got) in (RetryableError, PermanentError)


# --- over real sockets -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_keep_alive_reuses_one_connection() -> None:
    """Sequential calls share one kept-alive connection; the key goes in the header, to the right path."""
    async with serving(keep_answering) as (server, base), OpenRouterClient(base, KEY) as client:
        for _ in range(3):
            job = await client.submit({"model": "m", "prompt": "p"})
        assert job.id == JOB["id"]
    assert server.connections == 1 and len(server.heads) == 3
    first = server.heads[0].decode().lower()
    assert first.startswith("post /api/v1/videos http/1.1") and f"authorization: bearer {KEY}".lower() in first
    assert "accept-encoding: identity" in first


@pytest.mark.asyncio
async def test_submit_without_answer_times_out_ambiguous() -> None:
    """The submit was read and never answered: past read_timeout it is ambiguous, and was sent once."""
    async with serving(hang) as (server, base), OpenRouterClient(base, KEY, read_timeout=0.3) as client:
        with pytest.raises(AmbiguousSubmit) as info:
            await client.submit({"model": "m"})
    assert len(server.heads) == 1 and KEY not in str(info.value)


@pytest.mark.asyncio
async def test_waiting_for_a_pooled_connection_times_out_not_sent() -> None:
    """All connections busy past the connect and pool timeouts: the second submit never left, so it is retryable."""
    async with serving(hang) as (server, base):
        client = OpenRouterClient(base, KEY, max_connections=1, connect_timeout=0.2, read_timeout=5)
        async with client:
            first = asyncio.create_task(client.submit({"model": "m", "prompt": "first"}))
            await until(lambda: server.heads, 5, "the first submit to reach the server")
            with pytest.raises(RetryableError) as info:
                await client.submit({"model": "m", "prompt": "second"})
            first.cancel()
    assert info.value.endpoint == "submit"
    assert len(server.heads) == 1 and server.connections == 1


@pytest.mark.asyncio
async def test_garbled_answer_is_ambiguous_for_a_submit_retryable_for_a_poll() -> None:
    """Not HTTP at all after the request went out: a submit may have been taken, a poll can be asked again."""

    async def garble(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async with serving(garble) as (_, base), OpenRouterClient(base, KEY) as client:
        with pytest.raises(AmbiguousSubmit):
            await client.submit({"model": "m"})
        with pytest.raises(RetryableError):
            await client.poll(JOB["id"])


@pytest.mark.asyncio
async def test_compressed_answer_is_refused_not_decoded() -> None:
    """A gzip body reaches the client as sent (aiohttp does not decode it), and a poll refuses it."""

    async def gzipped(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(200, b"\x1f\x8b\x08\x00not-really", "Content-Encoding: gzip"))
        await writer.drain()

    async with serving(gzipped) as (_, base), OpenRouterClient(base, KEY) as client:
        with pytest.raises(PermanentError, match="Content-Encoding"):
            await client.poll(JOB["id"])


@pytest.mark.asyncio
async def test_a_cookie_the_provider_sets_is_not_sent_back() -> None:
    """The provider's answers are untrusted: a Set-Cookie in one is not carried on the next request."""

    async def sets_cookie(server: Server, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(answer(200, json.dumps(JOB).encode(), "Set-Cookie: session=steer-me; Path=/"))
            await writer.drain()

    async with serving(sets_cookie) as (server, base), OpenRouterClient(base, KEY) as client:
        await client.poll(JOB["id"])
        await client.poll(JOB["id"])
    assert len(server.heads) == 2 and all(b"cookie" not in head.lower() for head in server.heads)


@pytest.mark.asyncio
async def test_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY is honoured as httpx's own transport did: the request goes to the proxy in absolute form."""
    async with serving(keep_answering) as (proxy, proxy_base):
        monkeypatch.setenv("HTTP_PROXY", proxy_base.removesuffix("/api/v1"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with OpenRouterClient("http://provider.invalid/api/v1", KEY) as client:
            await client.poll(JOB["id"])
    assert proxy.heads[0].startswith(f"GET http://provider.invalid/api/v1/videos/{JOB['id']} ".encode())


@pytest.mark.asyncio
async def test_proxy_credentials_go_in_a_header_and_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """user:password in HTTP_PROXY becomes Proxy-Authorization; a host in NO_PROXY is reached directly."""
    async with serving(keep_answering) as (proxy, proxy_base), serving(keep_answering) as (direct, direct_base):
        monkeypatch.setenv("HTTP_PROXY", proxy_base.removesuffix("/api/v1").replace("http://", "http://u:pw-secret@"))
        async with OpenRouterClient("http://provider.invalid/api/v1", KEY) as client:
            await client.poll(JOB["id"])
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with OpenRouterClient(direct_base, KEY) as client:
            await client.poll(JOB["id"])
    assert b"proxy-authorization: basic dtpwdy1zzwnyzxq=" in proxy.heads[0].lower()  # base64 of u:pw-secret
    assert len(proxy.heads) == 1 and len(direct.heads) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("proxy_scheme", ["http", "https"])
async def test_https_through_a_proxy_is_a_tunnel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, proxy_scheme: str
) -> None:
    """HTTPS_PROXY: a CONNECT carrying the proxy's credentials, then TLS end to end (CA from SSL_CERT_FILE).

    The proxy sees the tunnel's target and its own credentials, never the API key. An
    ``https://`` proxy is reached over TLS itself, and the provider's TLS runs inside it.
    """
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    tunnels: list[bytes] = []

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        tunnels.append(head)
        host, _, port = head.split()[1].decode().partition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async with (
        serving(keep_answering, tls=tls) as (provider, base),
        await asyncio.start_server(connect, "127.0.0.1", 0, ssl=tls if proxy_scheme == "https" else None) as proxy,
    ):
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        port = proxy.sockets[0].getsockname()[1]
        monkeypatch.setenv("HTTPS_PROXY", f"{proxy_scheme}://u:pw-secret@127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with OpenRouterClient(base, KEY) as client:
            job = await client.poll(JOB["id"])
    assert job.id == JOB["id"] and len(tunnels) == 1
    assert tunnels[0].startswith(b"CONNECT 127.0.0.1:")
    assert b"proxy-authorization: basic dtpwdy1zzwnyzxq=" in tunnels[0].lower()
    assert KEY.encode() not in tunnels[0] and f"bearer {KEY}".lower().encode() in provider.heads[0].lower()


@pytest.mark.asyncio
async def test_close_before_use_and_twice() -> None:
    """A transport never used closes cleanly; closing again is harmless (shutdown may race a failed start)."""
    transport = AiohttpTransport(4)
    await transport.aclose()
    await transport.aclose()


# --- proxies from the environment ------------------------------------------------------------


def test_proxies_read_like_httpx() -> None:
    """host:port means http://host:port, ALL_PROXY covers a scheme without its own, NO_PROXY wins."""
    proxies = EnvironmentProxies({"https": "proxy.example:3128", "all": "http://all.example:8080", "no": ".internal"})
    assert proxies.for_url("https", "openrouter.ai") == (URL("http://proxy.example:3128"), None)
    assert proxies.for_url("http", "openrouter.ai") == (URL("http://all.example:8080"), None)
    assert proxies.for_url("https", "api.internal") == (None, None)
    assert EnvironmentProxies({}).for_url("https", "openrouter.ai") == (None, None)


def test_proxy_credentials_are_kept_apart() -> None:
    """The URL handed to aiohttp has no userinfo; the credentials travel only in Proxy-Authorization."""
    proxy, headers = EnvironmentProxies({"https": "http://u:pw-secret@proxy.example:3128"}).for_url("https", "h")
    assert proxy == URL("http://proxy.example:3128") and "pw-secret" not in str(proxy)
    assert headers == {"Proxy-Authorization": "Basic dTpwdy1zZWNyZXQ="}


@pytest.mark.parametrize("value", ["ftp://u:pw-secret@proxy.example", "http://u:pw-secret@:3128", "http://[::1"])
def test_a_proxy_that_is_no_url_stops_the_start_without_echoing_it(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        EnvironmentProxies({"https": value})
    assert "HTTPS_PROXY" in str(info.value) and "pw-secret" not in str(info.value)


@pytest.mark.asyncio
async def test_a_long_body_goes_in_pieces_and_arrives_whole() -> None:
    """A submit over PIECE (a data URL, say) arrives byte for byte, with its Content-Length and no chunking."""
    prompt = "x" * (5 * PIECE + 123)
    async with serving(keep_answering) as (server, base), OpenRouterClient(base, KEY) as client:
        await client.submit({"model": "m", "prompt": prompt})
    assert json.loads(server.bodies[0]) == {"model": "m", "prompt": prompt}
    assert b"transfer-encoding" not in server.heads[0].lower()
