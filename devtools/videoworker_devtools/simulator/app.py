"""The simulator's HTTP face: the aiohttp application and the ways to run it inside a loop.

This module owns the handlers serving ``/api/v1/videos*``, ``/api/v1/videos/models`` and
``/api/v1/models``, the unauthenticated admin endpoints under ``/_sim/``, the middleware
(latency, API key, JSON errors, request log), fault answers, :func:`create_app`,
:func:`serve` and :func:`bound_port`. ``videoworker simulate`` (:mod:`videoworker_devtools.cli`) runs
it as a process; :mod:`videoworker_devtools.simulator.thread` runs it from synchronous code.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from videoworker_devtools.simulator import callbacks, catalogue, hostile
from videoworker_devtools.simulator.config import SimConfig
from videoworker_devtools.simulator.state import Job, SimState
from videoworker_devtools.simulator.validation import check_submit

API_PREFIX = "/api/v1"
ADMIN_PREFIX = "/_sim"
# 5xx answers that, on submit, come after the job was created: the ambiguous case.
_AFTER_CREATE_STATUSES = frozenset({500, 502, 504})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_INJECTED_MESSAGES = {
    429: "Rate limit exceeded (simulated)",
    500: "Internal Server Error (simulated)",
    502: "Provider returned error (simulated)",
    503: "Service temporarily unavailable (simulated)",
    504: "Gateway timeout (simulated)",
}


# --- HTTP helpers ----------------------------------------------------------------------

STATE_KEY = web.AppKey("sim_state", SimState)
_ABORTED = web.RequestKey("sim_aborted", bool)  # the connection was cut, nothing was answered
_TRUNCATED = web.RequestKey("sim_truncated", bool)  # a download was cut after a full Content-Length


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An error in OpenRouter's shape: ``{"error": {"code": status, "message": ...}}``."""
    body = {"error": {"code": status, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` value: integer seconds when whole (``"1"``), else the decimal (``"0.5"``)."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _injected(state: SimState, status: int) -> web.Response:
    """Answer with an injected error; 429 and 503 carry ``Retry-After``."""
    state.counters["errors_injected"] += 1
    headers = {}
    if status in _RETRY_AFTER_STATUSES:
        headers["Retry-After"] = retry_after_header(state.config.retry_after)
    message = _INJECTED_MESSAGES.get(status, f"HTTP {status} (simulated)")
    return _error(status, hostile.error_message(message, state.config.hostile), headers)


def _abort(request: web.Request) -> web.Response:
    """Cut the connection without answering; the returned response is never sent."""
    request[_ABORTED] = True
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}{API_PREFIX}"


def _job_view(job: Job, base: str, now: float) -> dict[str, Any]:
    """The poll answer for ``job``: fields appear as the job progresses."""
    status = job.status(now)
    view: dict[str, Any] = {
        "id": job.id,
        "polling_url": f"{base}/videos/{job.id}",
        "status": status,
        "generation_id": job.generation_id,
    }
    if status == "completed":
        view["unsigned_urls"] = [f"{base}/videos/{job.id}/content?index={i}" for i in range(job.outputs)]
        view["usage"] = {"cost": job.cost, "is_byok": False}
    elif status == "failed":
        view["error"] = job.error
    return view


def _needs_auth(path: str) -> bool:
    return path.startswith(f"{API_PREFIX}/videos") and path != f"{API_PREFIX}/videos/models"


def _authorized(request: web.Request, api_key: str) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip(), api_key)


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """For ``/api/v1``: add latency, check the key, answer JSON errors, log the request."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    state = request.app[STATE_KEY]
    low, high = state.config.latency
    if high > 0:
        await asyncio.sleep(state.rng.uniform(low, high))
    response: web.StreamResponse
    if _needs_auth(request.path) and not _authorized(request, state.config.api_key):
        response = _error(401, "No auth credentials found or invalid API key")
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _error(exc.status, exc.reason)
    status = 0 if request.get(_ABORTED) else response.status
    entry = {
        "t": time.time(),
        "method": request.method,
        "path": request.path,
        "status": status,
        "retry_after": response.headers.get("Retry-After"),
    }
    if request.get(_TRUNCATED):
        entry["truncated"] = True
    if request.method == "POST":
        entry["prompt"] = await _prompt_of(request)
    state.requests.append(entry)
    return response


async def _prompt_of(request: web.Request) -> str | None:
    """The submitted prompt, so tests can tie each submit attempt to its request."""
    try:
        body = json.loads(await request.read())
    except (ValueError, ConnectionError):
        return None
    prompt = body.get("prompt") if isinstance(body, dict) else None
    return prompt if isinstance(prompt, str) else None


# --- API handlers ----------------------------------------------------------------------


async def _submit(request: web.Request) -> web.StreamResponse:
    """``POST /videos``: pre-create faults, validation, job creation, post-create faults, 202."""
    state = request.app[STATE_KEY]
    injected = state.draw_error()
    if injected is not None and injected not in _AFTER_CREATE_STATUSES:
        return _injected(state, injected)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "Request body must be valid JSON")
    model, problem = check_submit(state, body)
    if model is None or problem is not None:
        return _error(400, problem or "invalid request")
    job = state.create_job(body, model)
    if isinstance(body.get("callback_url"), str):  # even when the answer is lost below, as OpenRouter would
        callbacks.schedule(state, job, body["callback_url"], _base_url(request))
    if injected is not None:  # the provider accepted the job, then the answer failed
        return _injected(state, injected)
    if state.chance(state.config.submit_reset_rate):
        state.counters["resets"] += 1
        return _abort(request)
    answer = {
        "id": job.id,
        "polling_url": f"{_base_url(request)}/videos/{job.id}",
        "status": "pending",
    }
    return web.json_response(answer, status=202)


async def _poll(request: web.Request) -> web.StreamResponse:
    """``GET /videos/{job_id}``: the job as it stands now."""
    state = request.app[STATE_KEY]
    injected = state.draw_error()
    if injected is not None:
        return _injected(state, injected)
    state.counters["polls"] += 1
    job = state.jobs.get(request.match_info["job_id"])
    if job is None:
        return _error(404, "Video generation job not found")
    job.polls += 1
    view = _job_view(job, _base_url(request), time.monotonic())
    bent = hostile.poll_answer(view, state.config.hostile)  # a response is an empty mapping: falsy
    return web.json_response(view) if bent is None else bent


async def _content(request: web.Request) -> web.StreamResponse:
    """``GET /videos/{job_id}/content?index=N``: the MP4, or cut short when a fault says so."""
    state = request.app[STATE_KEY]
    injected = state.draw_error()
    if injected is not None:
        return _injected(state, injected)
    job = state.jobs.get(request.match_info["job_id"])
    if job is None:
        return _error(404, "Video generation job not found")
    raw = request.query.get("index", "0")
    if not raw.isdigit():
        return _error(400, f"index must be a non-negative integer, got {raw!r}")
    index = int(raw)
    if job.status(time.monotonic()) != "completed" or index >= job.outputs:
        return _error(404, "Video content not found (job not completed or index out of range)")
    data = state.video(job, index)
    state.counters["downloads"] += 1
    job.downloads += 1
    if state.chance(state.config.truncate_rate):
        state.counters["truncations"] += 1
        request[_TRUNCATED] = True  # logged, so a test can tell a cut body from a delivered one
        return await _truncated(request, data, state.rng.randint(1, len(data) - 1))
    bent = await hostile.content_answer(request, data, state.config.hostile)
    return web.Response(body=data, content_type="video/mp4") if bent is None else bent


async def _truncated(request: web.Request, data: bytes, cut: int) -> web.StreamResponse:
    """Send the full ``Content-Length`` but only ``cut`` bytes, then close the connection."""
    response = web.StreamResponse(status=200)
    response.content_type = "video/mp4"
    response.content_length = len(data)
    await response.prepare(request)
    await response.write(data[:cut])
    if request.transport is not None:
        request.transport.close()  # close() flushes what was written; abort() would not
    return response


async def _video_models(request: web.Request) -> web.StreamResponse:
    """``GET /videos/models``: the configured video catalogue."""
    config = request.app[STATE_KEY].config
    bent = hostile.models_answer(config.hostile)
    return web.json_response({"data": config.models}) if bent is None else bent


async def _models(request: web.Request) -> web.StreamResponse:
    """``GET /models[?output_modalities=video]``: the general list, filtered like OpenRouter."""
    models = request.app[STATE_KEY].config.models
    data = catalogue.general_models(models, request.query.get("output_modalities"))
    return web.json_response({"data": data})


# --- admin handlers --------------------------------------------------------------------


async def _admin_stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[STATE_KEY].stats())


async def _admin_get_config(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[STATE_KEY].config.to_json())


async def _admin_set_config(request: web.Request) -> web.StreamResponse:
    """``POST /_sim/config``: apply the given knobs, answer the effective config (400 if bad)."""
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            return _error(400, "body must be a JSON object of settings")
        config = request.app[STATE_KEY].configure(changes)
    except (TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        return _error(400, str(exc))
    return web.json_response(config.to_json())


async def _admin_reset(request: web.Request) -> web.StreamResponse:
    request.app[STATE_KEY].reset()
    return web.json_response({"reset": True})


# --- running ---------------------------------------------------------------------------


def create_app(config: SimConfig | None = None) -> web.Application:
    """Build the simulator app; each app has its own jobs, counters and RNG."""
    app = web.Application(middlewares=[_api_middleware])
    app[STATE_KEY] = SimState(config or SimConfig())
    routes = app.router
    routes.add_get(f"{API_PREFIX}/videos/models", _video_models)  # before {job_id}
    routes.add_post(f"{API_PREFIX}/videos", _submit)
    routes.add_get(f"{API_PREFIX}/videos/{{job_id}}", _poll)
    routes.add_get(f"{API_PREFIX}/videos/{{job_id}}/content", _content)
    routes.add_get(f"{API_PREFIX}/models", _models)
    routes.add_get(f"{ADMIN_PREFIX}/stats", _admin_stats)
    routes.add_get(f"{ADMIN_PREFIX}/config", _admin_get_config)
    routes.add_post(f"{ADMIN_PREFIX}/config", _admin_set_config)
    routes.add_post(f"{ADMIN_PREFIX}/reset", _admin_reset)
    return app


async def serve(host: str = "127.0.0.1", port: int = 0, config: SimConfig | None = None) -> web.AppRunner:
    """Start the simulator on the running loop; ``await runner.cleanup()`` stops it.

    With ``port=0`` the OS picks a free port: read it with :func:`bound_port`.
    """
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a runner started by :func:`serve` listens on."""
    return int(runner.addresses[0][1])
