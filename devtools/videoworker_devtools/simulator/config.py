"""The simulator's knobs: :class:`SimConfig`, with every field validated and normalised.

This module owns what the simulator can be told to do and the checks that refuse a bad
setting, whether it comes from Python, ``videoworker simulate`` or ``POST /_sim/config``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from videoworker_devtools.simulator import catalogue, hostile


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


def _optional_text(name: str, value: Any) -> str | None:
    return None if value is None else _text(name, value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"{name} must be an integer within [0, 100]")
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
    "hostile": hostile.check_modes,
    "callback_secret": _optional_text,
    "callback_loss": _rate,
    "callback_delay": _range,
    "callback_duplicates": _count,
    "callback_bad_signature": _flag,
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
    hostile: list[str] = field(default_factory=list)  #: answers bent like a compromised provider's (see hostile.py)
    callback_secret: str | None = None  #: signs callbacks (see callbacks.py); None: unsigned
    callback_loss: float = 0.0  #: callbacks never sent
    callback_delay: tuple[float, float] = (0.0, 0.0)  #: seconds after the job ends before its callback, uniform
    callback_duplicates: int = 0  #: extra copies of every callback
    callback_bad_signature: bool = False  #: sign with a wrong secret

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
