"""The provider client against a compromised or buggy endpoint: every answer is bounded before it is believed.

One class per hardening point. Client tests run against ``httpx.MockTransport``; the
same hostile answers over real HTTP are in ``tests/integration/test_hostile_provider.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import os
import random
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from videoworker import metrics
from videoworker.config import load_settings
from videoworker.errors import AmbiguousSubmit, DownloadError, PermanentError, ProviderError, RetryableError
from videoworker.metrics import ModelLabels
from videoworker.provider.answers import parse_retry_after
from videoworker.provider.catalogue import CatalogueCache
from videoworker.provider.client import OpenRouterClient
from videoworker.provider.models import Job, VideoModel
from videoworker.provider.scrub import ERROR_TEXT_LIMIT, scrub
from videoworker.provider.untrusted import (
    MAX_ANSWER_BYTES,
    MAX_JSON_DEPTH,
    AnswerRefused,
    ProviderLimits,
    finite_cost,
    load_json,
    video_type,
)

BASE = "https://openrouter.test/api/v1"
KEY = "sk-or-v1-unit-test-key-0123456789"
JOB_ID = "gen-vid-1719792000-abcdefghij0123456789"
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
DEEP = b"[" * 100_000
SECRET = "sk-or-v1-0123456789abcdef0123456789abcdef"

Handler = Callable[[httpx.Request], Any]


def make_client(handler: Handler, limits: ProviderLimits | None = None) -> OpenRouterClient:
    transport = httpx.MockTransport(handler)
    if limits is None:  # the defaults, i.e. the settings' defaults
        return OpenRouterClient(BASE, KEY, transport=transport)
    return OpenRouterClient(BASE, KEY, transport=transport, limits=limits)


def answer(body: bytes | str, code: int = 200, headers: dict[str, str] | None = None) -> Handler:
    content = body.encode() if isinstance(body, str) else body

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, content=content, headers={"Content-Type": "application/json", **(headers or {})})

    return handler


def completed(**fields: Any) -> dict[str, Any]:
    return {"id": JOB_ID, "status": "completed", "unsigned_urls": [f"{BASE}/videos/{JOB_ID}/content?index=0"], **fields}


async def call(client: OpenRouterClient, endpoint: str) -> object:
    async with client:
        if endpoint == "submit":
            return await client.submit({"model": "m", "prompt": "p"})
        if endpoint == "poll":
            return await client.poll(JOB_ID)
        if endpoint == "video_models":
            return await client.video_models()
        return await client.models()


class Endless(httpx.AsyncByteStream):
    """A body of 64 MiB (as good as endless here), counting what the client pulled."""

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < 64 * 1024 * 1024:
            self.sent += len(self.chunk)
            yield self.chunk


class Once(httpx.AsyncByteStream):
    """A body streamed off the "wire" (unlike ``content=``, which httpx reads, and decodes, up front)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body


class Slow(httpx.AsyncByteStream):
    """The first bytes of a video, then nothing for ``stall`` seconds (a drip server)."""

    def __init__(self, stall: float) -> None:
        self.stall = stall

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield MP4[:100]
        await asyncio.sleep(self.stall)
        yield MP4[100:]


# --- 1. JSON answers: 1 MiB, 64 levels ------------------------------------------------------------


