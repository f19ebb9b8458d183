"""Unit tests for videoworker.provider (client, answers, models), against httpx.MockTransport (no network)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from videoworker.errors import AmbiguousSubmit, DownloadError, PermanentError, ProviderError, RetryableError
from videoworker.provider import download
from videoworker.provider.client import OpenRouterClient, parse_retry_after
from videoworker.provider.models import Download, Job, VideoModel
from videoworker.provider.transport import AiohttpTransport

BASE = "https://openrouter.test/api/v1"
KEY = "sk-secret-XYZ"
JOB_ID = "gen-vid-1719792000-abcdefghij0123456789"
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40

Handler = Callable[[httpx.Request], Any]


class FullDisk:
    """A file whose writes after the first fail as a full disk would; records whether it was closed."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.writes = 0

    @property
    def closed(self) -> bool:
        return self.inner.closed

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.writes > 1 or len(data) < download._WRITE_BATCH:
            raise OSError(28, "No space left on device")
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()

    def fileno(self) -> int:
        return self.inner.fileno()

    def close(self) -> None:
        self.inner.close()


def make_client(handler: Handler, **kwargs: Any) -> OpenRouterClient:
    return OpenRouterClient(BASE, KEY, transport=httpx.MockTransport(handler), **kwargs)


def error_body(message: str, code: int) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "metadata": {"provider_name": "google-vertex"}}}


