"""One function per step. Each takes the job and its context and returns an :mod:`~videoworker.core.outcomes`.

Which step runs in which state is written once, in :data:`videoworker.core.states.MACHINE`;
:data:`STEPS` maps each step to its function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from videoworker.config import Settings
from videoworker.core.context import StepContext
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Outcome
from videoworker.core.states import Step
from videoworker.core.steps.deliver import deliver, finish
from videoworker.core.steps.poll import poll
from videoworker.core.steps.submit import await_callback, resolve, submit

StepFunction = Callable[[Job, StepContext], Awaitable[Outcome]]

STEPS: dict[Step, StepFunction] = {
    Step.SUBMIT: submit,
    Step.RESOLVE: resolve,
    Step.POLL: poll,
    Step.DELIVER: deliver,
    Step.FINISH: finish,
    Step.AWAIT: await_callback,
}


def workers(settings: Settings) -> dict[Step, int]:
    """How many engine workers each step gets: the concurrency limits of the settings."""
    s = settings
    return {
        Step.SUBMIT: 2 * s.max_concurrent_submits,  # half of them recording answers (StepContext.submit_slots)
        Step.RESOLVE: 2,
        Step.POLL: s.max_concurrent_polls,
        Step.DELIVER: s.max_concurrent_downloads,
        Step.FINISH: 2,  # only jobs an earlier version left in `stored`: deliver now records `done` itself
        Step.AWAIT: 1,
    }


__all__ = ["STEPS", "StepFunction", "workers"]
