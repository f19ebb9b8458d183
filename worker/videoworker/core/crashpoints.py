"""Test-only crash switch: ``VIDEOWORKER_CRASHPOINT=<name>[:<n>]`` SIGKILLs the process at a step boundary.

The reliability tests use it to prove every boundary is safe. Unset (always, outside
tests), :func:`crashpoint` costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset(
    {
        "after_claim",  # claim durable, delivery not yet acked
        "before_post",  # `submitting` durable, POST not sent
        "after_post",  # provider accepted, job id not yet recorded
        "after_download",  # output downloaded, not yet stored
        "after_store",  # outputs stored, final event not yet recorded
        "after_publish",  # event published, not yet marked sent
        "after_notify",  # notification delivered, not yet marked delivered
    }
)
_spec = os.environ.get("VIDEOWORKER_CRASHPOINT", "")
_name, _, _nth = _spec.partition(":")
_remaining = {_name: int(_nth or 1)} if _name else {}


def crashpoint(name: str) -> None:
    """Kill this process with SIGKILL the n-th time ``name`` is reached, if so configured."""
    if name not in _remaining:
        return
    _remaining[name] -= 1
    if _remaining[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