def raiser(exc_type: type[httpx.RequestError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return handler


def status(code: int, **kwargs: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, json=error_body(f"status {code}", code), **kwargs)

    return handler


async def call(client: OpenRouterClient, endpoint: str, tmp_path: Path) -> object:
    """Run the client method that serves ``endpoint``."""
    async with client:
        if endpoint == "submit":
            return await client.submit({"model": "m", "prompt": "p"})
        if endpoint == "poll":
            return await client.poll(JOB_ID)
        if endpoint == "content":
            return await client.download(JOB_ID, 0, tmp_path / "out.part", max_bytes=10_000_000)
        if endpoint == "video_models":
            return await client.video_models()
        return await client.models()


class ChunkStream(httpx.AsyncByteStream):
    """A response body sent in pieces, optionally cut by a transport error after them."""

    def __init__(self, chunks: list[bytes], error: type[httpx.RequestError] | None = None) -> None:
        self._chunks = chunks
        self._error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._error is not None:
            raise self._error("connection reset mid-body")


# --- requests sent ---------------------------------------------------------------------------


class TestRequests:
    @pytest.mark.asyncio
    async def test_submit_sends_body_path_and_headers(self) -> None:
        """submit POSTs the JSON body to {base}/videos with key, JSON type and attribution headers."""
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(
                202, json={"id": JOB_ID, "polling_url": f"{BASE}/videos/{JOB_ID}", "status": "pending"}
            )

        body = {"model": "google/veo-3.1", "prompt": "a dog", "duration": 8, "provider": {"options": {}}}
        async with make_client(handler, app_url="https://example.org/app") as client:
            job = await client.submit(body)
        (request,) = seen
        assert request.method == "POST"
        assert str(request.url) == f"{BASE}/videos"
        assert json.loads(request.content) == body
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-OpenRouter-Title"] == "videoworker"
        assert request.headers["X-Title"] == "videoworker"
        assert request.headers["HTTP-Referer"] == "https://example.org/app"
        assert job.id == JOB_ID and job.status == "pending" and not job.is_terminal

    @pytest.mark.asyncio
    async def test_no_attribution_or_key_when_unset(self) -> None:
        """Without a key, title or url, none of those headers is sent."""
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json={"id": JOB_ID, "status": "in_progress"})

        transport = httpx.MockTransport(handler)
        async with OpenRouterClient(BASE, None, transport=transport, app_title=None) as client:
            await client.poll(JOB_ID)
        headers = seen[0].headers
        assert not {"authorization", "x-title", "x-openrouter-title", "http-referer"} & set(headers.keys())

    @pytest.mark.asyncio
    async def test_poll_path(self) -> None:
        """poll GETs {base}/videos/{id} and parses the job."""
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(
                200,
                json={
                    "id": JOB_ID,
                    "status": "completed",
                    "generation_id": "gen-1",
                    "unsigned_urls": [f"{BASE}/videos/{JOB_ID}/content?index=0"],
                    "urls": None,
                    "expires_at": 1719800000,
                    "usage": {"cost": 0.25, "is_byok": False},
                    "brand_new_field": 1,
                },
            )

        async with make_client(handler) as client:
            job = await client.poll(JOB_ID)
        assert seen[0].method == "GET" and str(seen[0].url) == f"{BASE}/videos/{JOB_ID}"
        assert job.is_terminal and job.usage is not None and job.usage.cost == 0.25
        assert job.urls == [] and job.unsigned_urls and job.expires_at == 1719800000
        assert job.model_extra == {"brand_new_field": 1}

    @pytest.mark.asyncio
    async def test_models_query(self) -> None:
        """models() filters on output_modalities=video by default and sends no filter for None."""
        seen: list[httpx.URL] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.url)
            return httpx.Response(200, json={"data": [{"id": "a"}, "junk"]})

        async with make_client(handler) as client:
            assert await client.models() == [{"id": "a"}]
            await client.models(None)
        assert seen[0].path == "/api/v1/models" and seen[0].params["output_modalities"] == "video"
        assert "output_modalities" not in seen[1].params

    @pytest.mark.asyncio
    async def test_video_models_parse(self) -> None:
        """video_models() keeps null lists as None, keeps unknown fields, and skips unreadable entries."""
        data = [
            {
                "id": "google/veo-3.1",
                "canonical_slug": "google/veo-3.1",
                "supported_resolutions": ["720p", "1080p", "8K"],
                "supported_durations": [4, 8],
                "supported_aspect_ratios": None,
                "pricing_skus": {"per-video-second": "0.50", "per-video-second-1080p": 0.75},
                "upscale_factor": {"min": 1, "max": 4},
                "future_flag": True,
            },
            {"id": ""},
            {"name": "no id"},
        ]

        def handler(request: httpx.Request) -> httpx.Response:
            assert request.url.path == "/api/v1/videos/models"
            return httpx.Response(200, json={"data": data})

        async with make_client(handler) as client:
            (model,) = await client.video_models()
        assert isinstance(model, VideoModel)
        assert model.supported_aspect_ratios is None and model.supported_sizes is None
        assert model.supported_resolutions == ["720p", "1080p", "8K"]
        assert model.pricing_skus == {"per-video-second": "0.50", "per-video-second-1080p": "0.75"}
        assert model.upscale_factor is not None and model.upscale_factor.max == 4
        assert model.model_extra == {"future_flag": True}

    def test_client_settings(self) -> None:
        """Explicit timeouts, aiohttp's pool of max_connections, and a repr without the key."""
        client = OpenRouterClient(BASE, KEY, connect_timeout=3, read_timeout=20, max_connections=92)
        assert client._http.timeout == httpx.Timeout(connect=3, read=20, write=20, pool=3)
        transport = client._http.transport
        assert isinstance(transport, AiohttpTransport) and transport._max_connections == 92
        assert KEY not in repr(client) and KEY not in repr(client._http)

    @pytest.mark.asyncio
    async def test_a_closed_client_refuses_to_send(self) -> None:
        """After ``aclose`` (the stop) a request raises at once, as httpx's client does; nothing is sent."""
        sent: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return httpx.Response(200, json={"id": JOB_ID, "status": "pending"})

        client = make_client(handler)
        await client.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await client.poll(JOB_ID)
        assert sent == []


# --- where the key goes ----------------------------------------------------------------------


