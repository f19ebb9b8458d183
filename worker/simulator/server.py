"""A local HTTP stand-in for OpenRouter's asynchronous video API, with fault injection.

This module owns the simulator's behaviour: the knobs (:class:`SimConfig`), the job
store and counters (:class:`SimState`), the aiohttp application (:func:`create_app`)
serving ``/api/v1/videos*``, ``/api/v1/videos/models`` and ``/api/v1/models`` plus the
unauthenticated admin endpoints under ``/_sim/``, and the ways to run it
(:func:`serve` inside a running loop, :class:`SimulatorThread` from synchronous code;
``videoworker simulate`` in ``worker/cli.py`` runs it as a process).

Jobs progress by wall clock and are never scanned: every request touches one job, found
by id, so thousands of concurrent polls stay cheap. Faults are drawn from one seeded RNG
so a test that sets ``seed`` sees the same sequence of faults on every run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import json
import random
import secrets
import string
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
from aiohttp import web
from aiohttp.typedefs import Handler

from worker.simulator import catalogue, mp4

API_PREFIX = "/api/v1"
ADMIN_PREFIX = "/_sim"
REQUEST_LOG_SIZE = 20_000
VIDEO_CACHE_SIZE = 1024  # videos kept in memory (~20 kB each); older ones are made again

_ALNUM = string.ascii_letters + string.digits
_PENDING_FRACTION = 0.1  # share of a job's duration spent "pending" before "in_progress"
# 5xx answers that, on submit, come after the job was created: the ambiguous case.
_AFTER_CREATE_STATUSES = frozenset({500, 502, 504})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_FAILURE_MESSAGES = (
    "Provider returned error: the video could not be generated (simulated)",
    "Content moderation: the prompt was flagged by the provider (simulated)",
    "Provider timeout while rendering the video (simulated)",
)
_INJECTED_MESSAGES = {
    429: "Rate limit exceeded (simulated)",
    500: "Internal Server Error (simulated)",
    502: "Provider returned error (simulated)",
    503: "Service temporarily unavailable (simulated)",
    504: "Gateway timeout (simulated)",
}


# --- configuration ---------------------------------------------------------------------


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return float(value)


def _rate(name: str, value: Any) -> float:
    rate = _number(name, value)
    if rate > 1.0:
        raise ValueError(f"{name} must be within [0, 1]")
    return rate


def _range(name: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{name} must be a pair [low, high]")
    low, high = _number(name, value[0]), _number(name, value[1])
    if low > high:
        raise ValueError(f"{name}: low must not exceed high")
    return (low, high)


def _statuses(name: str, value: Any) -> list[int]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{name} must be a non-empty list of HTTP statuses")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 599 for v in value):
        raise ValueError(f"{name} must hold 4xx/5xx statuses only")
    return list(value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1")
    return value


def _seed(name: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer or null")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _model_list(name: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in value):
        raise ValueError(f"{name} must be a list of video model objects with an 'id'")
    return value


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "api_key": _text,
    "job_seconds": _range,
    "failure_rate": _rate,
    "never_finish_rate": _rate,
    "error_rate": _rate,
    "error_statuses": _statuses,
    "retry_after": _number,
    "submit_reset_rate": _rate,
    "truncate_rate": _rate,
    "latency": _range,
    "outputs": _positive_int,
    "seed": _seed,
    "validate_capabilities": _flag,
    "models": _model_list,
}


@dataclass
class SimConfig:
    """Every knob of the simulator; validated and normalised when built.

    Change it at run time with ``POST /_sim/config`` (or :meth:`SimulatorThread.configure`):
    the server swaps in ``config.with_changes(...)``, so jobs already submitted keep the
    fate, duration and output count drawn when they were created.
    """

    api_key: str = "sim-key"
    job_seconds: tuple[float, float] = (2.0, 5.0)  #: job duration range, uniform
    failure_rate: float = 0.0  #: jobs that end ``failed``
    never_finish_rate: float = 0.0  #: jobs that stay ``in_progress`` forever
    error_rate: float = 0.0  #: submits, polls and downloads answered with an error status
    error_statuses: list[int] = field(default_factory=lambda: [429, 500, 502, 503])
    retry_after: float = 1.0  #: ``Retry-After`` seconds sent with 429 and 503
    submit_reset_rate: float = 0.0  #: submits that create the job, then cut the connection
    truncate_rate: float = 0.0  #: downloads cut short after a full ``Content-Length``
    latency: tuple[float, float] = (0.0, 0.0)  #: seconds added to every API answer, uniform
    outputs: int = 1  #: videos per job (``?index=N``)
    seed: int | None = None  #: RNG seed, for reproducible runs
    validate_capabilities: bool = False  #: 400 for options outside the model's lists
    models: list[dict[str, Any]] = field(default_factory=catalogue.default_video_models)

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            setattr(self, name, check(name, getattr(self, name)))

    def with_changes(self, changes: Mapping[str, Any]) -> SimConfig:
        """A new config with ``changes`` applied; ``ValueError``/``TypeError`` name a bad knob."""
        unknown = sorted(set(changes) - set(_CHECKS))
        if unknown:
            raise ValueError(f"unknown simulator setting(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (tuples become lists when serialised)."""
        return dataclasses.asdict(self)