class TestJsonBounds:
    @pytest.mark.parametrize(("endpoint", "expected"), [("poll", PermanentError), ("submit", AmbiguousSubmit)])
    async def test_an_endless_answer_is_cut_at_1_mib(self, endpoint: str, expected: type[ProviderError]) -> None:
        """An answer without Content-Length is read up to 1 MiB, then refused; a submit's job may still exist."""
        stream = Endless(b" " * 65536)
        client = make_client(lambda r: httpx.Response(202 if endpoint == "submit" else 200, stream=stream))
        with pytest.raises(ProviderError) as info:
            await call(client, endpoint)
        assert type(info.value) is expected and "answer over 1 MiB" in info.value.message
        assert MAX_ANSWER_BYTES < stream.sent <= MAX_ANSWER_BYTES + 65536

    async def test_an_announced_oversized_answer_is_refused_unread(self) -> None:
        """A Content-Length over 1 MiB is refused before a byte of the body is read."""
        stream = Endless(b" " * 65536)
        client = make_client(lambda r: httpx.Response(200, stream=stream, headers={"Content-Length": str(2 << 20)}))
        with pytest.raises(PermanentError, match="over 1 MiB"):
            await call(client, "poll")
        assert stream.sent == 0

    async def test_an_answer_of_exactly_1_mib_is_read(self) -> None:
        body = json.dumps(completed(padding="")).encode()
        body = body[:-2] + b" " * (MAX_ANSWER_BYTES - len(body)) + body[-2:]
        assert len(body) == MAX_ANSWER_BYTES
        job = await call(make_client(answer(body)), "poll")
        assert isinstance(job, Job) and job.status == "completed"

    @pytest.mark.parametrize("endpoint", ["poll", "video_models", "models", "submit"])
    @pytest.mark.parametrize("body", [DEEP, DEEP + b"]" * 100_000, b'{"id": "x", "d": ' + b"[" * 65 + b"]" * 65 + b"}"])
    async def test_deep_json_is_a_provider_error(self, endpoint: str, body: bytes) -> None:
        """Nesting past 64 is refused as the endpoint's error (ambiguous for a submit), never a RecursionError."""
        code = 202 if endpoint == "submit" else 200
        with pytest.raises(ProviderError, match="nested deeper than 64 levels") as info:
            await call(make_client(answer(body, code)), endpoint)
        assert type(info.value) is (AmbiguousSubmit if endpoint == "submit" else PermanentError)

    async def test_depth_64_is_accepted(self) -> None:
        """The job object is level 1; a value nested 63 deeper inside it is still read."""
        body = json.dumps(completed())[:-1] + ', "x": ' + "[" * 63 + "]" * 63 + "}"
        job = await call(make_client(answer(body)), "poll")
        assert isinstance(job, Job) and job.model_extra is not None and "x" in job.model_extra

    async def test_a_deep_models_list_leaves_the_catalogue_unavailable(self) -> None:
        """The models cache reports "unavailable" (documented values apply) instead of raising into intake."""
        async with make_client(answer(b'{"data": ' + DEEP + b"}")) as client:
            catalogue = await CatalogueCache(client, ttl=600).get()
        assert catalogue.available is False

    async def test_any_failure_of_the_models_list_leaves_the_catalogue_unavailable(self) -> None:
        class Broken:
            async def video_models(self) -> list[VideoModel]:
                raise RuntimeError("a bug, not a provider error")

        assert (await CatalogueCache(Broken(), ttl=600).get()).available is False

    @pytest.mark.parametrize("coding", ["gzip", "br", "deflate, gzip"])
    async def test_a_compressed_answer_is_refused(self, coding: str) -> None:
        """Every request asks for identity; an answer compressed anyway is refused, not inflated."""
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            body = Once(gzip.compress(json.dumps(completed()).encode()))
            return httpx.Response(200, stream=body, headers={"Content-Encoding": coding})

        with pytest.raises(PermanentError, match="Content-Encoding"):
            await call(make_client(handler), "poll")
        assert seen[0].headers["Accept-Encoding"] == "identity"

    def test_the_depth_check_agrees_with_a_walk(self) -> None:
        """Random values around the limit, brackets inside strings included: refused exactly when deeper than 64."""
        rng = random.Random(64)

        def value(room: int) -> Any:
            roll = rng.random()
            if room == 0 or (room < 8 and roll < 0.3):
                return rng.choice([1, None, 2.5, 'a[{"', "]}\\", "[" * 70])
            width = 2 if rng.random() < 0.1 else 1  # some siblings, without an exponential tree
            if roll < 0.6:
                return [value(room - 1) for _ in range(width)]
            return {f"k{i}[": value(room - 1) for i in range(width)}

        def depth(v: Any) -> int:
            children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
            return 0 if children is None else 1 + max((depth(c) for c in children), default=0)

        seen = set()
        for _ in range(100):
            v = value(rng.randint(55, 75))
            body = json.dumps(v, ensure_ascii=rng.random() < 0.5).encode()
            deep = depth(v) > MAX_JSON_DEPTH
            seen.add(deep)
            if deep:
                with pytest.raises(AnswerRefused):
                    load_json(body)
            else:
                assert load_json(body) == v
        assert seen == {True, False}

    def test_load_json(self) -> None:
        """Not JSON is None; NaN, Infinity and overflowing floats are null; deep input is refused quickly."""
        assert load_json(b"<html>") is None and load_json(b"\xff\xfe\x00") is None
        assert load_json(b'{"a": NaN, "b": [Infinity, -Infinity, 1e309, 1.5]}') == {
            "a": None,
            "b": [None, None, None, 1.5],
        }
        for body in (DEEP, b"[" * 65 + b"]" * 65, b'{"a":' * 70 + b"1" + b"}" * 70):
            with pytest.raises(AnswerRefused):
                load_json(body)
        assert load_json(json.dumps(["[" * 66]).encode()) == ["[" * 66]  # brackets in strings do not nest