class TestKeyScope:
    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "base",
        [BASE, "https://openrouter.test/api/v1/", "https://user:pw@openrouter.test/api/v1?x=1#frag"],
    )
    async def test_every_call_goes_to_the_base_url_with_the_key(self, base: str, tmp_path: Path) -> None:
        """Submit, poll, content and both model lists go under the base path, with the key and nothing else.

        Userinfo, a query or a fragment in the setting never reach a request: aiohttp would
        make a second Authorization of the userinfo.
        """
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            if request.url.path.endswith("/content"):
                return httpx.Response(200, content=MP4)
            if request.url.path.endswith("models"):
                return httpx.Response(200, json={"data": []})
            return httpx.Response(200, json={"id": JOB_ID, "status": "pending"})

        async with OpenRouterClient(base, KEY, transport=httpx.MockTransport(handler)) as client:
            await client.submit({"model": "m", "prompt": "p"})
            await client.poll(JOB_ID)
            await client.download(JOB_ID, 0, tmp_path / "0.part", max_bytes=1 << 20)
            await client.video_models()
            await client.models()
        assert [str(r.url) for r in seen] == [
            "https://openrouter.test/api/v1/videos",
            f"https://openrouter.test/api/v1/videos/{JOB_ID}",
            f"https://openrouter.test/api/v1/videos/{JOB_ID}/content?index=0",
            "https://openrouter.test/api/v1/videos/models",
            "https://openrouter.test/api/v1/models?output_modalities=video",
        ]
        assert all(r.headers.get_list("Authorization") == [f"Bearer {KEY}"] for r in seen)
        assert all(r.headers["Accept-Encoding"] == "identity" for r in seen)
        assert "Cookie" not in seen[-1].headers

    @pytest.mark.asyncio
    async def test_no_key_no_authorization(self) -> None:
        """Without a key (the simulator, a local proxy that adds it), no Authorization header is sent."""
        seen: list[httpx.Request] = []
        async with OpenRouterClient(
            BASE,
            None,
            transport=httpx.MockTransport(
                content_handler(httpx.Response(200, json={"id": JOB_ID, "status": "pending"}), seen)
            ),
        ) as client:
            await client.poll(JOB_ID)
        assert "Authorization" not in seen[0].headers

    @pytest.mark.asyncio
    async def test_redirect_not_followed(self) -> None:
        """A redirect is never followed (so the key cannot be carried off) and fails the call."""
        calls: list[httpx.URL] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request.url)
            return httpx.Response(302, headers={"Location": "https://evil.example/steal"})

        async with make_client(handler) as client:
            with pytest.raises(PermanentError) as info:
                await client.poll(JOB_ID)
        assert len(calls) == 1 and info.value.status == 302


# --- job ids ---------------------------------------------------------------------------------


class TestJobIds:
    @pytest.mark.asyncio
    @pytest.mark.parametrize("bad", ["", ".", "..", "../models", "a/b", "a?b", "a#b", "a b", "a%2Fb", "é", "x" * 257])
    async def test_bad_job_id_rejected(self, bad: str, tmp_path: Path) -> None:
        """An id that is not one plain path segment raises PermanentError before any request."""
        calls: list[httpx.Request] = []
        async with make_client(content_handler(httpx.Response(200), calls)) as client:
            with pytest.raises(PermanentError) as info:
                await client.poll(bad)
            assert info.value.endpoint == "poll"
            with pytest.raises(PermanentError):
                await client.download(bad, 0, tmp_path / "x.part", max_bytes=100)
        assert calls == []
        assert not (tmp_path / "x.part").exists()

    @pytest.mark.asyncio
    async def test_odd_but_safe_job_id_allowed(self) -> None:
        """Dots, colons, dashes and underscores inside an id are fine."""
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.url.path)
            return httpx.Response(200, json={"id": "a.b:c_d-e", "status": "pending"})

        async with make_client(handler) as client:
            await client.poll("a.b:c_d-e")
        assert seen == ["/api/v1/videos/a.b:c_d-e"]


# --- classification (what the caller does next) ----------------------------------------------------