# --- jobs and state --------------------------------------------------------------------


class Fate(enum.Enum):
    """How a job ends, drawn once at submit."""

    #: ends ``completed`` with ``outputs`` videos
    COMPLETE = "completed"
    #: ends ``failed`` with an error message
    FAIL = "failed"
    #: stays ``in_progress`` forever
    NEVER = "in_progress"


@dataclass(slots=True)
class Job:
    """One simulated generation job; its status is a pure function of the clock."""

    id: str
    generation_id: str
    body: dict[str, Any]
    submitted_at: float  # unix time, for reports
    started: float  # monotonic time, for progress
    duration: float
    fate: Fate
    outputs: int
    cost: float
    error: str | None = None
    polls: int = 0
    downloads: int = 0
    sizes: list[int] = field(default_factory=list)  # per output, once generated
    digests: list[str] = field(default_factory=list)  # sha256 hex per output, once generated

    def status(self, now: float) -> str:
        """``pending`` for 10 % of the duration, ``in_progress`` until it ends, then the fate."""
        elapsed = now - self.started
        if elapsed < self.duration * _PENDING_FRACTION:
            return "pending"
        if elapsed < self.duration:
            return "in_progress"
        return self.fate.value


class SimState:
    """The simulator's memory: config, RNG, jobs by id, counters and the request log.

    Lives on the event loop of the app that owns it; only that loop touches it.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._models_by_id = {m["id"]: m for m in config.models}
        self.rng = random.Random(config.seed)
        self.jobs: dict[str, Job] = {}
        self.counters = {
            "submits": 0,
            "polls": 0,
            "downloads": 0,
            "errors_injected": 0,
            "resets": 0,
            "truncations": 0,
        }
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._videos: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def configure(self, changes: Mapping[str, Any]) -> SimConfig:
        """Apply knob changes (``ValueError``/``TypeError`` if bad); a ``seed`` re-seeds the RNG."""
        self.config = self.config.with_changes(changes)
        self._models_by_id = {m["id"]: m for m in self.config.models}
        if "seed" in changes:
            self.rng = random.Random(self.config.seed)
        return self.config

    def reset(self) -> None:
        """Forget jobs, counters and the request log; re-seed the RNG from the config."""
        self.jobs.clear()
        self.counters = dict.fromkeys(self.counters, 0)
        self.requests.clear()
        self._videos.clear()
        self.rng = random.Random(self.config.seed)

    def video_model(self, model_id: str) -> dict[str, Any] | None:
        return self._models_by_id.get(model_id)

    def chance(self, rate: float) -> bool:
        """True with probability ``rate``; a zero rate draws nothing, so other draws stay put."""
        return rate > 0.0 and self.rng.random() < rate

    def draw_error(self) -> int | None:
        """The status of an injected error for this request, or ``None`` to answer normally."""
        if not self.chance(self.config.error_rate):
            return None
        return self.rng.choice(self.config.error_statuses)

    def create_job(self, body: dict[str, Any], model: dict[str, Any]) -> Job:
        """Store a new job, drawing its duration and fate now; counts as a submit."""
        cfg, rng, now = self.config, self.rng, time.time()
        roll = rng.random()
        fate = Fate.COMPLETE
        if roll < cfg.failure_rate:
            fate = Fate.FAIL
        elif roll < cfg.failure_rate + cfg.never_finish_rate:
            fate = Fate.NEVER
        job = Job(
            id=f"gen-vid-{int(now)}-{self._alnum(20)}",
            generation_id=f"gen-{int(now)}-{self._alnum(20)}",
            body=body,
            submitted_at=now,
            started=time.monotonic(),
            duration=rng.uniform(*cfg.job_seconds),
            fate=fate,
            outputs=cfg.outputs,
            cost=_cost(model, body, cfg.outputs),
            error=rng.choice(_FAILURE_MESSAGES) if fate is Fate.FAIL else None,
        )
        self.jobs[job.id] = job
        self.counters["submits"] += 1
        return job

    def video(self, job: Job, index: int) -> bytes:
        """Output ``index`` of a completed job; the first call also records every output's hash."""
        if not job.digests:
            for data in (self._generate(job.id, i) for i in range(job.outputs)):
                job.sizes.append(len(data))
                job.digests.append(hashlib.sha256(data).hexdigest())
        return self._generate(job.id, index)

    def _generate(self, job_id: str, index: int) -> bytes:
        """The video bytes, from a bounded LRU: they are deterministic, so evicting is safe."""
        key = (job_id, index)
        data = self._videos.get(key)
        if data is not None:
            self._videos.move_to_end(key)
            return data
        data = self._videos[key] = mp4.make_video(job_id, index)
        if len(self._videos) > VIDEO_CACHE_SIZE:
            self._videos.popitem(last=False)
        return data

    def stats(self) -> dict[str, Any]:
        """Counters, every job (with output hashes once completed) and the request log."""
        now = time.monotonic()
        jobs = {job_id: self._job_stats(job, now) for job_id, job in self.jobs.items()}
        return {**self.counters, "jobs": jobs, "requests": list(self.requests)}

    def _job_stats(self, job: Job, now: float) -> dict[str, Any]:
        status = job.status(now)
        if status == "completed" and not job.digests:
            self.video(job, 0)  # records the hashes; regenerating known videos would make stats O(n) slow
        return {
            "status": status,
            "body": job.body,
            "submitted_at": job.submitted_at,
            "sha256": list(job.digests),
            "bytes": list(job.sizes),
            "polls": job.polls,
            "downloads": job.downloads,
        }

    def _alnum(self, n: int) -> str:
        return "".join(self.rng.choices(_ALNUM, k=n))


