"""The jobs this instance owns, held in memory between steps.

A :class:`Job` is the ledger row plus what only matters while this process holds it
(poll count, retry counters, a move taken but not written yet). The :class:`JobTable` is the one place jobs enter and
leave memory, so the in-flight gauge and intake's back-pressure always agree with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from videoworker import metrics
from videoworker.contract.request import VideoRequest
from videoworker.core.states import JobState, Step
from videoworker.ledger.base import JobRecord
from videoworker.plugins.types import OutputFile


@dataclass
class Job:
    """A job this instance owns. ``record`` mirrors the ledger row after every recorded move."""

    record: JobRecord
    request: VideoRequest
    polls: int = 0  # polls of this job by this process
    download_attempts: int = 0  # failed download rounds of the current deliver step
    storage_attempts: int = 0  # failed storage rounds of the current deliver step
    storage_failing_since: float | None = None  # monotonic time of the first failed storage round
    downloads: list[OutputFile] | None = None  # verified downloads, kept across storage retries
    step_errors: int = 0  # unexpected errors of the current step, for its backoff
    timer: int | None = None  # the job's pending timer (see Timers.cancel), if one is set
    hinted: bool = False  # a callback asked for a poll that has not run yet
    running: Step | None = None  # the step a worker runs for this job now (a submit: until its answer lands)
    rerun: Step | None = None  # a step asked for while one runs: queued again when that one ends
    early_hint: str | None = None  # a callback's job id that came before the submit's answer was recorded
    running_at: float | None = None  # seconds after submit of the last poll that found it running
    adopted: bool = False  # taken over from a former life or a dead peer (its earlier polls are unknown)
    unrecorded: JobState | None = None  # the ledger's state while ``record`` holds a move not written yet

    @property
    def id(self) -> str:
        return self.record.request_id

    @property
    def recorded_state(self) -> JobState:
        """The state the ledger holds for this job: what the next write compares and sets from."""
        return self.unrecorded or self.record.state

    def moved(self) -> None:
        """Reset the per-step counters: a recorded move starts the next step afresh."""
        self.download_attempts = self.storage_attempts = self.step_errors = 0
        self.storage_failing_since = None
        self.downloads = None


class JobTable:
    """Request id → :class:`Job`, reporting its size on every change."""

    def __init__(self, on_size: Callable[[int], None] = lambda n: None) -> None:
        self._jobs: dict[str, Job] = {}
        self._on_size = on_size

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._jobs

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def get(self, request_id: str) -> Job | None:
        return self._jobs.get(request_id)

    def hold(self, job: Job) -> None:
        self._jobs[job.id] = job
        self._changed()

    def drop(self, request_id: str) -> None:
        if self._jobs.pop(request_id, None) is not None:
            self._changed()

    def _changed(self) -> None:
        metrics.JOBS_INFLIGHT.set(len(self._jobs))
        self._on_size(len(self._jobs))
