"""The OpenRouter video API client: the only code in videoworker that talks HTTP to OpenRouter.

It owns one long-lived :class:`httpx.AsyncClient` (explicit timeouts and limits, no
redirects), sends the API key to the configured OpenRouter origin only, and turns every
answer into typed data (:mod:`videoworker.provider.models`) and every failure into the exception that
tells the caller what to do next (:mod:`videoworker.errors`; the rules live in
:mod:`videoworker.provider.answers`):

================================================  ===================  ===========================
outcome                                           submit               GET (poll, content, models)
================================================  ===================  ===========================
connect error, ConnectTimeout, PoolTimeout        RetryableError       RetryableError
408, 429, 503                                     RetryableError       RetryableError
timeout, reset or protocol error after sending    AmbiguousSubmit      RetryableError
500, 502, 504, 524, 529, any other 5xx            AmbiguousSubmit      RetryableError
2xx without a readable job id                     AmbiguousSubmit      RetryableError (no JSON)
400, 401, 402, 403, 404, 413, 422, other 4xx/3xx  PermanentError       PermanentError
================================================  ===================  ===========================

Every error carries ``status``, ``retry_after`` (from ``Retry-After``) and ``endpoint``
(``submit``, ``poll``, ``content`` or ``models``); no message ever carries the API key.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import ValidationError

from videoworker.errors import (
    AmbiguousSubmit,
    ConfigError,
    PermanentError,
    ProviderError,
    RetryableError,
)
from videoworker.provider.answers import (
    encode_body,
    error_detail,
    is_job_id,
    job_path,
    json_or_none,
    parse_job,
    parse_retry_after,
    shorten,
    status_error_class,
    transport_error_class,
)
from videoworker.provider.download import read_capped, save
from videoworker.provider.models import Download, Job, VideoModel

log = logging.getLogger(__name__)

_ACCEPTED = frozenset({200, 201, 202})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MESSAGE_LIMIT = 600
_ERROR_BODY_LIMIT = 64 * 1024

_Origin = tuple[str, str, int]


def _origin(url: httpx.URL) -> _Origin:
    return (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 0))


class _OriginBearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer …`` to requests for the OpenRouter origin, and to no other host.

    A signed storage URL or any other host reached through the same client never sees the key.
    """

    def __init__(self, api_key: str, origin: _Origin) -> None:
        self._header = f"Bearer {api_key}"
        self._origin = origin

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if _origin(request.url) == self._origin:
            request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return f"_OriginBearerAuth(origin={self._origin!r})"


