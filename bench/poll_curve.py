"""Polls per job against detection delay: the bare loop's backoff, a fixed loop, and our planner.

    python bench/poll_curve.py [--png docs/poll-curve.png]

Each policy is replayed on a virtual clock against the same drawn job durations, so a
point costs microseconds and the curve is exact for the policy (no event-loop lag, no
network). The planner is the daemon's own :class:`videoworker.core.polling.PollPlanner`,
learning as it goes from the jobs it finds finished; the first ``--warm`` jobs teach it
and are not counted (a daemon that has run before starts warm from its saved durations).

Policies, each swept over its parameter to draw a curve:

- ``backoff``: the bare loop (bench/bare_loop.py): first poll at ``min``, gap ×1.5 up to
  ``max``; swept over ``max`` with ``min`` = 2 s.
- ``fixed``: one poll every N seconds, as the seed did with N = 30.
- ``planner``: ours, with the same ``min`` and ``max`` as the backoff.

Delay is the time from a job's end to the poll that finds it ended. One JSON line per
point; then the standard point (2–5 s, the issue's setting) replayed as a cold burst
(below); the ratios at the standard point are printed last.

The cold burst is a daemon's first start, with nothing learned: 1,000 jobs submitted
within 2.5 s, all in flight at once, replayed in order of their poll times. The planner
learns only from the jobs it finds finished, and in a burst the shortest finish first.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "worker"))

from videoworker.core.polling import PollPlanner  # noqa: E402

Policy = Callable[[], Iterator[float]]  # per job: the successive gaps between its polls


def backoff(shortest: float, longest: float) -> Policy:
    def gaps() -> Iterator[float]:
        gap = shortest
        while True:
            yield gap
            gap = min(gap * 1.5, longest)

    return gaps


def fixed(interval: float) -> Policy:
    def gaps() -> Iterator[float]:
        while True:
            yield interval

    return gaps


def replay_fixed(policy: Policy, durations: list[float]) -> tuple[list[int], list[float]]:
    """Polls and detection delay of every job under a policy that learns nothing."""
    polls, delays = [], []
    for duration in durations:
        t, n = 0.0, 0
        for gap in policy():
            t, n = t + gap, n + 1
            if t >= duration:
                break
        polls.append(n)
        delays.append(t - duration)
    return polls, delays


def replay_planner(planner: PollPlanner, durations: list[float], warm: int) -> tuple[list[int], list[float]]:
    """The daemon's planner, learning from each job it finds finished; the first ``warm`` jobs are not counted."""
    polls, delays = [], []
    for index, duration in enumerate(durations):
        t, n, running_at = 0.0, 0, None
        while True:
            t += planner.next_gap("m", t, n)
            n += 1
            if t >= duration:
                break
            running_at = t
        planner.learn("m", t, lower=running_at)
        if index >= warm:
            polls.append(n)
            delays.append(t - duration)
    return polls, delays


def replay_burst(
    gap: Callable[[float, int], float], learn: Callable[[float, float | None], None], durations: list[float], seed: int
) -> tuple[list[int], list[float]]:
    """Polls and delay of jobs submitted together (within 2.5 s), each poll taken in time order.

    ``gap(elapsed, polls)`` is a policy's next gap; ``learn(seconds, lower)`` sees each job found finished.
    """
    rng = random.Random(seed)
    submitted = [rng.uniform(0, 2.5) for _ in durations]
    running_at: list[float | None] = [None] * len(durations)
    count = [0] * len(durations)
    due = [(at + gap(0.0, 0), i) for i, at in enumerate(submitted)]
    heapq.heapify(due)
    polls, delays = [], []
    while due:
        now, i = heapq.heappop(due)
        count[i] += 1
        elapsed = now - submitted[i]
        if elapsed >= durations[i]:
            learn(elapsed, running_at[i])
            polls.append(count[i])
            delays.append(elapsed - durations[i])
        else:
            running_at[i] = elapsed
            heapq.heappush(due, (now + gap(elapsed, count[i]), i))
    return polls, delays