class TestSubmitClassification:
    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("code", "expected"),
        [
            (408, RetryableError),
            (429, RetryableError),
            (503, RetryableError),
            (500, AmbiguousSubmit),
            (502, AmbiguousSubmit),
            (504, AmbiguousSubmit),
            (524, AmbiguousSubmit),
            (529, AmbiguousSubmit),
            (599, AmbiguousSubmit),
            (400, PermanentError),
            (401, PermanentError),
            (402, PermanentError),
            (403, PermanentError),
            (404, PermanentError),
            (413, PermanentError),
            (422, PermanentError),
            (418, PermanentError),
        ],
    )
    async def test_status(self, code: int, expected: type[ProviderError], tmp_path: Path) -> None:
        """Each submit status maps to the row of the retry table, with status, endpoint and the provider text."""
        with pytest.raises(ProviderError) as info:
            await call(make_client(status(code)), "submit", tmp_path)
        assert type(info.value) is expected
        assert info.value.status == code and info.value.endpoint == "submit"
        assert f"status {code} (code {code}, provider google-vertex)" in str(info.value)

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (httpx.ConnectError, RetryableError),
            (httpx.ConnectTimeout, RetryableError),
            (httpx.PoolTimeout, RetryableError),
            (httpx.ReadTimeout, AmbiguousSubmit),
            (httpx.ReadError, AmbiguousSubmit),
            (httpx.WriteError, AmbiguousSubmit),
            (httpx.WriteTimeout, AmbiguousSubmit),
            (httpx.RemoteProtocolError, AmbiguousSubmit),
        ],
    )
    async def test_transport(
        self, exc: type[httpx.RequestError], expected: type[ProviderError], tmp_path: Path
    ) -> None:
        """Never sent → retryable; possibly sent → ambiguous; no status, no httpx cause attached."""
        with pytest.raises(ProviderError) as info:
            await call(make_client(raiser(exc)), "submit", tmp_path)
        assert type(info.value) is expected
        assert info.value.status is None and info.value.endpoint == "submit"
        assert info.value.__cause__ is None and info.value.__suppress_context__

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "response",
        [
            httpx.Response(202, json={"status": "pending"}),
            httpx.Response(202, text="<html>accepted</html>"),
            httpx.Response(202, json=["not", "a", "job"]),
            httpx.Response(204),
            httpx.Response(202, json={"id": "../../etc", "status": "pending"}),
        ],
    )
    async def test_accepted_without_job_id_is_ambiguous(self, response: httpx.Response, tmp_path: Path) -> None:
        """A 2xx that yields no usable job id may still have been charged: AmbiguousSubmit."""
        with pytest.raises(AmbiguousSubmit) as info:
            await call(make_client(lambda r: response), "submit", tmp_path)
        assert info.value.status == response.status_code

    @pytest.mark.asyncio
    async def test_accepted_with_odd_fields_keeps_the_id(self) -> None:
        """A 202 with an id but unreadable other fields still returns the id (the one thing we must keep)."""
        response = httpx.Response(202, json={"id": JOB_ID, "status": None, "usage": "weird"})
        async with make_client(lambda r: response) as client:
            job = await client.submit({"model": "m"})
        assert job.id == JOB_ID and job.status == "pending"

    @pytest.mark.asyncio
    @pytest.mark.parametrize("code", [200, 201])
    async def test_200_and_201_accepted(self, code: int) -> None:
        """200 and 201 are accepted like 202."""
        async with make_client(lambda r: httpx.Response(code, json={"id": JOB_ID, "status": "pending"})) as client:
            assert (await client.submit({"model": "m"})).id == JOB_ID

    @pytest.mark.asyncio
    async def test_unserialisable_body_is_permanent_and_not_sent(self) -> None:
        """A body that is not JSON fails before sending."""
        calls: list[httpx.Request] = []
        async with make_client(content_handler(httpx.Response(202), calls)) as client:
            with pytest.raises(PermanentError):
                await client.submit({"model": "m", "seed": float("nan")})
            with pytest.raises(PermanentError):
                await client.submit({"model": object()})
        assert calls == []


GET_ENDPOINTS = ["poll", "content", "video_models", "models"]


class TestGetClassification:
    @pytest.mark.asyncio
    @pytest.mark.parametrize("endpoint", GET_ENDPOINTS)
    @pytest.mark.parametrize(
        ("code", "expected"),
        [
            (408, RetryableError),
            (429, RetryableError),
            (500, RetryableError),
            (502, RetryableError),
            (503, RetryableError),
            (504, RetryableError),
            (524, RetryableError),
            (529, RetryableError),
            (400, PermanentError),
            (401, PermanentError),
            (403, PermanentError),
            (404, PermanentError),
            (422, PermanentError),
        ],
    )
    async def test_status(self, endpoint: str, code: int, expected: type[ProviderError], tmp_path: Path) -> None:
        """GET statuses: 408, 429 and 5xx retry; other 4xx are permanent."""
        with pytest.raises(ProviderError) as info:
            await call(make_client(status(code)), endpoint, tmp_path)
        assert type(info.value) is expected
        assert info.value.status == code
        assert info.value.endpoint == ("models" if endpoint == "video_models" else endpoint)
        assert f"status {code}" in str(info.value)
        assert not (tmp_path / "out.part").exists()

    @pytest.mark.asyncio
    @pytest.mark.parametrize("endpoint", GET_ENDPOINTS)
    @pytest.mark.parametrize(
        "exc",
        [
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
            httpx.ReadTimeout,
            httpx.ReadError,
            httpx.RemoteProtocolError,
        ],
    )
    async def test_transport(self, endpoint: str, exc: type[httpx.RequestError], tmp_path: Path) -> None:
        """Any transport failure on a GET is retryable."""
        with pytest.raises(RetryableError) as info:
            await call(make_client(raiser(exc)), endpoint, tmp_path)
        assert info.value.status is None and info.value.__cause__ is None

    @pytest.mark.asyncio
    @pytest.mark.parametrize("endpoint", ["poll", "video_models", "models"])
    async def test_unreadable_200_is_retryable(self, endpoint: str, tmp_path: Path) -> None:
        """A 200 whose body is not the expected JSON (a proxy page, say) is retryable."""
        with pytest.raises(RetryableError):
            await call(make_client(lambda r: httpx.Response(200, text="<html>oops</html>")), endpoint, tmp_path)

    @pytest.mark.asyncio
    async def test_plain_text_error_body_is_shortened(self, tmp_path: Path) -> None:
        """A non-JSON error body becomes a short, single-line message."""
        body = "Bad gateway\n" + "x" * 5000
        with pytest.raises(RetryableError) as info:
            await call(make_client(lambda r: httpx.Response(502, text=body)), "poll", tmp_path)
        assert "Bad gateway x" in str(info.value) and len(str(info.value)) < 700 and "\n" not in str(info.value)