class OpenRouterClient:
    """Typed calls to OpenRouter's video API. Build one per process and close it at shutdown.

    ``transport`` is for tests (``httpx.MockTransport``) and the simulator.
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
    ) -> None:
        base = _base_url(base_url)
        self._base_origin = _origin(base)
        self._secret = api_key or ""
        self._http = httpx.AsyncClient(
            base_url=base,
            auth=_OriginBearerAuth(api_key, self._base_origin) if api_key else None,
            headers=_attribution_headers(app_title, app_url),
            timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            transport=transport,
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
        response = await self._send("submit", where, "POST", "/videos", content=content, headers=headers)
        self._raise_for_status("submit", where, response, response.content)
        job = parse_job(response.content, keep_bare_id=True) if response.status_code in _ACCEPTED else None
        if job is None or not is_job_id(job.id):
            detail = f"HTTP {response.status_code} but the answer carries no usable job id; it may have been accepted"
            raise AmbiguousSubmit(f"{where}: {detail}", status=response.status_code, endpoint="submit")
        return job

    async def poll(self, job_id: str) -> Job:
        """GET the job's current state; called on the poll schedule until :attr:`Job.is_terminal`."""
        path = job_path(job_id, "poll")
        where = f"poll GET {path}"
        response = await self._send("poll", where, "GET", path)
        self._raise_for_status("poll", where, response, response.content)
        job = parse_job(response.content, keep_bare_id=False)
        if job is None:
            raise RetryableError(f"{where}: answer is not a job", status=response.status_code, endpoint="poll")
        return job

    async def download(self, job_id: str, index: int, dest: Path, *, max_bytes: int) -> Download:
        """Stream output ``index`` of a completed job to ``dest`` and fsync it; called once per output.

        ``dest`` is the caller's temporary path (renamed into place later) and is deleted on
        any failure. The file is checked as it arrives: at most ``max_bytes``, exactly the
        announced ``Content-Length``, and an MP4 (``ftyp`` at byte 4), so a JSON error body
        is never stored as a video. HTTP failures raise as for :meth:`poll`; a cut, oversized
        or non-MP4 body raises :class:`DownloadError`.
        """
        path = f"{job_path(job_id, 'content')}/content"
        where = f"content GET {path}?index={index}"
        if index < 0 or max_bytes <= 0:
            raise PermanentError(f"{where}: index must be >= 0 and max_bytes > 0", endpoint="content")
        try:
            return await self._download(where, path, index, dest, max_bytes)
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink(missing_ok=True)
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
                log.warning("skipping a video model entry that does not parse: %.100r", name)
        return models

    async def models(self, output_modalities: str | None = "video") -> list[dict[str, Any]]:
        """List the general models (``GET /models``), filtered to ``output_modalities`` unless ``None``.

        Used by ``check`` and diagnostics; the capability check relies on :meth:`video_models`.
        """
        params = {"output_modalities": output_modalities} if output_modalities else None
        return [entry for entry in await self._get_data("/models", params) if isinstance(entry, dict)]

    # --- plumbing ------------------------------------------------------------------------

    async def _send(
        self,
        endpoint: str,
        where: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self._http.request(method, path, params=params, content=content, headers=headers)
        except httpx.RequestError as exc:
            raise self._request_error(endpoint, where, exc) from None

    def _request_error(self, endpoint: str, where: str, exc: httpx.RequestError) -> ProviderError:
        """The typed error for a request that got no HTTP answer (httpx text carries the URL only)."""
        cls = transport_error_class(endpoint, exc)
        text = str(exc).strip()
        message = f"{where}: {type(exc).__name__}" + (f": {text}" if text else "")
        return cls(self._clean(message), endpoint=endpoint)

    def _raise_for_status(self, endpoint: str, where: str, response: httpx.Response, body: bytes) -> None:
        """Raise the typed error for a non-2xx answer; ``body`` is the (possibly capped) answer body."""
        status = response.status_code
        if 200 <= status < 300:
            return
        cls = status_error_class(endpoint, status)
        detail = error_detail(body)
        message = f"{where}: HTTP {status}" + (f": {detail}" if detail else "")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise cls(self._clean(message), status=status, retry_after=retry_after, endpoint=endpoint)

    def _clean(self, message: str) -> str:
        # The provider's own text might echo the key back; never let it into a message.
        if len(self._secret) >= 6:
            message = message.replace(self._secret, "***")
        return shorten(message, _MESSAGE_LIMIT)

    async def _get_data(self, path: str, params: Mapping[str, str] | None) -> list[Any]:
        where = f"models GET {path}"
        response = await self._send("models", where, "GET", path, params=params)
        self._raise_for_status("models", where, response, response.content)
        data = json_or_none(response.content)
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise RetryableError(f"{where}: answer has no data list", status=response.status_code, endpoint="models")
        return entries

    async def _download(self, where: str, path: str, index: int, dest: Path, max_bytes: int) -> Download:
        # identity: Content-Length then counts the bytes we store, and no decompression bomb.
        headers = {"Accept-Encoding": "identity"}
        try:
            async with self._http.stream("GET", path, params={"index": index}, headers=headers) as response:
                if not response.is_success:
                    body = await read_capped(response, _ERROR_BODY_LIMIT)
                    self._raise_for_status("content", where, response, body)
                return await save(where, response, dest, max_bytes)
        except httpx.RequestError as exc:  # before any body byte: save() handles cuts mid-body
            raise self._request_error("content", where, exc) from None


# --- helpers ---------------------------------------------------------------------------------


def _base_url(base_url: str) -> httpx.URL:
    # The message never echoes the URL: it could carry credentials in its userinfo.
    problem = ConfigError("openrouter_base_url must be an http(s) URL such as https://openrouter.ai/api/v1")
    try:
        base = httpx.URL(base_url.rstrip("/"))
    except httpx.InvalidURL:
        raise problem from None
    if base.scheme not in _DEFAULT_PORTS or not base.host:
        raise problem
    return base


def _attribution_headers(app_title: str | None, app_url: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if app_title:
        headers["X-OpenRouter-Title"] = app_title
        headers["X-Title"] = app_title  # the older name, still read by OpenRouter
    if app_url:
        headers["HTTP-Referer"] = app_url
    return headers