def cold_burst(low: float, high: float, jobs: int, seed: int) -> list[dict[str, Any]]:
    """The bare loop's backoff and a planner that has learned nothing, on one burst of ``jobs``."""
    rng = random.Random(seed)
    durations = [rng.uniform(low, high) for _ in range(jobs)]
    label = {"jobs_s": f"{low:g}-{high:g}", "cold_burst": jobs}

    def floor_gap(elapsed: float, polls: int) -> float:
        return min(2 * 1.5 ** min(polls, 40), 5.0)

    random.seed(seed)
    planner = PollPlanner(2, 5)
    return [
        figures("backoff", 5, *replay_burst(floor_gap, lambda s, lower: None, durations, seed), **label),
        figures(
            "planner",
            5,
            *replay_burst(
                lambda e, n: planner.next_gap("m", e, n),
                lambda s, lower: planner.learn("m", s, lower=lower),
                durations,
                seed,
            ),
            **label,
        ),
    ]


def figures(label: str, parameter: float, polls: list[int], delays: list[float], **extra: Any) -> dict[str, Any]:
    quantiles = statistics.quantiles(delays, n=20)
    return {
        "policy": label,
        "parameter": parameter,
        **extra,
        "polls_per_job": round(statistics.mean(polls), 3),
        "delay_p50_s": round(statistics.median(delays), 3),
        "delay_p95_s": round(quantiles[18], 3),
    }


def curves(low: float, high: float, jobs: int, warm: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    durations = [rng.uniform(low, high) for _ in range(jobs + warm)]
    measured = durations[warm:]
    jobs_label = {"jobs_s": f"{low:g}-{high:g}"}
    points = []
    for longest in (3, 5, 8, 12, 20, 30):
        points.append(figures("backoff", longest, *replay_fixed(backoff(2, longest), measured), **jobs_label))
        random.seed(seed)  # the planner's jitter, so a run is repeatable
        planner = PollPlanner(2, longest)
        points.append(figures("planner", longest, *replay_planner(planner, durations, warm), **jobs_label))
    for interval in (2, 3, 5, 10, 20, 30):
        points.append(figures("fixed", interval, *replay_fixed(fixed(interval), measured), **jobs_label))
    return points


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranges = sorted({p["jobs_s"] for p in points}, key=lambda r: float(r.split("-")[0]))
    fig, axes = plt.subplots(1, len(ranges), figsize=(6 * len(ranges), 4.5), squeeze=False)
    styles = {
        "backoff": ("bare loop: ×1.5 backoff from 2 s to max", "tab:red", "o"),
        "fixed": ("fixed interval (the seed polled every 30 s)", "tab:gray", "s"),
        "planner": ("videoworker planner, 2 s to max", "tab:blue", "^"),
    }
    for ax, jobs_s in zip(axes[0], ranges, strict=True):
        for policy, (label, colour, marker) in styles.items():
            mine = [p for p in points if p["policy"] == policy and p["jobs_s"] == jobs_s]
            for key, line in (("delay_p50_s", "-"), ("delay_p95_s", ":")):
                ax.plot(
                    [p["polls_per_job"] for p in mine],
                    [p[key] for p in mine],
                    line,
                    marker=marker,
                    color=colour,
                    label=f"{label} ({'p50' if key == 'delay_p50_s' else 'p95'})",
                )
            for p in mine:
                ax.annotate(f"{p['parameter']:g}", (p["polls_per_job"], p["delay_p50_s"]), fontsize=7)
        ax.set_title(f"jobs of {jobs_s} s (uniform); labels: max gap or interval, s")
        ax.set_xlabel("polls per job")
        ax.set_ylabel("end → detected, s (solid p50, dotted p95)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--warm", type=int, default=200, help="jobs that teach the planner first, not counted")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--png", type=Path, help="draw the curves (needs the bench extra: matplotlib)")
    args = parser.parse_args()
    points = [p for low, high in ((20, 30), (60, 180)) for p in curves(low, high, args.jobs, args.warm, args.seed)]
    for point in [*points, *cold_burst(20, 30, 1000, args.seed)]:
        print(json.dumps(point))
    standard = {p["policy"]: p for p in points if p["jobs_s"] == "20-30" and p["parameter"] == 5}
    floor, ours = standard["backoff"], standard["planner"]
    print(
        json.dumps(
            {
                "standard": "jobs 20-30 s, polls 2-5 s",
                "ratios_to_floor": {
                    k: round(ours[k] / floor[k], 2) for k in ("polls_per_job", "delay_p50_s", "delay_p95_s")
                },
            }
        )
    )
    if args.png:
        plot(points, args.png)


if __name__ == "__main__":
    main()
