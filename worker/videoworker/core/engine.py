"""The engine: runs every job this instance owns through the state machine, one outcome at a time.

A fixed pool of workers per step takes request ids from queues fed by one timer heap,
so ten thousand waiting jobs cost memory, not tasks. A worker runs the step its job's
state calls for (:data:`videoworker.core.states.MACHINE`), then :meth:`Engine.apply`
turns the step's outcome into a recorded move (with its event), a timer, or letting
the job go. A move that loses the compare-and-set (a peer adopted the job) drops it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from videoworker import metrics
from videoworker.config import Settings
from videoworker.contract.request import VideoRequest
from videoworker.core.context import StepContext
from videoworker.core.jobs import Job, JobTable
from videoworker.core.outcomes import Again, Move, Outcome, Release
from videoworker.core.polling import DURATIONS_FILE, PollPlanner
from videoworker.core.ports import Provider
from videoworker.core.reconcile import reconcile_unknown
from videoworker.core.recorder import Recorder
from videoworker.core.schedule import Timers, backoff, cancel_and_wait, persist
from videoworker.core.states import JobState, Step, step_for
from videoworker.core.steps import STEPS, StepFunction, workers
from videoworker.core.workdir import Workdir, sweep_finished
from videoworker.ledger.base import JobRecord, Ledger, ReplyTarget
from videoworker.plugins.hooks import Hooks
from videoworker.provider.catalogue import Catalogue, CatalogueCache

log = structlog.get_logger("videoworker.engine")


class Engine:
    """Owns in-flight jobs: accepts new ones, resumes adopted ones, and runs their steps."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        provider: Provider,
        hooks: Hooks,
        *,
        on_outbox: Callable[[], None] = lambda: None,
        on_notify: Callable[[], None] = lambda: None,
        on_load: Callable[[int], None] = lambda n: None,
        catalogue: CatalogueCache | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.jobs = JobTable(on_load)
        self.timers = Timers()
        self.recorder = Recorder(settings, ledger, hooks, on_outbox=on_outbox, on_notify=on_notify)
        self.ctx = StepContext(
            settings,
            provider,
            hooks,
            PollPlanner(
                settings.poll_interval,
                settings.poll_max_interval,
                reconcile=settings.reconcile_interval if settings.callback_public_url else None,
            ),
            Workdir(settings.data_dir / "tmp"),
            intend=self.recorder.intend,
            catalogue=catalogue.get if catalogue is not None else _no_catalogue,
        )
        self._queues: dict[Step, asyncio.Queue[str]] = {step: asyncio.Queue() for step in Step}
        for step, queue in self._queues.items():  # read when scraped: nothing on the hot path
            metrics.STEPS_WAITING.labels(step=step.value).set_function(queue.qsize)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = self._started = False
        self._reconciling: set[asyncio.Task[None]] = set()

    @property
    def load(self) -> int:
        return len(self.jobs)

    def busy(self) -> set[str]:
        """Jobs whose step still runs: after the stop, those it let go while their thread works on."""
        return {job.id for job in self.jobs if job.running is not None}

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.ctx.workdir.prepare()
        self.ctx.planner.load(self.settings.data_dir / DURATIONS_FILE)
        self._started = True  # only a started engine saves: a failed start must not erase the file
        for step, count in workers(self.settings).items():
            self._tasks += [asyncio.create_task(self._work(step, STEPS[step])) for _ in range(count)]
        self._tasks.append(asyncio.create_task(self._dispatch()))

    async def sweep(self) -> int:
        """At start, delete the temporary folders of finished or unknown jobs (:func:`sweep_finished`)."""
        return await sweep_finished(self.ctx.workdir, self.ledger, self.jobs)

    async def stop(self, grace: float) -> None:
        """Take no new step; give in-flight submits ``grace`` seconds to record their answer, then cancel."""
        deadline = time.monotonic() + grace
        self._stopping = True  # queued and timed steps stay in the ledger for the next owner
        # a submit runs until its answer is recorded
        while any(job.running is Step.SUBMIT for job in self.jobs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await cancel_and_wait([*self._tasks, *self._reconciling])
        self._tasks.clear()
        await self.recorder.stop()
        if self._started:
            self.ctx.planner.save(self.settings.data_dir / DURATIONS_FILE)

    # --- entry points ------------------------------------------------------------------
    def accept(self, record: JobRecord, request: VideoRequest) -> None:
        """Take a freshly claimed job (unless a redelivery's :meth:`duplicate` took it up first)."""
        if record.request_id not in self.jobs:
            self.jobs.hold(Job(record, request))
            self._schedule(Step.SUBMIT, record.request_id, 0)

    def resume(self, record: JobRecord) -> None:
        """Take an adopted job (after a restart, or from a dead peer) and run its state's step."""
        step = step_for(record.state)
        if record.request_id in self.jobs or step is None:
            return
        self.jobs.hold(Job(record, VideoRequest.model_validate(record.request), adopted=True))
        log.info("adopted job", request_id=record.request_id, job_id=record.job_id, state=record.state.value)
        self._schedule(step, record.request_id, 0)

    async def duplicate(self, record: JobRecord, reply: ReplyTarget | None) -> None:
        """Answer a second delivery of a known id from the ledger; never submit again.

        A row under our name that no step holds is a claim that landed while its answer was
        lost (the delivery's handling was cancelled by a broken channel): nobody else will
        adopt it, since our lease renewal keeps it ours, so it is taken up here.
        """
        if record.owner == self.settings.instance_id:
            self.resume(record)
        await self.recorder.answer_duplicate(record, reply)

    # --- running steps -----------------------------------------------------------------
    def hint(self, request_id: str, job_id: str, *, reconcile: bool = False) -> bool:
        """A callback says the provider's job ``job_id`` ended: poll it now if it is ours and polling.

        The poll's answer, not the callback, moves the job; a hint for a job not held here, for another
        job id, or already hinted changes nothing (False). One that beats the recording of the submit's
        answer waits for it; with ``reconcile`` (signature checked), an unknown submit takes ``job_id``.
        """
        job = self.jobs.get(request_id)
        if job is None or job.hinted or self._stopping:
            return False
        if job.record.state is JobState.AWAITING_CALLBACK and reconcile:
            job.hinted = True
            task = asyncio.create_task(reconcile_unknown(self.ledger, job, job_id, self._record, self._moved))
            self._reconciling.add(task)
            task.add_done_callback(self._reconciling.discard)
            return True
        if job.record.state is JobState.SUBMITTING and job.record.job_id is None:
            job.early_hint = job_id  # it beat the recording of the submit's answer: _moved polls at once
            return True
        if job.record.job_id != job_id or step_for(job.record.state) is not Step.POLL:
            return False
        job.hinted = True
        self._schedule(Step.POLL, request_id, 0)
        return True

    def _schedule(self, step: Step, request_id: str, after: float) -> None:
        """Queue ``step`` for the job now or in ``after`` seconds; the job's earlier timer, if any, is dropped."""
        job = self.jobs.get(request_id)
        if job is not None and job.timer is not None:
            self.timers.cancel(job.timer)
            job.timer = None
        if after <= 0:
            self._queues[step].put_nowait(request_id)
        else:
            number = self.timers.at(after, step, request_id)
            if job is not None:
                job.timer = number

    async def _dispatch(self) -> None:
        while True:
            step, request_id = await self.timers.next_due()
            job = self.jobs.get(request_id)
            if job is not None:
                job.timer = None
                self._queues[Step(step)].put_nowait(request_id)

    async def _work(self, step: Step, run: StepFunction) -> None:
        queue = self._queues[step]
        while True:
            request_id = await queue.get()
            job = self.jobs.get(request_id)
            if job is None or self._stopping or step_for(job.record.state) is not step:
                continue  # gone, stopping, or a stale timer of a state the job has left
            if job.running is not None:  # one step of a job at a time: a hint's poll waits for the poll out
                job.rerun = step
                continue
            job.running = step
            with structlog.contextvars.bound_contextvars(request_id=request_id, job_id=job.record.job_id):
                try:
                    await self.apply(job, step, await run(job, self.ctx))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    job.step_errors += 1
                    delay = backoff(job.step_errors, base=5 * self.settings.retry_backoff_base)
                    log.exception("step crashed; retrying later", step=step.value, retry_in=round(delay, 2))
                    if await self._record_held(job):
                        self._schedule(step, request_id, delay)
                finally:
                    job.running, again, job.rerun = None, job.rerun, None
                    if again is not None:
                        self._queues[again].put_nowait(request_id)

    async def apply(self, job: Job, step: Step, outcome: Outcome) -> None:
        """Carry out one step's outcome: record a move, set a timer, or let the job go.

        A poll's ``completed`` is only held in memory, and deliver runs at once: its final
        move records both, one transaction fewer per job on the path where results wait.
        Should deliver have to wait (a retry), the held move is written first.
        """
        if isinstance(outcome, Again):
            if job.unrecorded is None or await self._record(job, None):
                self._schedule(step, job.id, outcome.after)
        elif isinstance(outcome, Release):
            await self._resync(job)
        elif outcome.to is JobState.COMPLETED and step is Step.POLL:
            self.recorder.hold(job, outcome)
            await self._moved(job, outcome)
        elif await self._record(job, outcome):
            await self._moved(job, outcome)

    async def _record_held(self, job: Job) -> bool:
        """Before a crashed step waits to run again, or at the stop: write the held move; False if the job is gone.

        A ledger that fails here too leaves the move held; the step's next run tries again.
        """
        if job.unrecorded is None:
            return True
        try:
            return await self._record(job, None)
        except Exception as exc:  # noqa: BLE001 - the ledger's trouble; the step is rescheduled all the same
            error = f"{type(exc).__name__}: {exc}"
            log.warning("could not record the held move; kept for the next try", request_id=job.id, error=error)
            return True

    async def record_held(self) -> int:
        """At the stop, once no step runs: write the moves still held in memory; return how many landed.

        A job whose poll found it completed then resumes at delivery on the next owner, not
        with another poll. The caller bounds the wait; what is not written is only a poll lost.
        """
        held = [job for job in self.jobs if job.unrecorded is not None]
        for job in held:  # one at a time, each on its own: a write the ledger refuses does not stop the rest
            await self._record_held(job)
        return sum(job.unrecorded is None for job in held)

    async def _record(self, job: Job, move: Move | None) -> bool:
        """Record a move (None: the held one). A POST's answer exists only in memory: retried until it lands."""
        if move is None:
            moved = await self.recorder.catch_up(job)
        elif job.record.state is not JobState.SUBMITTING:
            moved = await self.recorder.move(job, move)
        else:
            moved = await persist(lambda: self.recorder.move(job, move), what="the submit outcome")
        if not moved:
            await self._resync(job)
        return moved

    async def _resync(self, job: Job) -> None:
        """After a lost compare-and-set: let the job go, unless the ledger says it is still ours.

        That happens when a write landed but its answer was lost (the ledger failed after
        the commit): the row moved on under our name, so carry on from what it says.
        """
        fresh = await self.ledger.get(job.id)
        step = step_for(fresh.state) if fresh is not None else None
        if fresh is None or fresh.owner != self.settings.instance_id or step is None:
            log.warning("job moved elsewhere; letting it go", state=job.record.state.value)
            self.jobs.drop(job.id)
            return
        log.warning("the ledger is ahead of memory; continuing from it", state=fresh.state.value)
        job.record, job.unrecorded = fresh, None
        job.moved()
        self._schedule(step, job.id, 0)

    async def _moved(self, job: Job, move: Move) -> None:
        job.moved()
        if move.to is JobState.SUBMITTED:
            structlog.contextvars.bind_contextvars(job_id=job.record.job_id)
            log.info("submitted")
        step = step_for(move.to)
        if step is not None:
            early, job.early_hint = job.early_hint, None
            now = early is not None and early == job.record.job_id and step is Step.POLL  # its callback came first
            job.hinted = job.hinted or now
            self._schedule(step, job.id, 0 if now else move.after)
            return
        code = move.error["code"] if move.error else ""
        status = "failed" if move.error else "completed"
        if move.error:
            log.warning("job failed", code=code, reason=move.error["message"])
        metrics.JOBS_FINISHED.labels(model=job.request.model, status=status, code=code).inc()
        log.info("job finished", status=status, code=code or None)
        # in a thread (unlinking a video frees its blocks), before the job is let go (no download races it)
        try:
            await asyncio.to_thread(self.ctx.workdir.clear, job.id)
        finally:  # cancelled by the stop: the thread still removes the folder, and the job is done either way
            self.jobs.drop(job.id)


async def _no_catalogue() -> Catalogue:
    return Catalogue()
