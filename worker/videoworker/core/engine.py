"""The engine: drives every job this instance owns through the state machine.

A fixed set of worker coroutines (submit, poll, deliver) takes request ids from queues
fed by one timer heap, so ten thousand waiting jobs cost memory, not tasks. Every step
reads the job from memory, does its one side effect, and records the outcome in the
ledger by compare-and-set before anything else happens. A step that loses the
compare-and-set (another instance adopted the job) drops the job from memory.
"""

from __future__ import annotations

import asyncio
import glob
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from videoworker import metrics
from videoworker.config import Settings
from videoworker.contract.events import build_event, encode, error_body, iso, message_id, routing_key
from videoworker.contract.request import VideoRequest
from videoworker.core.crashpoints import crashpoint
from videoworker.core.schedule import PollPlanner, Timers, backoff
from videoworker.core.states import JobState
from videoworker.errors import DownloadError, PermanentError, RetryableError
from videoworker.ledger.base import JobRecord, Ledger, OutboxMessage, ReplyTarget
from videoworker.plugins.manager import Hooks
from videoworker.plugins.types import JobEvent, OutputFile
from videoworker.provider.client import OpenRouterClient

log = structlog.get_logger("videoworker.engine")

_PROVIDER_FAILURES = {"failed": "provider_failed", "cancelled": "provider_cancelled", "expired": "provider_expired"}
_SUBMIT_FAILURES = {402: "over_budget", 401: "provider_unauthorized", 403: "provider_rejected"}


@dataclass
class Live:
    """A job this instance owns, as held in memory between steps."""

    record: JobRecord
    request: VideoRequest
    polls: int = 0
    attempts: int = 0  # download or storage attempts of the current step
    step_started: float = field(default_factory=time.monotonic)

    @property
    def id(self) -> str:
        return self.record.request_id


