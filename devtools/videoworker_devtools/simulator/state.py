"""The simulator's memory: jobs and their fates, counters, the request log and the video cache.

This module owns :class:`SimState`, which lives on the event loop of the app that owns it.
Jobs progress by wall clock and are never scanned: every request touches one job, found
by id, so thousands of concurrent polls stay cheap. Faults are drawn from one seeded RNG
so a test that sets ``seed`` sees the same sequence of faults on every run.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import random
import string
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from videoworker_devtools.simulator import mp4
from videoworker_devtools.simulator.config import SimConfig

REQUEST_LOG_SIZE = 20_000
VIDEO_CACHE_SIZE = 1024  # videos kept in memory (~20 kB each); older ones are made again

_ALNUM = string.ascii_letters + string.digits
_PENDING_FRACTION = 0.1  # share of a job's duration spent "pending" before "in_progress"
_FAILURE_MESSAGES = (
    "Provider returned error: the video could not be generated (simulated)",
    "Content moderation: the prompt was flagged by the provider (simulated)",
    "Provider timeout while rendering the video (simulated)",
)


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
            "callbacks_sent": 0,
            "callbacks_lost": 0,
            "callbacks_failed": 0,
        }
        self.callback_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.tasks: set[asyncio.Task[None]] = set()
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
        self.callback_log.clear()
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
        return {**self.counters, "jobs": jobs, "requests": list(self.requests), "callbacks": list(self.callback_log)}

    def _job_stats(self, job: Job, now: float) -> dict[str, Any]:
        status = job.status(now)
        if status == "completed" and not job.digests:
            self.video(job, 0)  # records the hashes; regenerating known videos would make stats O(n) slow
        return {
            "status": status,
            "body": job.body,
            "submitted_at": job.submitted_at,
            "ends_at": job.submitted_at + job.duration,  # when a poll first sees its fate (unix)
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