# --- 2. outputs per job -------------------------------------------------------------------------


class TestOutputs:
    async def test_a_job_listing_more_outputs_than_allowed_fails_before_any_download(self) -> None:
        """Nine outputs with the default max_outputs_per_job=8: a PermanentError naming the setting."""
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.url.path)
            return httpx.Response(200, json=completed(unsigned_urls=[f"u{i}" for i in range(9)]))

        with pytest.raises(PermanentError) as info:
            await call(make_client(handler), "poll")
        assert "lists 9 outputs, over max_outputs_per_job=8" in info.value.message
        assert seen == [f"/api/v1/videos/{JOB_ID}"]

    async def test_the_limit_comes_from_the_limits(self) -> None:
        ok = await call(make_client(answer(json.dumps(completed(unsigned_urls=["a", "b"]))), ProviderLimits(2)), "poll")
        assert isinstance(ok, Job) and len(ok.unsigned_urls) == 2
        with pytest.raises(PermanentError, match="over max_outputs_per_job=2"):
            await call(make_client(answer(json.dumps(completed(urls=["a", "b", "c"]))), ProviderLimits(2)), "poll")

    async def test_a_download_index_past_the_limit_is_refused_unsent(self, tmp_path: Path) -> None:
        seen: list[httpx.Request] = []
        async with make_client(lambda r: seen.append(r), ProviderLimits(max_outputs=2)) as client:
            with pytest.raises(PermanentError, match=r"index must be in \[0, 2\)"):
                await client.download(JOB_ID, 2, tmp_path / "2.part", max_bytes=1000)
        assert seen == []


# --- 3, 4, 7, 10. downloads ----------------------------------------------------------------------


async def download(handler: Handler, dest: Path, **limits: Any) -> Any:
    async with make_client(handler, ProviderLimits(**limits) if limits else None) as client:
        return await client.download(JOB_ID, 0, dest, max_bytes=100 * 1024 * 1024)


class TestDownloadEncoding:
    async def test_a_gzip_body_is_refused_not_inflated(self, tmp_path: Path) -> None:
        """64 KiB of gzip that would inflate to 64 MiB: refused (not retryable), nothing left on disk."""
        bomb = gzip.compress(MP4 + bytes(64 * 1024 * 1024))
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            headers = {"Content-Encoding": "gzip", "Content-Type": "video/mp4"}
            return httpx.Response(200, stream=Once(bomb), headers=headers)

        dest = tmp_path / "0.part"
        with pytest.raises(DownloadError, match="Content-Encoding 'gzip'") as info:
            await download(handler, dest)
        assert not info.value.retryable and not dest.exists()
        assert seen[0].headers["Accept-Encoding"] == "identity"

    async def test_identity_is_accepted(self, tmp_path: Path) -> None:
        handler = answer(MP4, headers={"Content-Encoding": "identity", "Content-Type": "video/mp4"})
        got = await download(handler, tmp_path / "0.part")
        assert got.bytes == len(MP4)


class TestDownloadDeadline:
    async def test_a_stalled_body_fails_retryably_at_the_deadline(self, tmp_path: Path) -> None:
        dest = tmp_path / "0.part"
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(10):
            with pytest.raises(DownloadError, match=r"not finished within download_deadline=0.3s") as info:
                await download(lambda r: httpx.Response(200, stream=Slow(stall=60)), dest, download_deadline=0.3)
        assert info.value.retryable and not dest.exists()
        assert asyncio.get_running_loop().time() - started < 5

    async def test_headers_that_never_come_count_too(self, tmp_path: Path) -> None:
        async def never(request: httpx.Request) -> httpx.Response:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async with asyncio.timeout(10):
            with pytest.raises(DownloadError, match="download_deadline"):
                await download(never, tmp_path / "0.part", download_deadline=0.2)

    async def test_a_download_within_the_deadline_is_kept(self, tmp_path: Path) -> None:
        got = await download(lambda r: httpx.Response(200, stream=Slow(stall=0.01)), tmp_path / "0.part")
        assert got.bytes == len(MP4)