# --- Retry-After -----------------------------------------------------------------------------


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("120", 120.0),
            (" 1.5 ", 1.5),
            ("0", 0.0),
            ("-3", 0.0),
            (None, None),
            ("", None),
            ("soon", None),
            ("nan", None),
            ("inf", None),
        ],
    )
    def test_parse_seconds(self, value: str | None, expected: float | None) -> None:
        """Delta-seconds parse to seconds; junk gives None, negatives clamp to 0."""
        assert parse_retry_after(value) == expected

    def test_parse_http_date(self) -> None:
        """An HTTP-date gives the seconds from now until then; a past date gives 0."""
        when = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
        header = format_datetime(when, usegmt=True)
        assert header == "Tue, 01 Jan 2030 12:00:00 GMT"
        assert parse_retry_after(header, now=when.timestamp() - 90) == pytest.approx(90)
        assert parse_retry_after(header, now=when.timestamp() + 90) == 0.0

    @pytest.mark.asyncio
    @pytest.mark.parametrize(("endpoint", "code"), [("submit", 429), ("submit", 503), ("poll", 429), ("content", 503)])
    async def test_error_carries_retry_after(self, endpoint: str, code: int, tmp_path: Path) -> None:
        """The provider's Retry-After reaches the raised error as seconds."""
        with pytest.raises(RetryableError) as info:
            await call(make_client(status(code, headers={"Retry-After": "7"})), endpoint, tmp_path)
        assert info.value.retry_after == 7.0

    @pytest.mark.asyncio
    async def test_error_carries_retry_after_date(self, tmp_path: Path) -> None:
        """An HTTP-date Retry-After in the future becomes a positive number of seconds, at most max_retry_after."""
        soon = format_datetime(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=120), usegmt=True)
        with pytest.raises(RetryableError) as info:
            await call(make_client(status(429, headers={"Retry-After": soon})), "poll", tmp_path)
        assert info.value.retry_after is not None and 100 < info.value.retry_after <= 120
        next_year = format_datetime(datetime.now(UTC).replace(microsecond=0).replace(year=datetime.now(UTC).year + 1))
        with pytest.raises(RetryableError) as info:
            await call(make_client(status(429, headers={"Retry-After": next_year})), "poll", tmp_path)
        assert info.value.retry_after == 300.0


# --- downloads -------------------------------------------------------------------------------


