"""When to poll a job: learn each model's durations, poll sparsely before they end and densely as they do.

A fixed backoff spends most of its polls on jobs that cannot be done yet: a model whose
videos take 20–30 s is asked five times before 20 s. The planner keeps a sample of the
recent durations of each model and places polls on a grid over the window where most of them
end (its 5th to 95th percentile): one wait until the window opens, then a poll every
``step``, a third of the window's width (at least ``shortest``, at most three quarters
of ``longest``), then a backoff towards ``longest`` once the job runs later than the
window. Fewer polls than a backoff, and a shorter wait between a job's end and its
discovery (measured in bench/poll_curve.py).

The wait before the window may be longer than ``longest``: ``poll_max_interval`` bounds
the gap while a job may be done, not while the model has never been seen to finish. A
model that becomes faster is noticed at once: a job found done at its first poll adds a
short duration, and the window moves earlier.

A model seen fewer than :data:`MIN_SAMPLES` times is polled with the plain backoff from
``shortest`` to ``longest``. What was learned is kept across restarts in a small JSON
file (:meth:`PollPlanner.save` at stop, :meth:`PollPlanner.load` at start).

With callbacks on (``reconcile`` set), polls only reconcile: one a margin after the
expected end, then one every ``reconcile`` seconds, so a lost callback is still caught.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import random
import tempfile
from pathlib import Path

import structlog

log = structlog.get_logger("videoworker.polling")

#: Durations kept per model: enough for stable percentiles, few enough to follow a change.
WINDOW = 1000
#: A model needs this many durations before the planner trusts its window.
MIN_SAMPLES = 5
#: Models remembered (and saved); the least recently learned is forgotten first.
MAX_MODELS = 128
#: The saved file is refused above this size (it is read at start, before anything else).
MAX_FILE_BYTES = 8 * 2**20
LOW, HIGH = 0.05, 0.95
#: Where in the data folder what was learned is kept across restarts.
DURATIONS_FILE = "poll-durations.json"


class Durations:
    """A sample of one model's recent durations (at most :data:`WINDOW`), kept sorted for percentiles.

    Once full, a new duration replaces a random one, not the oldest. Jobs submitted together
    finish in order of their duration, so after a burst the last few hundred to finish are
    the longest ones: keeping only the newest would shift the window to the tail. A random
    replacement keeps a mix, and still forgets: a duration lasts about :data:`WINDOW` more
    jobs.
    """

    def __init__(self, samples: list[float] | None = None) -> None:
        self._samples: list[float] = list(samples or ())[-WINDOW:]
        self._sorted = sorted(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, seconds: float) -> None:
        if len(self._samples) < WINDOW:
            self._samples.append(seconds)
        else:
            index = random.randrange(WINDOW)
            del self._sorted[bisect.bisect_left(self._sorted, self._samples[index])]
            self._samples[index] = seconds
        bisect.insort(self._sorted, seconds)

    def samples(self) -> list[float]:
        return list(self._samples)

    def quantile(self, p: float) -> float:
        """The ``p`` percentile (nearest rank) of the kept durations."""
        values = self._sorted
        return values[min(len(values) - 1, max(0, math.ceil(p * len(values)) - 1))]

    def mean(self) -> float:
        return sum(self._samples) / len(self._samples)


class PollPlanner:
    """Learns how long each model takes and places polls where its jobs end."""

    def __init__(self, shortest: float, longest: float, *, jitter: float = 0.2, reconcile: float | None = None) -> None:
        self.shortest = shortest
        self.longest = longest
        self.jitter = jitter
        #: With callbacks on, polls only reconcile: this is their gap once the expected end has passed.
        self.reconcile = reconcile
        self._models: dict[str, Durations] = {}

    def learn(self, model: str, seconds: float, *, lower: float | None = None) -> None:
        """Record one job of ``model`` found finished ``seconds`` after submit.

        ``lower`` is when it was last seen running (it ended in between); the midpoint is kept.
        Without it the job ended somewhere in ``[0, seconds]``.
        """
        low = 0.0 if lower is None else min(max(0.0, lower), seconds)
        durations = self._models.pop(model, None) or Durations()
        self._models[model] = durations  # most recently learned last, for MAX_MODELS
        durations.add((low + seconds) / 2 if seconds > 0 else 0.0)
        if len(self._models) > MAX_MODELS:
            del self._models[next(iter(self._models))]

    def expected(self, model: str) -> float | None:
        """The model's mean duration, once it has been seen to finish."""
        durations = self._models.get(model)
        return durations.mean() if durations else None

    def window(self, model: str) -> tuple[float, float] | None:
        """The 5th and 95th percentile of the model's durations; None until :data:`MIN_SAMPLES` are known."""
        durations = self._models.get(model)
        if durations is None or len(durations) < MIN_SAMPLES:
            return None
        return durations.quantile(LOW), durations.quantile(HIGH)

    def next_gap(self, model: str, elapsed: float, polls: int, retry_after: float | None = None) -> float:
        """Seconds until the next poll of a job ``elapsed`` seconds after submit, polled ``polls`` times."""
        if self.reconcile is not None:
            gap = self._reconcile_gap(self.expected(model), elapsed)
        elif (window := self.window(model)) is None:
            gap = self._backoff_gap(polls)
        else:
            gap = self._window_gap(window, elapsed)
        return max(gap, retry_after) if retry_after is not None else gap

    def _backoff_gap(self, polls: int) -> float:
        """Nothing learned: from ``shortest``, ×1.5 per poll, to ``longest``, with jitter."""
        gap = self.shortest * (1.5 ** min(polls, 40))
        gap = min(gap, self.longest) * (1 + random.uniform(-self.jitter, self.jitter))
        return min(max(gap, self.shortest), self.longest)

    def _window_gap(self, window: tuple[float, float], elapsed: float) -> float:
        low, high = window
        step = min(max((high - low) / 3, self.shortest), max(self.shortest, 0.75 * self.longest))
        if elapsed < high:
            # the next grid point low + k·step at least `shortest` from now, jittered by a
            # fraction of the step so jobs submitted together do not poll together
            k = max(0, math.ceil((elapsed + self.shortest - low) / step - 1e-9))
            due = low + k * step + random.uniform(-self.jitter, self.jitter) * step / 2
            gap = max(due - elapsed, self.shortest)
            return min(gap, self.longest) if elapsed >= low else gap
        # later than the window: back off from `step` as the job runs later still
        gap = max(step, (elapsed - high) / 2) * (1 + random.uniform(-self.jitter, self.jitter))
        return min(max(gap, self.shortest), self.longest)

    def _reconcile_gap(self, expected: float | None, elapsed: float) -> float:
        """Callbacks on: one poll a margin after the expected end (a callback normally comes first),
        then one every ``reconcile`` seconds, so a lost callback is caught within that interval."""
        assert self.reconcile is not None
        gap = self.reconcile
        if expected is not None and elapsed < expected * 1.25:
            gap = min(gap, expected * 1.25 - elapsed + self.shortest)
        gap *= 1 + random.uniform(0, self.jitter)
        return min(max(gap, self.shortest), self.reconcile * (1 + self.jitter))

    # --- kept across restarts ------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write what was learned (atomically: a kill mid-write leaves the previous file).

        A failure is logged, not raised: a read-only or full disk costs the next start its
        head start, no more.
        """
        body = json.dumps({"version": 1, "models": {m: d.samples() for m, d in self._models.items()}})
        temporary = None
        try:
            # a unique temporary name: instances sharing a data folder (in containers, all pid 1)
            # never write the same one; the last to stop wins
            fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
            error = f"{type(exc).__name__}: {exc}"
            log.warning("could not save the learned poll durations", path=str(path), error=error)

    def load(self, path: Path) -> int:
        """Read a file :meth:`save` wrote; return how many models it knew. A missing file is no
        error; a damaged or oversized one is logged and ignored (polls then start from the backoff)."""
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
            models = json.loads(path.read_text())["models"]
            learned = {
                model: Durations([v for v in map(float, samples) if 0 <= v < 1e7][-WINDOW:])
                for model, samples in list(models.items())[-MAX_MODELS:]
                if len(model) <= 256  # a longer model id is not one the provider lists
            }
        except FileNotFoundError:
            return 0
        except Exception as exc:  # noqa: BLE001 - any damage (even OverflowError, RecursionError) means "start cold"
            log.warning("ignoring the saved poll durations", path=str(path), error=f"{type(exc).__name__}: {exc}")
            return 0
        self._models.update(learned)
        if learned:
            log.info("poll planner resumed what it learned", models=len(learned))
        return len(learned)