def _cost(model: dict[str, Any], body: dict[str, Any], outputs: int) -> float:
    """USD cost from the model's ``pricing_skus``: per second, per resolution when listed."""
    skus = model.get("pricing_skus") or {}
    price = skus.get(f"per-video-second-{body.get('resolution')}") or skus.get("per-video-second")
    seconds = body.get("duration")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        durations = model.get("supported_durations") or [5]
        seconds = durations[0]
    try:
        return round(float(price or 0) * float(seconds) * outputs, 6)
    except (TypeError, ValueError):
        return 0.0


# --- request validation ----------------------------------------------------------------

_CAPABILITY_FIELDS = {
    "duration": "supported_durations",
    "resolution": "supported_resolutions",
    "aspect_ratio": "supported_aspect_ratios",
    "size": "supported_sizes",
}


def _check_submit(state: SimState, body: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The video model of a submit body, or the 400 message explaining why it is refused."""
    if not isinstance(body, dict):
        return None, "Request body must be a JSON object"
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        return None, "'model' is required and must be a string"
    model = state.video_model(model_id)
    if model is None:
        if any(m["id"] == model_id for m in catalogue.TEXT_MODELS):
            return None, f"Model {model_id} does not support video generation"
        return None, f"Model {model_id} is not a valid video model ID"
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return None, "'prompt' must be a string"
    if not prompt and not body.get("frame_images") and not body.get("input_references"):
        return None, "'prompt' is required unless frame_images or input_references are given"
    if state.config.validate_capabilities:
        return model, _check_capabilities(model, body)
    return model, None


def _check_capabilities(model: dict[str, Any], body: dict[str, Any]) -> str | None:
    """Refuse options the model does not advertise; a null list means "not restricted"."""
    for option, listing in _CAPABILITY_FIELDS.items():
        allowed = model.get(listing)
        if option in body and allowed is not None and body[option] not in allowed:
            return f"{option}={body[option]!r} is not supported by {model['id']} (allowed: {allowed})"
    frames = model.get("supported_frame_images")
    for frame in body.get("frame_images") or []:
        kind = frame.get("frame_type") if isinstance(frame, dict) else None
        if frames is not None and kind not in frames:
            return f"frame_type={kind!r} is not supported by {model['id']}"
    return None


# --- HTTP helpers ----------------------------------------------------------------------

STATE_KEY = web.AppKey("sim_state", SimState)
_ABORTED = web.RequestKey("sim_aborted", bool)  # the connection was cut, nothing was answered


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
    return _error(status, _INJECTED_MESSAGES.get(status, f"HTTP {status} (simulated)"), headers)


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
    model, problem = _check_submit(state, body)
    if model is None or problem is not None:
        return _error(400, problem or "invalid request")
    job = state.create_job(body, model)
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
    return web.json_response(_job_view(job, _base_url(request), time.monotonic()))


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
        return await _truncated(request, data, state.rng.randint(1, len(data) - 1))
    return web.Response(body=data, content_type="video/mp4")


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
    return web.json_response({"data": request.app[STATE_KEY].config.models})


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


class SimulatorThread:
    """The simulator on its own thread and event loop, for synchronous tests and benchmarks.

    ``with SimulatorThread(SimConfig(job_seconds=(0.1, 0.2))) as sim: ...`` starts it on a
    free port of 127.0.0.1; ``sim.base_url`` is the OpenRouter base URL to give a client.
    """

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimConfig()
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._serving = False
        self._failure: OSError | None = None
        self._http: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}{API_PREFIX}"

    @property
    def admin_url(self) -> str:
        return f"{self.url}{ADMIN_PREFIX}"

    @property
    def api_key(self) -> str:
        return self.config.api_key

    def start(self) -> Self:
        """Start serving; returns once the port is bound (raises if it could not be)."""
        self._thread = threading.Thread(target=self._run, name="videoworker-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30.0):
            raise RuntimeError("simulator did not start within 30 s")
        if not self._serving:
            raise RuntimeError(f"simulator failed to start on {self.host}:{self.port}") from self._failure
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call twice."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is not None and thread.is_alive() and loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30.0)
        self._thread = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``."""
        return self._admin("GET", "stats")

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """``POST /_sim/config`` with ``knobs``; returns the effective config."""
        answer = self._admin("POST", "config", knobs)
        if "api_key" in knobs:
            self.config = self.config.with_changes({"api_key": answer["api_key"]})
        return answer

    def reset(self) -> None:
        """``POST /_sim/reset``: forget jobs and counters."""
        self._admin("POST", "reset")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _admin(self, method: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._http is None:
            self._http = httpx.Client(timeout=30.0)
        response = self._http.request(method, f"{self.admin_url}/{name}", json=body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        finally:
            self._serving = False
            self._ready.set()  # wakes start() even when serving failed

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            runner = await serve(self.host, self.port, self.config)
        except OSError as exc:  # port taken, bad host: start() reports it
            self._failure = exc
            return
        try:
            self.port = bound_port(runner)
            self._serving = True
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