def content_handler(response: httpx.Response, seen: list[httpx.Request] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return response

    return handler


class TestDownload:
    @pytest.mark.asyncio
    async def test_happy_path(self, tmp_path: Path) -> None:
        """The body lands in dest with its size, sha256 and media type; index and key go to OpenRouter."""
        seen: list[httpx.Request] = []
        response = httpx.Response(200, content=MP4, headers={"Content-Type": "video/mp4; codecs=avc1"})
        dest = tmp_path / "video.part"
        async with make_client(content_handler(response, seen)) as client:
            result = await client.download(JOB_ID, 2, dest, max_bytes=len(MP4))
        assert result == Download(
            path=dest, bytes=len(MP4), sha256=hashlib.sha256(MP4).hexdigest(), content_type="video/mp4"
        )
        assert dest.read_bytes() == MP4
        request = seen[0]
        assert request.url.path == f"/api/v1/videos/{JOB_ID}/content" and request.url.params["index"] == "2"
        assert request.headers["Authorization"] == f"Bearer {KEY}"

    @pytest.mark.asyncio
    async def test_chunked_large_body(self, tmp_path: Path) -> None:
        """A body without Content-Length, bigger than one write batch, is stored whole."""
        chunks = [MP4] + [bytes([i]) * 300_000 for i in range(8)]
        whole = b"".join(chunks)
        dest = tmp_path / "video.part"
        async with make_client(content_handler(httpx.Response(200, stream=ChunkStream(chunks)))) as client:
            result = await client.download(JOB_ID, 0, dest, max_bytes=len(whole))
        assert result.bytes == len(whole) and result.sha256 == hashlib.sha256(whole).hexdigest()
        assert dest.read_bytes() == whole and result.content_type == "video/mp4"

    @pytest.mark.asyncio
    async def test_a_small_video_is_created_off_the_event_loop(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Under one write batch, the file is made in the thread that writes and fsyncs it; a larger one on the loop.

        Making a file is five system calls; on the loop each one lets another thread take the GIL.
        """
        made_in: list[int] = []
        real_create = download._create

        def create(dest: Path, mode: int) -> IO[bytes]:
            made_in.append(threading.get_ident())
            return real_create(dest, mode)

        monkeypatch.setattr(download, "_create", create)
        big = [MP4, b"x" * 300_000]
        async with make_client(content_handler(httpx.Response(200, content=MP4))) as client:
            await client.download(JOB_ID, 0, tmp_path / "small.part", max_bytes=len(MP4))
        async with make_client(content_handler(httpx.Response(200, stream=ChunkStream(big)))) as client:
            await client.download(JOB_ID, 0, tmp_path / "big.part", max_bytes=1 << 20)
        loop_thread = threading.get_ident()
        assert made_in[0] != loop_thread and made_in[1] == loop_thread
        assert (tmp_path / "small.part").read_bytes() == MP4 and (tmp_path / "big.part").read_bytes() == b"".join(big)
        assert oct((tmp_path / "small.part").stat().st_mode & 0o777) == "0o600"

    @pytest.mark.asyncio
    @pytest.mark.parametrize("size", ["small", "big"])
    async def test_a_failed_write_closes_the_file(
        self, size: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The disk fills up at the last write: a retryable error, the file closed and gone, no descriptor left open.

        Before, the last write came after the file was handed to the closing thread, so a
        failure there left it open; and a small video's file was never closed at all.
        """
        files: list[FullDisk] = []
        real_create = download._create

        def create(dest: Path, mode: int) -> IO[bytes]:
            files.append(FullDisk(real_create(dest, mode)))
            return files[-1]  # type: ignore[return-value]

        monkeypatch.setattr(download, "_create", create)
        chunks = [MP4] if size == "small" else [MP4, b"x" * 300_000, b"y" * 10]
        dest = tmp_path / "video.part"
        async with make_client(content_handler(httpx.Response(200, stream=ChunkStream(chunks)))) as client:
            with pytest.raises(DownloadError) as info:
                await client.download(JOB_ID, 0, dest, max_bytes=1 << 20)
        assert info.value.retryable and "cannot write" in str(info.value)
        assert len(files) == 1 and files[0].closed
        assert not dest.exists()

    @pytest.mark.asyncio
    async def test_a_cancel_while_a_small_video_is_written_leaves_no_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The stop cancels a download while its thread is making the file: the cancel waits for it, then it is deleted.

        Before, the cancel returned at once, the file was deleted before the thread made it,
        and a ``.part`` was left behind.
        """
        entered, gate, made = threading.Event(), threading.Event(), threading.Event()
        real_create = download._create

        def create(dest: Path, mode: int) -> IO[bytes]:
            entered.set()
            gate.wait(5)
            try:
                return real_create(dest, mode)
            finally:
                made.set()

        monkeypatch.setattr(download, "_create", create)
        dest = tmp_path / "video.part"
        async with make_client(content_handler(httpx.Response(200, content=MP4))) as client:
            task = asyncio.create_task(client.download(JOB_ID, 0, dest, max_bytes=len(MP4)))
            assert await asyncio.to_thread(entered.wait, 5), "the file was never made in a thread"
            task.cancel()
            threading.Timer(0.2, gate.set).start()  # the thread makes the file after the cancel
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await asyncio.to_thread(made.wait, 5), "the thread never finished"
        assert not dest.exists()

    @pytest.mark.asyncio
    async def test_truncated(self, tmp_path: Path) -> None:
        """Fewer bytes than Content-Length announced is a retryable DownloadError, and the file is gone."""
        response = httpx.Response(200, headers={"Content-Length": str(len(MP4) + 100)}, stream=ChunkStream([MP4]))
        dest = tmp_path / "video.part"
        async with make_client(content_handler(response)) as client:
            with pytest.raises(DownloadError) as info:
                await client.download(JOB_ID, 0, dest, max_bytes=10 * len(MP4))
        assert info.value.retryable and "truncated" in str(info.value)
        assert not dest.exists()

    @pytest.mark.asyncio
    async def test_cut_mid_stream(self, tmp_path: Path) -> None:
        """A transport error mid-body is a retryable DownloadError, and the file is gone."""
        response = httpx.Response(200, stream=ChunkStream([MP4[:100]], error=httpx.ReadError))
        dest = tmp_path / "video.part"
        async with make_client(content_handler(response)) as client:
            with pytest.raises(DownloadError) as info:
                await client.download(JOB_ID, 0, dest, max_bytes=10 * len(MP4))
        assert info.value.retryable and info.value.__cause__ is None
        assert not dest.exists()

    @pytest.mark.asyncio
    async def test_announced_too_large(self, tmp_path: Path) -> None:
        """A Content-Length over the cap is refused before reading the body."""
        dest = tmp_path / "video.part"
        async with make_client(content_handler(httpx.Response(200, content=MP4))) as client:
            with pytest.raises(DownloadError) as info:
                await client.download(JOB_ID, 0, dest, max_bytes=len(MP4) - 1)
        assert not info.value.retryable and not dest.exists()

    @pytest.mark.asyncio
    async def test_streamed_too_large(self, tmp_path: Path) -> None:
        """A body without Content-Length is cut off as soon as it passes the cap."""
        dest = tmp_path / "video.part"
        stream = ChunkStream([MP4, MP4, MP4])
        async with make_client(content_handler(httpx.Response(200, stream=stream))) as client:
            with pytest.raises(DownloadError) as info:
                await client.download(JOB_ID, 0, dest, max_bytes=len(MP4) + 1)
        assert not info.value.retryable and "cap" in str(info.value)
        assert not dest.exists()

    @pytest.mark.asyncio
    @pytest.mark.parametrize("body", [json.dumps(error_body("quota", 402)).encode(), b"", b"\x00\x00\x00"])
    async def test_not_mp4(self, body: bytes, tmp_path: Path) -> None:
        """A 200 whose body is JSON, empty or too short is not stored as a video."""
        dest = tmp_path / "video.part"
        async with make_client(content_handler(httpx.Response(200, content=body))) as client:
            with pytest.raises(DownloadError) as info:
                await client.download(JOB_ID, 0, dest, max_bytes=1_000_000)
        assert not info.value.retryable and "MP4" in str(info.value)
        assert not dest.exists()

    @pytest.mark.asyncio
    async def test_http_error_leaves_no_file(self, tmp_path: Path) -> None:
        """A 404 is a PermanentError for the content endpoint; a stale dest is removed."""
        dest = tmp_path / "video.part"
        dest.write_bytes(b"old partial")
        async with make_client(status(404)) as client:
            with pytest.raises(PermanentError) as info:
                await client.download(JOB_ID, 0, dest, max_bytes=1_000_000)
        assert info.value.endpoint == "content" and "status 404" in str(info.value)
        assert not dest.exists()

    @pytest.mark.asyncio
    async def test_bad_arguments(self, tmp_path: Path) -> None:
        """A negative index or non-positive cap is refused."""
        async with make_client(content_handler(httpx.Response(200, content=MP4))) as client:
            with pytest.raises(PermanentError):
                await client.download(JOB_ID, -1, tmp_path / "a", max_bytes=10)
            with pytest.raises(PermanentError):
                await client.download(JOB_ID, 0, tmp_path / "a", max_bytes=0)


# --- secrets ---------------------------------------------------------------------------------


def echoing_key(code: int) -> Handler:
    """A provider that (badly) echoes the key and the auth header back in its error text."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, json=error_body(f"bad key {KEY}; {request.headers['Authorization']}", code))

    return handler


class TestSecrets:
    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("endpoint", "handler"),
        [
            ("submit", echoing_key(401)),
            ("submit", echoing_key(429)),
            ("submit", echoing_key(500)),
            ("submit", raiser(httpx.ConnectError)),
            ("submit", raiser(httpx.ReadTimeout)),
            ("submit", lambda r: httpx.Response(202, text=f"ok {KEY}")),
            ("poll", echoing_key(404)),
            ("poll", echoing_key(503)),
            ("poll", raiser(httpx.RemoteProtocolError)),
            ("content", echoing_key(403)),
            ("content", lambda r: httpx.Response(200, text=f"oops {KEY}")),
            ("content", lambda r: httpx.Response(200, stream=ChunkStream([MP4[:50]], error=httpx.ReadError))),
            ("models", echoing_key(401)),
            ("video_models", raiser(httpx.ConnectTimeout)),
        ],
    )
    async def test_key_never_in_errors(self, endpoint: str, handler: Handler, tmp_path: Path) -> None:
        """No raised error's str, repr, args or chained exception text contains the key or auth header."""
        with pytest.raises((ProviderError, DownloadError)) as info:
            await call(make_client(handler), endpoint, tmp_path)
        exc = info.value
        texts = [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
        assert exc.__cause__ is None
        for text in texts:
            assert KEY not in text and "Bearer sk" not in text


# --- models ----------------------------------------------------------------------------------


class TestJobModel:
    @pytest.mark.parametrize(
        ("status_", "terminal"),
        [
            ("pending", False),
            ("in_progress", False),
            ("completed", True),
            ("failed", True),
            ("cancelled", True),
            ("expired", True),
            ("something_new", False),
        ],
    )
    def test_is_terminal(self, status_: str, terminal: bool) -> None:
        """Completed, failed, cancelled and expired are terminal; unknown statuses are not."""
        assert Job(id="j", status=status_).is_terminal is terminal

    def test_structured_error_becomes_text(self) -> None:
        """An error object is read as its message rather than failing the whole job."""
        job = Job.model_validate({"id": "j", "status": "failed", "error": {"message": "moderated", "code": 403}})
        assert job.error == "moderated"
        assert Job.model_validate({"id": "j", "error": 5}).error == "5"


# --- over a real socket ----------------------------------------------------------------------


class TestRealTransport:
    """A few paths through httpx's real transport, against a raw local server (no MockTransport shortcuts)."""

    @staticmethod
    async def serve(answer: bytes) -> tuple[asyncio.Server, str, list[bytes]]:
        requests: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        return server, f"http://127.0.0.1:{port}/api/v1", requests

    @pytest.mark.asyncio
    async def test_connection_closed_mid_body(self, tmp_path: Path) -> None:
        """A server that closes before Content-Length is reached gives a retryable DownloadError."""
        head = f"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {len(MP4) + 500}\r\n\r\n"
        server, base, requests = await self.serve(head.encode() + MP4)
        dest = tmp_path / "video.part"
        async with server, OpenRouterClient(base, KEY) as client:
            with pytest.raises(DownloadError) as info:
                await client.download(JOB_ID, 0, dest, max_bytes=1_000_000)
        assert info.value.retryable and not dest.exists()
        assert f"authorization: Bearer {KEY}".lower().encode() in requests[0].lower()

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "body",
        # the second is written to disk in several batches, with an odd tail
        [MP4, MP4[:12] + bytes(range(251)) * 5180],
        ids=["small", "several-write-batches"],
    )
    async def test_real_download(self, tmp_path: Path, body: bytes) -> None:
        """A complete answer is stored byte for byte and hashed."""
        head = f"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {len(body)}\r\n\r\n"
        server, base, _ = await self.serve(head.encode() + body)
        dest = tmp_path / "video.part"
        async with server, OpenRouterClient(base, KEY) as client:
            result = await client.download(JOB_ID, 0, dest, max_bytes=2_000_000)
        assert result.sha256 == hashlib.sha256(body).hexdigest() and dest.read_bytes() == body

    @pytest.mark.asyncio
    async def test_submit_reset_before_answer_is_ambiguous(self) -> None:
        """A server that reads the submit and hangs up without answering leaves the submit ambiguous."""
        server, base, requests = await self.serve(b"")
        async with server, OpenRouterClient(base, KEY) as client:
            with pytest.raises(AmbiguousSubmit) as info:
                await client.submit({"model": "m"})
        assert requests and KEY not in str(info.value)

    @pytest.mark.asyncio
    async def test_connect_refused_is_retryable(self) -> None:
        """Nobody listening: the submit certainly was not sent, so it is retryable."""
        server, base, _ = await self.serve(b"")
        server.close()
        await server.wait_closed()
        async with OpenRouterClient(base, KEY) as client:
            with pytest.raises(RetryableError) as info:
                await client.submit({"model": "m"})
        assert info.value.endpoint == "submit" and info.value.status is None
