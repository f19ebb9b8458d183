"""What a step may use: settings, the provider, the storage hooks, the poll planner, its temp folder.

Built once by the engine and handed to every step, so steps are plain functions that
unit tests call with a context of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from videoworker.config import Settings
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Move
from videoworker.core.polling import PollPlanner
from videoworker.core.ports import Provider
from videoworker.core.schedule import backoff
from videoworker.core.workdir import Workdir
from videoworker.plugins.hooks import Hooks
from videoworker.provider.catalogue import Catalogue


@dataclass
class StepContext:
    """Everything a step needs, and the one ledger write a step makes itself (:attr:`intend`)."""

    settings: Settings
    provider: Provider
    hooks: Hooks
    planner: PollPlanner
    workdir: Workdir
    #: Record a move *before* a side effect that must never be repeated blindly, i.e.
    #: ``submitting`` (with its budget reservation) before the POST. False: the job is not ours
    #: any more; raises :class:`~videoworker.errors.OverBudget` when the reservation does not fit.
    intend: Callable[[Job, Move], Awaitable[bool]]
    #: The provider's video models (cached), for cost estimates.
    catalogue: Callable[[], Awaitable[Catalogue]]
    #: The daily spending limit the last estimate named (for the budget gauges).
    daily_limit: float | None = None
    #: ``max_concurrent_submits`` slots, each held from the ``submitting`` record to the POST's answer.
    submit_slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.submit_slots = asyncio.Semaphore(self.settings.max_concurrent_submits)

    def retry_in(self, attempt: int, *, base: float = 1.0, cap: float = 60.0) -> float:
        """Seconds before retry ``attempt``: full-jitter backoff scaled by ``retry_backoff_base``."""
        return backoff(attempt, base=base * self.settings.retry_backoff_base, cap=cap)