class Engine:
    """Owns in-flight jobs: accepts new ones, resumes adopted ones, and runs their steps."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        client: OpenRouterClient,
        hooks: Hooks,
        *,
        on_outbox: Callable[[], None] = lambda: None,
        on_load: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.client = client
        self.hooks = hooks
        self.me = settings.instance_id
        self.jobs: dict[str, Live] = {}
        self.timers = Timers()
        self.planner = PollPlanner(settings.poll_interval, settings.poll_max_interval)
        self._queues: dict[str, asyncio.Queue[str]] = {
            a: asyncio.Queue() for a in ("submit", "poll", "deliver", "resume")
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._observers: set[asyncio.Task[None]] = set()
        self._submitting = 0
        self._stopping = False
        self._on_outbox = on_outbox
        self._on_load = on_load
        self._tmp = settings.data_dir / "tmp"

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        s = self.settings
        workers = {
            "submit": (s.max_concurrent_submits, self._submit),
            "poll": (s.max_concurrent_polls, self._poll),
            "deliver": (s.max_concurrent_downloads, self._deliver),
            "resume": (2, self._resume_step),
        }
        for action, (count, step) in workers.items():
            self._tasks += [asyncio.create_task(self._work(action, step)) for _ in range(count)]
        self._tasks.append(asyncio.create_task(self._dispatch()))

    async def stop(self, grace: float) -> None:
        """Stop taking steps; give in-flight submits ``grace`` seconds to record their job id."""
        deadline = time.monotonic() + grace
        self._stopping = True  # workers take no new step; queued ones stay in the ledger
        self._tasks[-1].cancel()  # the dispatcher
        while self._submitting and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in [*self._tasks, *self._observers]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._observers, return_exceptions=True)
        self._tasks.clear()

    @property
    def load(self) -> int:
        return len(self.jobs)

    # --- entry points ------------------------------------------------------------------
    def accept(self, record: JobRecord, request: VideoRequest) -> None:
        """Take a freshly claimed job."""
        self._hold(Live(record, request))
        self.timers.at(0, "submit", record.request_id)

    def resume(self, record: JobRecord) -> None:
        """Take an adopted job (after a restart, or from a dead peer) and continue where it stopped."""
        if record.request_id in self.jobs:
            return
        live = Live(record, VideoRequest.model_validate(record.request))
        self._hold(live)
        state = record.state
        log.info("adopted job", request_id=live.id, job_id=record.job_id, state=state.value)
        if state is JobState.RECEIVED:
            self.timers.at(0, "submit", live.id)
        elif state in (JobState.SUBMITTED, JobState.IN_PROGRESS):
            self.timers.at(0, "poll", live.id)
        elif state is JobState.COMPLETED:
            self.timers.at(0, "deliver", live.id)
        elif state in (JobState.SUBMITTING, JobState.STORED):
            self.timers.at(0, "resume", live.id)

    async def _resume_step(self, live: Live) -> None:
        """Finish what a dead owner left between two records: a submit in doubt, or a stored job's event."""
        if live.record.state is JobState.SUBMITTING:
            await self._resume_submitting(live)
        elif live.record.state is JobState.STORED:
            await self._complete(live)

    async def duplicate(self, record: JobRecord, reply: ReplyTarget | None) -> None:
        """Answer a second delivery of a known id from the ledger; never submit again."""
        metrics.DUPLICATES.inc()
        final = record.data.get("final")
        log.info("duplicate id; answered from the ledger", request_id=record.request_id, state=record.state.value)
        if final is not None and reply is not None:
            mid = message_id(record.request_id, final["status"])
            await self.ledger.enqueue(
                [OutboxMessage("", reply.reply_to, encode(final), mid, record.request_id, reply.correlation_id)]
            )
            self._on_outbox()

    # --- plumbing ----------------------------------------------------------------------
    def _hold(self, live: Live) -> None:
        self.jobs[live.id] = live
        metrics.JOBS_INFLIGHT.set(len(self.jobs))
        self._on_load(len(self.jobs))

    def _drop(self, request_id: str) -> None:
        if self.jobs.pop(request_id, None) is not None:
            metrics.JOBS_INFLIGHT.set(len(self.jobs))
            self._on_load(len(self.jobs))

    async def _dispatch(self) -> None:
        while True:
            action, request_id = await self.timers.next_due()
            if request_id in self.jobs:
                self._queues[action].put_nowait(request_id)

    async def _work(self, action: str, step: Callable[[Live], Coroutine[Any, Any, None]]) -> None:
        queue = self._queues[action]
        while True:
            request_id = await queue.get()
            live = self.jobs.get(request_id)
            if live is None or self._stopping:
                continue
            with structlog.contextvars.bound_contextvars(request_id=request_id, job_id=live.record.job_id):
                try:
                    await step(live)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("step crashed; retrying later", step=action)
                    self.timers.at(backoff(live.attempts, base=5), action, request_id)
                    live.attempts += 1

    async def _move(self, live: Live, new: JobState, **kwargs: Any) -> bool:
        """Record a move; on a lost compare-and-set, let the job go (someone else owns it now)."""
        ok = await self.ledger.transition(live.id, self.me, live.record.state, new, **kwargs)
        if not ok:
            log.warning("job moved elsewhere; letting it go", state=live.record.state.value, wanted=new.value)
            self._drop(live.id)
            return False
        live.record.state = new
        for key in ("job_id", "attempts", "data"):
            if kwargs.get(key) is not None:
                setattr(live.record, key, kwargs[key])
        return True

    def _event(
        self, live: Live, status: str, data: dict[str, Any], error: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return build_event(
            live.id,
            status,
            model=live.request.model,
            data=data,
            metadata=live.request.metadata,
            job_id=live.record.job_id,
            error=error,
        )

    def _announce(self, live: Live, event: dict[str, Any]) -> None:
        self._on_outbox()
        job_event = JobEvent(event["status"], live.id, event, live.request.delivery or {})
        task = asyncio.create_task(self.hooks.job_event(job_event))
        self._observers.add(task)
        task.add_done_callback(self._observers.discard)

    def _outbox(self, live: Live, event: dict[str, Any]) -> OutboxMessage:
        status = event["status"]
        return OutboxMessage(
            self.settings.events_exchange, routing_key(status), encode(event), message_id(live.id, status), live.id
        )

    async def _progress(self, live: Live, new: JobState, status: str, data: dict[str, Any], **kw: Any) -> bool:
        event = self._event(live, status, data)
        if not await self._move(live, new, data=data, outbox=[self._outbox(live, event)], **kw):
            return False
        self._announce(live, event)
        return True

    async def _final(
        self, live: Live, new: JobState, status: str, data: dict[str, Any], error: dict[str, Any] | None = None
    ) -> None:
        data = {**data, "timestamps": {**data.get("timestamps", {}), "delivered": iso()}}
        event = self._event(live, status, data, error)
        data["final"] = event
        body = encode(event)
        ok = await self._move(
            live,
            new,
            data=data,
            outbox=[self._outbox(live, event)],
            reply_body=body,
            reply_message_id=message_id(live.id, status),
        )
        if ok:
            self._remove_parts(live.id)
            code = error["code"] if error else ""
            metrics.JOBS_FINISHED.labels(model=live.request.model, status=status, code=code).inc()
            log.info("job finished", status=status, code=code or None)
            self._announce(live, event)
            self._drop(live.id)

    async def fail(
        self, live: Live, code: str, message: str, *, retryable: bool = False, state: JobState = JobState.FAILED
    ) -> None:
        log.warning("job failed", code=code, reason=message)
        await self._final(live, state, "failed", dict(live.record.data), error_body(code, message, retryable=retryable))

    # --- submit ------------------------------------------------------------------------
    async def _submit(self, live: Live) -> None:
        if live.record.state is not JobState.RECEIVED:
            return
        attempts = live.record.attempts + 1
        crashpoint("before_post")
        self._submitting += 1
        try:
            if not await self._move(live, JobState.SUBMITTING, attempts=attempts):
                return
            try:
                job = await self.client.submit(live.request.provider_body())
            except RetryableError as exc:
                await self._persist(partial(self._submit_retry, live, exc, attempts))
                return
            except PermanentError as exc:
                metrics.SUBMITS.labels(model=live.request.model, outcome="rejected").inc()
                code = _SUBMIT_FAILURES.get(exc.status or 0, "provider_rejected")
                message = f"OpenRouter refused the submit ({exc.status}): {exc.message}"
                await self._persist(partial(self.fail, live, code, message))
                return
            except Exception as exc:  # noqa: BLE001 - AmbiguousSubmit, or anything unforeseen after sending
                status = getattr(exc, "status", None) or "no answer"
                message = f"submit outcome unknown ({status}): {getattr(exc, 'message', None) or exc}"
                await self._persist(partial(self._submit_unknown, live, message))
                return
            crashpoint("after_post")
            await self._persist(partial(self._submitted, live, job.id))
        finally:
            self._submitting -= 1

    async def _persist(self, write: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Record a submit's outcome, retrying while the ledger fails: until then it exists only in memory."""
        delay = 0.5
        while True:
            try:
                await write()
                return
            except Exception as exc:  # noqa: BLE001 - keep trying; a crash here leaves `submitting` (unknown)
                log.error("could not record the submit outcome; retrying", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _submitted(self, live: Live, job_id: str) -> None:
        metrics.SUBMITS.labels(model=live.request.model, outcome="accepted").inc()
        data = dict(live.record.data)
        data["timestamps"] = {**data.get("timestamps", {}), "submitted": iso()}
        data["submitted_at"] = time.time()
        live.record.job_id = job_id
        if await self._progress(live, JobState.SUBMITTED, "submitted", data, job_id=job_id):
            structlog.contextvars.bind_contextvars(job_id=job_id)
            log.info("submitted")
            self.timers.at(self.planner.next_gap(live.request.model, 0, 0), "poll", live.id)

    async def _submit_retry(self, live: Live, exc: RetryableError, attempts: int) -> None:
        metrics.SUBMITS.labels(model=live.request.model, outcome="retry").inc()
        if attempts >= self.settings.submit_max_attempts:
            await self.fail(
                live,
                "provider_unavailable",
                f"OpenRouter did not take the submit after {attempts} attempts: {exc.message}",
                retryable=True,
            )
            return
        if await self._move(live, JobState.RECEIVED):
            delay = max(exc.retry_after or 0.0, backoff(attempts))
            log.info("submit not taken; retrying", status=exc.status, retry_in=round(delay, 2))
            self.timers.at(delay, "submit", live.id)

    async def _submit_unknown(self, live: Live, message: str) -> None:
        metrics.SUBMIT_UNKNOWN.inc()
        metrics.SUBMITS.labels(model=live.request.model, outcome="unknown").inc()
        log.error(
            "ALERT: submit outcome unknown; the provider may have charged it; not resubmitting",
            alert="submit_outcome_unknown",
        )
        await self.fail(live, "submit_outcome_unknown", message, state=JobState.SUBMIT_UNKNOWN)

    async def _resume_submitting(self, live: Live) -> None:
        if self.settings.resubmit_unknown:
            log.warning("resubmitting a job whose first submit may have been charged (resubmit_unknown=true)")
            if await self._move(live, JobState.RECEIVED):
                self.timers.at(0, "submit", live.id)
            return
        await self._submit_unknown(live, "the daemon stopped between sending the submit and recording its job id")

    # --- poll --------------------------------------------------------------------------
    async def _poll(self, live: Live) -> None:
        if live.record.state not in (JobState.SUBMITTED, JobState.IN_PROGRESS) or live.record.job_id is None:
            return
        elapsed = time.time() - float(live.record.data.get("submitted_at", time.time()))
        if elapsed > self.settings.job_timeout:
            await self.fail(
                live, "timeout", f"the job did not finish within job_timeout={self.settings.job_timeout:g}s"
            )
            return
        try:
            job = await self.client.poll(live.record.job_id)
        except RetryableError as exc:
            metrics.POLLS.labels(outcome="retry").inc()
            self._next_poll(live, elapsed, exc.retry_after)
            return
        except PermanentError as exc:
            await self.fail(live, "provider_failed", f"polling the job failed ({exc.status}): {exc.message}")
            return
        metrics.POLLS.labels(outcome=job.status).inc()
        live.polls += 1
        if job.status == "completed":
            await self._provider_completed(live, job, elapsed)
        elif job.status in _PROVIDER_FAILURES:
            await self.fail(live, _PROVIDER_FAILURES[job.status], job.error or f"the provider reports {job.status}")
        elif job.status == "in_progress" and live.record.state is JobState.SUBMITTED:
            if await self._progress(live, JobState.IN_PROGRESS, "in_progress", dict(live.record.data)):
                self._next_poll(live, elapsed)
        else:
            self._next_poll(live, elapsed)

    def _next_poll(self, live: Live, elapsed: float, retry_after: float | None = None) -> None:
        gap = self.planner.next_gap(live.request.model, elapsed, live.polls, retry_after)
        self.timers.at(gap, "poll", live.id)

    async def _provider_completed(self, live: Live, job: Any, elapsed: float) -> None:
        self.planner.learn(live.request.model, elapsed)
        metrics.JOB_DURATION.labels(model=live.request.model).observe(elapsed)
        if job.usage is not None and job.usage.cost is not None:
            metrics.COST.labels(model=live.request.model).inc(job.usage.cost)
        data = dict(live.record.data)
        data.update(
            generation_id=job.generation_id,
            output_count=max(1, len(job.unsigned_urls)),
            usage=job.usage.model_dump() if job.usage is not None else None,
        )
        data["timestamps"] = {**data.get("timestamps", {}), "completed": iso()}
        if await self._move(live, JobState.COMPLETED, data=data):
            live.attempts = 0
            live.step_started = time.monotonic()
            self.timers.at(0, "deliver", live.id)

    # --- deliver -----------------------------------------------------------------------
    async def _deliver(self, live: Live) -> None:
        if live.record.state is not JobState.COMPLETED or live.record.job_id is None:
            return
        try:
            files = [await self._download(live, i) for i in range(int(live.record.data.get("output_count", 1)))]
        except (RetryableError, DownloadError) as exc:
            retryable = getattr(exc, "retryable", True)
            wait = getattr(exc, "retry_after", None)
            await self._retry_or_fail(
                live, "download_failed", f"download failed: {exc}", retryable, self.settings.download_max_attempts, wait
            )
            return
        except PermanentError as exc:
            await self.fail(live, "download_failed", f"download refused ({exc.status}): {exc.message}")
            return
        crashpoint("after_download")
        try:
            outputs = await self._store(live, files)
        except Exception as exc:  # noqa: BLE001 - any storage plugin failure is retried
            metrics.STORAGE_RETRIES.inc()
            log.warning("storage failed; retrying", error=f"{type(exc).__name__}: {exc}")
            elapsed = time.monotonic() - live.step_started
            if elapsed > self.settings.storage_retry_seconds:
                await self.fail(live, "storage_failed", f"storage failed for {elapsed:.0f}s: {exc}", retryable=True)
                return
            live.attempts += 1
            self.timers.at(backoff(live.attempts, base=1, cap=30), "deliver", live.id)
            return
        crashpoint("after_store")
        data = {**live.record.data, "outputs": outputs}
        if await self._move(live, JobState.STORED, data=data):
            for f in files:
                f.path.unlink(missing_ok=True)
            await self._complete(live)

    def _remove_parts(self, request_id: str) -> None:
        """Delete a finished job's downloads, also those a killed predecessor left behind."""
        for part in self._tmp.glob(f"{glob.escape(request_id)}.*.part"):
            part.unlink(missing_ok=True)

    async def _download(self, live: Live, index: int) -> OutputFile:
        assert live.record.job_id is not None
        part = self._tmp / f"{live.id}.{index}.part"
        got = await self.client.download(live.record.job_id, index, part, max_bytes=self.settings.max_download_bytes)
        metrics.DOWNLOAD_BYTES.inc(got.bytes)
        return OutputFile(live.id, index, Path(got.path), got.bytes, got.sha256, got.content_type or "video/mp4")

    async def _store(self, live: Live, files: list[OutputFile]) -> list[dict[str, Any]]:
        outputs = []
        for f in files:
            stored = await self.hooks.store_output(live.request, f)
            if not stored:
                raise RuntimeError("no storage plugin kept the output")
            locations = {s.backend: s.location for s in stored}
            outputs.append(
                {
                    "index": f.index,
                    "location": stored[0].location,
                    "locations": locations,
                    "content_type": f.content_type,
                    "bytes": f.bytes,
                    "sha256": f.sha256,
                }
            )
        return outputs

    async def _retry_or_fail(
        self, live: Live, code: str, message: str, retryable: bool, limit: int, retry_after: float | None = None
    ) -> None:
        live.attempts += 1
        if not retryable or live.attempts >= limit:
            await self.fail(live, code, message, retryable=retryable)
            return
        delay = max(retry_after or 0.0, backoff(live.attempts, base=1, cap=30))
        log.warning("step failed; retrying", code=code, reason=message, attempt=live.attempts, retry_in=round(delay, 2))
        self.timers.at(delay, "deliver", live.id)

    async def _complete(self, live: Live) -> None:
        await self._final(live, JobState.DONE, "completed", dict(live.record.data))
