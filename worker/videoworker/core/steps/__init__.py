"""One function per step. Each takes the job and its context and returns an :mod:`~videoworker.core.outcomes`.

Which step runs in which state is written once, in :data:`videoworker.core.states.MACHINE`;
:data:`STEPS` maps each step to its function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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

__all__ = ["STEPS", "StepFunction"]