class TestDownloadType:
    @pytest.mark.parametrize(
        ("header", "recorded"),
        [
            ("video/mp4", "video/mp4"),
            ("video/quicktime", "video/quicktime"),
            ("Video/MP4; codecs=avc1", "video/mp4"),
            ("text/html; charset=utf-8", "video/mp4"),
            ("application/octet-stream", "video/mp4"),
            ("video/webm", "video/mp4"),
            (None, "video/mp4"),
        ],
    )
    async def test_only_listed_media_types_are_recorded(
        self, header: str | None, recorded: str, tmp_path: Path
    ) -> None:
        headers = {"Content-Type": header} if header else {}
        got = await download(lambda r: httpx.Response(200, content=MP4, headers=headers), tmp_path / "0.part")
        assert got.content_type == recorded == video_type(header)


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """``umask(mask)`` sets the process umask for the test; the previous one is restored afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


class TestDownloadFile:
    async def test_a_planted_symlink_is_never_followed(self, tmp_path: Path) -> None:
        """A symlink at the .part path pointing outside: replaced by the video; the outside file is untouched."""
        outside = tmp_path / "outside.txt"
        outside.write_bytes(b"precious")
        work = tmp_path / "tmp" / "job"
        work.mkdir(parents=True)
        dest = work / "0.part"
        dest.symlink_to(outside)
        got = await download(answer(MP4, headers={"Content-Type": "video/mp4"}), dest)
        assert outside.read_bytes() == b"precious"
        assert not dest.is_symlink() and dest.read_bytes() == MP4 and got.path == dest

    async def test_a_dangling_symlink_is_not_followed_either(self, tmp_path: Path) -> None:
        target = tmp_path / "would-be-created"
        dest = tmp_path / "0.part"
        dest.symlink_to(target)
        await download(answer(MP4), dest)
        assert not target.exists() and dest.read_bytes() == MP4

    async def test_a_leftover_file_is_replaced(self, tmp_path: Path) -> None:
        dest = tmp_path / "0.part"
        dest.write_bytes(b"x" * 100_000)
        dest.chmod(0o666)
        await download(answer(MP4), dest)
        assert dest.read_bytes() == MP4 and stat.S_IMODE(dest.stat().st_mode) == 0o600

    @pytest.mark.parametrize(("mode", "mask"), [(0o600, 0o000), (0o640, 0o077), (0o640, 0o000)])
    async def test_the_file_has_exactly_the_configured_mode(
        self, mode: int, mask: int, tmp_path: Path, umask: Callable[[int], int]
    ) -> None:
        umask(mask)
        dest = tmp_path / "0.part"
        await download(answer(MP4), dest, file_mode=mode)
        assert stat.S_IMODE(dest.stat().st_mode) == mode

    def test_limits_from_settings(self) -> None:
        settings = load_settings(
            None, file_mode="0640", max_outputs_per_job=3, max_retry_after=42, download_deadline=99
        )
        assert ProviderLimits.from_settings(settings) == ProviderLimits(3, 42.0, 99.0, 0o640)
        assert ProviderLimits.from_settings(load_settings(None)) == ProviderLimits()


# --- 5. cost ------------------------------------------------------------------------------------


class TestCost:
    @pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "-1", "-0.01", '"12"', "true", "1e309", "[1]"])
    async def test_a_cost_that_is_not_a_finite_non_negative_number_is_unknown(self, raw: str) -> None:
        body = json.dumps(completed(usage={"cost": 0, "is_byok": False})).replace('"cost": 0', f'"cost": {raw}')
        job = await call(make_client(answer(body)), "poll")
        assert isinstance(job, Job) and job.usage is not None and job.usage.cost is None
        json.dumps(job.usage.model_dump(), allow_nan=False)  # what the final event needs

    @pytest.mark.parametrize(("raw", "cost"), [("0", 0.0), ("0.25", 0.25), ("3", 3.0)])
    async def test_a_real_cost_is_kept(self, raw: str, cost: float) -> None:
        body = json.dumps(completed(usage={"cost": 0})).replace('"cost": 0', f'"cost": {raw}')
        job = await call(make_client(answer(body)), "poll")
        assert isinstance(job, Job) and job.usage is not None and job.usage.cost == cost

    async def test_non_finite_numbers_elsewhere_do_not_reach_the_event(self) -> None:
        body = json.dumps(completed(usage={"cost": 1})).replace('"cost": 1', '"cost": 1, "tokens": NaN')
        job = await call(make_client(answer(body)), "poll")
        assert isinstance(job, Job) and job.usage is not None
        dumped = json.dumps(job.usage.model_dump(), allow_nan=False)
        assert json.loads(dumped) == {"cost": 1.0, "is_byok": None, "tokens": None}

    def test_finite_cost(self) -> None:
        for bad in (math.nan, math.inf, -math.inf, -1, "12", True, False, None, 10**400, [1], 1e308 * 10):
            assert finite_cost(bad) is None, bad
        assert finite_cost(0) == 0.0 and finite_cost(2) == 2.0 and finite_cost(0.5) == 0.5


# --- 6. Retry-After -----------------------------------------------------------------------------


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("5", 5.0),
            ("300", 300.0),
            ("301", 300.0),
            ("86400", 300.0),
            ("1e300", 300.0),
            ("-5", 0.0),
            ("soon", None),
            ("nan", None),
            ("1e400", None),
            ("Wed, 99 Foo 2024 99:99:99 GMT", None),
            ("9" * 200, None),
            ("\x00\x01", None),
        ],
    )
    def test_capped_and_garbage_tolerated(self, value: str, expected: float | None) -> None:
        assert parse_retry_after(value, cap=300) == expected

    def test_an_http_date_is_capped(self) -> None:
        now = datetime(2030, 1, 1, tzinfo=UTC)
        assert (
            parse_retry_after(format_datetime(now + timedelta(days=365), usegmt=True), cap=300, now=now.timestamp())
            == 300
        )
        assert (
            parse_retry_after(format_datetime(now + timedelta(seconds=60), usegmt=True), cap=300, now=now.timestamp())
            == 60
        )
        assert (
            parse_retry_after(format_datetime(now - timedelta(days=1), usegmt=True), cap=300, now=now.timestamp()) == 0
        )

    @pytest.mark.parametrize(("limits", "expected"), [(None, 300.0), (ProviderLimits(max_retry_after=10), 10.0)])
    async def test_the_client_caps_at_max_retry_after(self, limits: ProviderLimits | None, expected: float) -> None:
        client = make_client(answer('{"error": {"message": "slow down"}}', 429, {"Retry-After": "86400"}), limits)
        with pytest.raises(RetryableError) as info:
            await call(client, "poll")
        assert info.value.retry_after == expected


# --- 8. error text ------------------------------------------------------------------------------


class TestScrub:
    @pytest.mark.parametrize(
        ("text", "kept", "gone"),
        [
            ("bad\x1b[31m red\x07 and\u202eevil\u200b\r\nnext\tline", "bad [31m red and evil next line", "\x1b"),
            (f"Authorization: Bearer {SECRET}", "Bearer ***", SECRET),
            (f"bearer abc.def.ghi for key {SECRET}", "bearer ***", "abc.def"),
            (f"key {SECRET} was refused", "key sk-*** was refused", SECRET),
            ("Basic dXNlcjpwYXNz failed", "Basic ***", "dXNlcjpwYXNz"),
            (
                "at https://bucket.s3.example/v/1.mp4?X-Amz-Signature=abcd&x=1 done",
                "https://bucket.s3.example/v/1.mp4?***",
                "abcd",
            ),
            ("see https://user:hunter2@host.example/path", "https://***@host.example/path", "hunter2"),
            ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl here", "token *** here", "eyJ"),
            ("api_key=abc123&password: hunter2, secret=s3", "api_key=***&password: ***, secret=***", "hunter2"),
            ("unknown key: resolution", "unknown key: resolution", "***"),
        ],
    )
    def test_scrub(self, text: str, kept: str, gone: str) -> None:
        out = scrub(text)
        assert kept in out and gone not in out

    def test_scrub_cuts_after_redacting(self) -> None:
        """A secret across the limit is redacted whole, never left half; the result is at most the limit."""
        out = scrub("x" * 495 + " " + SECRET)
        assert len(out) == ERROR_TEXT_LIMIT and "sk-o" not in out and out.endswith("…")
        assert len(scrub("y" * 10**6)) == ERROR_TEXT_LIMIT

    async def test_a_failed_jobs_error_is_scrubbed(self) -> None:
        error = f"render failed\x1b[2J for Bearer {SECRET} at https://s.example/v.mp4?sig=abc\n" + "z" * 5000
        job = await call(make_client(answer(json.dumps({"id": JOB_ID, "status": "failed", "error": error}))), "poll")
        assert isinstance(job, Job) and job.error is not None
        assert job.error.startswith("render failed [2J for Bearer *** at https://s.example/v.mp4?***")
        assert len(job.error) <= ERROR_TEXT_LIMIT and SECRET not in job.error and "\x1b" not in job.error

    @pytest.mark.parametrize("code", [400, 500, 503])
    @pytest.mark.parametrize("endpoint", ["submit", "poll"])
    async def test_an_http_error_body_is_scrubbed(self, code: int, endpoint: str) -> None:
        body = json.dumps(
            {"error": {"message": f"nope\x07 {SECRET} https://x.example/a?token=t0k\u202e", "code": code}}
        )
        with pytest.raises(ProviderError) as info:
            await call(make_client(answer(body, code)), endpoint)
        message = info.value.message
        assert SECRET not in message and "t0k" not in message and "\x07" not in message and "\u202e" not in message
        assert "nope sk-*** https://x.example/a?***" in message and len(message) <= ERROR_TEXT_LIMIT

    async def test_a_plain_text_error_body_is_scrubbed(self) -> None:
        body = f"<html>\x1b]0;owned\x07 Bearer {SECRET}</html>" + "w" * 100_000
        with pytest.raises(RetryableError) as info:
            await call(make_client(answer(body, 502)), "poll")
        assert SECRET not in info.value.message and "\x1b" not in info.value.message
        assert len(info.value.message) <= ERROR_TEXT_LIMIT


# --- 9. metric labels ---------------------------------------------------------------------------


@pytest.fixture
def labels(monkeypatch: pytest.MonkeyPatch) -> ModelLabels:
    fresh = ModelLabels(max_unlisted=3)
    monkeypatch.setattr(metrics, "_MODEL_LABELS", fresh)
    return fresh


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestModelLabels:
    def test_without_a_list_a_bounded_number_of_names(self) -> None:
        names = ModelLabels(max_unlisted=50)
        assert [names.label(f"m{i}") for i in range(50)] == [f"m{i}" for i in range(50)]
        assert names.label("m50") == names.label("zzz") == "other"
        assert names.label("m7") == "m7"  # a name once labelled keeps its label

    def test_with_a_list_unlisted_names_are_other(self) -> None:
        names = ModelLabels(max_unlisted=1)
        names.known(["google/veo-3.1", "acme/v"])
        assert names.label("google/veo-3.1") == "google/veo-3.1" and names.label("acme/v") == "acme/v"
        assert names.label("made/up") == "other"

    def test_labels_are_cut(self) -> None:
        assert ModelLabels().label("x" * 1000) == "x" * metrics.MODEL_LABEL_CHARS

    def test_the_metrics_bound_their_model_label(self, labels: ModelLabels) -> None:
        """Whoever calls ``labels(model=…)`` (steps, engine, budget) gets the bounded value."""
        before = sample("videoworker_provider_submits_total", model="other", outcome="accepted")
        for i in range(5):
            metrics.SUBMITS.labels(model=f"hostile-{i}-" + "y" * 500, outcome="accepted").inc()
        metrics.SUBMITS.labels("positional-too-" + "q" * 100, "accepted").inc()
        assert sample("videoworker_provider_submits_total", model="other", outcome="accepted") - before == 3
        kept = ("hostile-0-" + "y" * 500)[: metrics.MODEL_LABEL_CHARS]
        assert sample("videoworker_provider_submits_total", model=kept, outcome="accepted") >= 1
        metrics.JOB_DURATION.labels(model="hostile-9").observe(1)
        assert sample("videoworker_job_duration_seconds_count", model="other") >= 1

    def test_poll_outcomes_are_bounded(self) -> None:
        before = sample("videoworker_polls_total", outcome="other")
        metrics.POLLS.labels(outcome="x" * 10_000).inc()
        metrics.POLLS.labels(outcome="completed").inc()
        assert sample("videoworker_polls_total", outcome="other") - before == 1

    async def test_the_catalogue_names_the_models(self, labels: ModelLabels) -> None:
        class Lister:
            async def video_models(self) -> list[VideoModel]:
                return [VideoModel(id="google/veo-3.1")]

        await CatalogueCache(Lister(), ttl=600).get()
        assert metrics.model_label("google/veo-3.1") == "google/veo-3.1"
        assert metrics.model_label("not/listed") == "other"
