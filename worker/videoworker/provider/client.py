"""The OpenRouter video API client: the only code in videoworker that talks HTTP to OpenRouter.

It owns one long-lived :class:`~videoworker.provider.sender.Sender` (explicit timeouts and
limits, no redirects; sent through aiohttp, :mod:`videoworker.provider.transport`), which sends
the API key to the configured OpenRouter base URL only, and it turns every answer into typed data
(:mod:`videoworker.provider.models`) and every failure into the exception that tells the
caller what to do next (:mod:`videoworker.errors`; the rules live in
:mod:`videoworker.provider.answers`):

================================================  ===================  ===========================
outcome                                           submit               GET (poll, content, models)
================================================  ===================  ===========================
connect error, ConnectTimeout, PoolTimeout        RetryableError       RetryableError
408, 429, 503                                     RetryableError       RetryableError
timeout, reset or protocol error after sending    AmbiguousSubmit      RetryableError
500, 502, 504, 524, 529, any other 5xx            AmbiguousSubmit      RetryableError
2xx without a readable job id                     AmbiguousSubmit      RetryableError (no JSON)
2xx over 1 MiB, nested over 64 deep, or encoded   AmbiguousSubmit      PermanentError
400, 401, 402, 403, 404, 413, 422, other 4xx/3xx  PermanentError       PermanentError
================================================  ===================  ===========================

Every error carries ``status``, ``retry_after`` (from ``Retry-After``, capped at
``max_retry_after``) and ``endpoint`` (``submit``, ``poll``, ``content`` or ``models``);
no message ever carries the API key, and the provider's text in it is scrubbed
(:func:`~videoworker.provider.scrub.scrub`).

Answers are untrusted (:mod:`videoworker.provider.untrusted`). Every request asks for
``Accept-Encoding: identity`` and bodies are read raw. An oversized, too deep or
compressed answer is the provider misbehaving, not a passing fault, so a GET that gets
one fails for good; a submit that gets one may still have created the job. A completed
job listing more than ``max_outputs_per_job`` outputs is refused before anything is
downloaded, and a download must finish within ``download_deadline``. These bounds come
from :class:`ProviderLimits`, built from the settings by whoever builds the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import ValidationError

from videoworker.errors import AmbiguousSubmit, DownloadError, PermanentError, ProviderError, RetryableError
from videoworker.provider.answers import (
    encode_body,
    error_detail,
    is_job_id,
    job_path,
    parse_job,
    parse_retry_after,
    status_error_class,
    transport_error_class,
)
from videoworker.provider.bodies import read_answer, read_capped
from videoworker.provider.download import save
from videoworker.provider.models import Download, Job, VideoModel
from videoworker.provider.origin import attribution_headers, base_url_of, origin
from videoworker.provider.scrub import ERROR_TEXT_LIMIT, scrub
from videoworker.provider.sender import Sender
from videoworker.provider.transport import AiohttpTransport
from videoworker.provider.untrusted import MAX_ANSWER_BYTES, AnswerRefused, ProviderLimits, load_json

log = logging.getLogger(__name__)

_ACCEPTED = frozenset({200, 201, 202})
_ERROR_BODY_LIMIT = 64 * 1024


class OpenRouterClient:
    """Typed calls to OpenRouter's video API. Build one per process and close it at shutdown.

    ``transport`` is for tests (``httpx.MockTransport``) and the simulator; ``limits``
    carries the settings that bound what the provider may send
    (:meth:`ProviderLimits.from_settings`), the settings' defaults when omitted.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        max_connections: int = 256,
        app_title: str | None = "videoworker",
        app_url: str | None = None,
        limits: ProviderLimits | None = None,
    ) -> None:
        base = base_url_of(base_url)
        self._base_origin = origin(base)
        self._secret = api_key or ""
        self.limits = limits or ProviderLimits()
        self._http = Sender(
            base,
            api_key,
            # identity: no decompression bomb, and Content-Length counts the bytes we keep
            {**attribution_headers(app_title, app_url), "Accept-Encoding": "identity"},
            httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout),
            transport or AiohttpTransport(max_connections),
        )

    def __repr__(self) -> str:
        scheme, host, port = self._base_origin
        return f"OpenRouterClient(origin='{scheme}://{host}:{port}')"

    async def aclose(self) -> None:
        """Close the connection pool. Called once at shutdown, after the last in-flight call."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- calls ---------------------------------------------------------------------------

    async def submit(self, body: Mapping[str, Any]) -> Job:
        """POST a generation request; called once per job, after the ledger recorded ``submitting``.

        This call costs money and has no idempotency key, so anything that may have reached
        the provider without a readable answer is :class:`AmbiguousSubmit`, never retryable.
        Cancelling it after the request was sent leaves the outcome just as unknown.
        """
        content = encode_body(body)
        where = "submit POST /videos"
        headers = {"Content-Type": "application/json"}
        status, data = await self._call("submit", where, "POST", "/videos", content=content, headers=headers)
        job = parse_job(data, keep_bare_id=True) if status in _ACCEPTED else None
        if job is None or not is_job_id(job.id):
            detail = f"HTTP {status} but the answer carries no usable job id; it may have been accepted"
            raise AmbiguousSubmit(f"{where}: {detail}", status=status, endpoint="submit")
        return job

    async def poll(self, job_id: str) -> Job:
        """GET the job's current state; called on the poll schedule until :attr:`Job.is_terminal`.

        A completed job listing more than ``max_outputs`` outputs raises
        :class:`PermanentError`: nothing of it is downloaded.
        """
        path = job_path(job_id, "poll")
        where = f"poll GET {path}"
        status, data = await self._call("poll", where, "GET", path)
        job = parse_job(data, keep_bare_id=False)
        if job is None:
            raise RetryableError(f"{where}: answer is not a job", status=status, endpoint="poll")
        listed = max(len(job.unsigned_urls), len(job.urls))
        if job.status == "completed" and listed > self.limits.max_outputs:
            detail = f"the job lists {listed} outputs, over max_outputs_per_job={self.limits.max_outputs}"
            raise PermanentError(f"{where}: {detail}; nothing downloaded", status=status, endpoint="poll")
        return job

    async def download(self, job_id: str, index: int, dest: Path, *, max_bytes: int) -> Download:
        """Stream output ``index`` of a completed job to ``dest`` and fsync it; called once per output.

        ``dest`` is the caller's temporary path (renamed into place later) and is deleted on
        any failure. The file is checked as it arrives: at most ``max_bytes``, exactly the
        announced ``Content-Length``, and an MP4 (``ftyp`` at byte 4), so a JSON error body
        is never stored as a video. HTTP failures raise as for :meth:`poll`; a cut, oversized
        or non-MP4 body raises :class:`DownloadError`, and so does one not finished within
        ``download_deadline`` seconds of the request (retryable).
        """
        path = f"{job_path(job_id, 'content')}/content"
        where = f"content GET {path}?index={index}"
        if not 0 <= index < self.limits.max_outputs or max_bytes <= 0:
            detail = f"index must be in [0, {self.limits.max_outputs}) and max_bytes > 0"
            raise PermanentError(f"{where}: {detail}", endpoint="content")
        deadline = asyncio.timeout(self.limits.download_deadline)
        try:
            async with deadline:
                return await self._download(where, path, index, dest, max_bytes)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                dest.unlink(missing_ok=True)
            if isinstance(exc, TimeoutError) and deadline.expired():
                limit = f"download_deadline={self.limits.download_deadline:g}s"
                raise DownloadError(f"{where}: not finished within {limit}", retryable=True) from None
            raise

    async def video_models(self) -> list[VideoModel]:
        """List the video models and their capabilities (``GET /videos/models``).

        Called at start and on a refresh timer; the capability check reads the result. An
        entry that cannot be read is skipped with a warning rather than hiding every model.
        """
        models: list[VideoModel] = []
        for entry in await self._get_data("/videos/models", None):
            try:
                models.append(VideoModel.model_validate(entry))
            except ValidationError:
                name = entry.get("id") if isinstance(entry, dict) else type(entry).__name__
                log.warning("skipping a video model entry that does not parse: %.100r", scrub(str(name), 100))
        return models

    async def models(self, output_modalities: str | None = "video") -> list[dict[str, Any]]:
        """List the general models (``GET /models``), filtered to ``output_modalities`` unless ``None``.

        Used by ``check`` and diagnostics; the capability check relies on :meth:`video_models`.
        """
        params = {"output_modalities": output_modalities} if output_modalities else None
        return [entry for entry in await self._get_data("/models", params) if isinstance(entry, dict)]

    # --- plumbing ------------------------------------------------------------------------

    async def _call(
        self,
        endpoint: str,
        where: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send a request and read its JSON answer: ``(status, value)``, ``value`` None when the 2xx is not JSON.

        A non-2xx raises its typed error; a 2xx answer too big, too deep or encoded raises
        :meth:`_refused`. Only the first bytes of an error body are read.
        """
        status = 0
        try:
            async with self._http.stream(method, path, params=params, content=content, headers=headers) as response:
                status = response.status_code
                if not response.is_success:
                    self._raise_for_status(endpoint, where, response, await read_capped(response, _ERROR_BODY_LIMIT))
                body = await read_answer(response, MAX_ANSWER_BYTES)
            return status, load_json(body)
        except httpx.RequestError as exc:
            raise self._request_error(endpoint, where, exc) from None
        except AnswerRefused as exc:
            raise self._refused(endpoint, where, status, exc) from None

    def _refused(self, endpoint: str, where: str, status: int, exc: AnswerRefused) -> ProviderError:
        # A broken or hostile answer will not mend on a retry; a submit's job may exist all the same.
        cls = AmbiguousSubmit if endpoint == "submit" else PermanentError
        return cls(self._clean(f"{where}: {exc}"), status=status, endpoint=endpoint)

    def _request_error(self, endpoint: str, where: str, exc: httpx.RequestError) -> ProviderError:
        """The typed error for a request that got no HTTP answer (httpx text carries the URL only)."""
        cls = transport_error_class(endpoint, exc)
        text = str(exc).strip()
        message = f"{where}: {type(exc).__name__}" + (f": {text}" if text else "")
        return cls(self._clean(message), endpoint=endpoint)

    def _raise_for_status(self, endpoint: str, where: str, response: httpx.Response, body: bytes) -> None:
        """Raise the typed error for a non-2xx answer; ``body`` is the (capped) answer body."""
        status = response.status_code
        if 200 <= status < 300:
            return
        cls = status_error_class(endpoint, status)
        detail = error_detail(body)
        message = f"{where}: HTTP {status}" + (f": {detail}" if detail else "")
        retry_after = parse_retry_after(response.headers.get("Retry-After"), cap=self.limits.max_retry_after)
        raise cls(self._clean(message), status=status, retry_after=retry_after, endpoint=endpoint)

    def _clean(self, message: str) -> str:
        # The provider's own text might echo the key back; never let it into a message.
        if len(self._secret) >= 6:
            message = message.replace(self._secret, "***")
        return scrub(message, ERROR_TEXT_LIMIT)

    async def _get_data(self, path: str, params: Mapping[str, str] | None) -> list[Any]:
        where = f"models GET {path}"
        status, data = await self._call("models", where, "GET", path, params=params)
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise RetryableError(f"{where}: answer has no data list", status=status, endpoint="models")
        return entries

    async def _download(self, where: str, path: str, index: int, dest: Path, max_bytes: int) -> Download:
        try:
            async with self._http.stream("GET", path, params={"index": index}) as response:
                if not response.is_success:
                    body = await read_capped(response, _ERROR_BODY_LIMIT)
                    self._raise_for_status("content", where, response, body)
                return await save(where, response, dest, max_bytes, self.limits.file_mode)
        except httpx.RequestError as exc:  # before any body byte: save() handles cuts mid-body
            raise self._request_error("content", where, exc) from None
