"""Throughput against a bare-loop floor: N requests through the daemon and through the floor.

    python bench/throughput.py --floor --modes callbacks polling      # what `make bench` runs

Defaults: 1,000 requests published at once, simulated jobs of 20–30 s, polls between
2 and 5 s. The simulator runs as a separate ``videoworker simulate`` process so it does
not share the daemon's GIL. ``--floor`` first runs bench/bare_loop.py against the same
simulator; each daemon run then carries its ``ratios_to_floor``. Everything is printed
as one JSON line. Figures per run: time until the last submit, CPU of this process per
job, polls per job, completion-to-result p50/p95 (from the moment the simulator made a
job's fate visible to the moment its reply arrived), end to end, peak in flight, peak
RSS, and the RSS as publishing starts (imports and connections, before any work).

``--modes`` lists daemon runs, in order, sharing one data folder: ``callbacks`` turns the
push path on (the simulator sends a signed callback as each job ends; polls only
reconcile), ``polling`` is the default path. A later run starts with the durations the
poll planner saved in the earlier one, as a restarted daemon does.

``--retention`` then measures what retention leaves of the ledger: the bytes in use
(SQLite pages minus free pages) after the run, after a pruning round as it runs once
``outbox_retention`` and ``trim_after`` have passed, and after one past ``dedupe_days``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.simulator import sim_admin, start_simulator  # noqa: E402
from videoworker.config import load_settings  # noqa: E402
from videoworker.core.retention import Pruner  # noqa: E402
from videoworker.ledger import open_ledger  # noqa: E402
from videoworker.logs import configure_logging  # noqa: E402
from videoworker_devtools.rabbit import ensure_rabbitmq  # noqa: E402


def _figures(
    stats: dict[str, Any], prefix: str, started_unix: float, cpu_s: float, jobs: int, arrived: dict[str, float]
) -> dict[str, float]:
    """The compared figures of one run, from the simulator's record of it and the replies' arrival.

    Completion-to-result is the time from the moment a job's fate became visible at the
    simulator to the moment its reply reached the producer: polling delay plus download,
    storage and events.
    """
    ends = {
        j["body"]["prompt"].split()[-1]: j["ends_at"]
        for j in stats["jobs"].values()
        if j["body"].get("prompt", "").startswith(prefix)
    }
    lags = sorted(at - ends[request_id.split("-")[-1]] for request_id, at in arrived.items())
    push = _callback_lags(stats, prefix, ends, arrived) if stats.get("callbacks") else {}
    return {
        **push,
        "submit_burst_s": round(max(j["submitted_at"] for j in stats["jobs"].values()) - started_unix, 2),
        "cpu_ms_per_job": round(cpu_s * 1000 / jobs, 2),
        "polls_per_job": round(stats["polls"] / jobs, 2),
        "result_p50_s": round(statistics.median(lags), 2),
        "result_p95_s": round(lags[int(0.95 * (len(lags) - 1))], 2),
    }


def _callback_lags(
    stats: dict[str, Any], prefix: str, ends: dict[str, float], arrived: dict[str, float]
) -> dict[str, float]:
    """With callbacks on, completion-to-result in two parts: until the simulator sent the
    callback (the simulator's own lag, not the daemon's) and from then to the reply."""
    by_job = {job_id: j["body"]["prompt"].split()[-1] for job_id, j in stats["jobs"].items()}
    sent = {
        by_job[c["job_id"]]: c["sent_at"]
        for c in stats["callbacks"]
        if c.get("sent_at")
        and c["job_id"] in by_job
        and stats["jobs"][c["job_id"]]["body"]["prompt"].startswith(prefix)
    }
    replies = {request_id.split("-")[-1]: at for request_id, at in arrived.items()}
    before = sorted(sent[k] - ends[k] for k in sent)
    after = sorted(replies[k] - sent[k] for k in sent if k in replies)
    if not before or not after:
        return {}
    return {
        "callback_sent_p50_s": round(statistics.median(before), 2),
        "callback_to_result_p50_s": round(statistics.median(after), 2),
        "callback_to_result_p95_s": round(after[int(0.95 * (len(after) - 1))], 2),
    }


def _floor(base: str, jobs: int, poll: tuple[float, float]) -> dict[str, float]:
    """The bare loop's figures, in its own process on the same simulator (reset afterwards).

    Its own process, so its CPU and peak RSS are its own; it publishes with the same
    code as the daemon's run (bench/publisher.py). Its burst and CPU count from its first
    publish, as the daemon's do: before 2026-11-27 its burst counted from before the
    process started, so the floor's start-up flattered the burst ratio.
    """
    queue = f"floor.{uuid.uuid4().hex[:6]}"
    command = [sys.executable, str(ROOT / "bench" / "bare_loop.py"), base, queue, str(jobs), *map(str, poll)]
    run = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT, timeout=max(600, jobs))
    got = json.loads(run.stdout)
    stats = sim_admin(base, "stats")
    sim_admin(base, "reset")
    figures = _figures(stats, "floor ", got["started_unix"], got["cpu_s"], jobs, got["arrived"])
    kept = ("end_to_end_s", "peak_rss_mib", "rss_at_start_mib")
    return {**figures, **{k: got[k] for k in kept}}


def _bytes_in_use(path: Path) -> int:
    """The SQLite ledger's live pages (a deleted row's page is reused, not returned, until VACUUM)."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        pages, free, size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
        )
    return int((pages - free) * size)


def _vacuumed(path: Path) -> int:
    """The ledger's size once rewritten without the gaps deleted and trimmed rows left in their pages."""
    import sqlite3

    copy = path.with_name("vacuumed.sqlite3")
    copy.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("VACUUM INTO ?", (str(copy),))
    size = copy.stat().st_size
    copy.unlink()
    return size


async def _retention(settings: Any, jobs: int) -> dict[str, float]:
    """Ledger KiB per 1,000 finished jobs: as the run left it, trimmed, then forgotten."""
    configure_logging("warning")  # to stderr: stdout carries the one JSON line
    path = settings.data_dir / "ledger.sqlite3"
    per_k = 1000 / jobs / 1024
    sizes = {"ledger_kib_per_1000_jobs": round(_bytes_in_use(path) * per_k, 1)}
    ledger = open_ledger(settings.effective_ledger_url)
    await ledger.open()
    try:
        for label, changes in (
            ("trimmed", {"outbox_retention": 0, "trim_after": 0}),
            ("forgotten", {"dedupe_days": 1e-9}),
        ):
            settings = settings.model_copy(update=changes)
            started = time.perf_counter()
            await Pruner(settings, ledger).round()
            sizes[f"prune_{label}_s"] = round(time.perf_counter() - started, 2)
            sizes[f"ledger_kib_per_1000_jobs_{label}"] = round(_bytes_in_use(path) * per_k, 1)
            sizes[f"ledger_kib_per_1000_jobs_{label}_vacuumed"] = round(_vacuumed(path) * per_k, 1)
    finally:
        await ledger.close()
    return sizes


SIGNING_SECRET = "bench-signing-secret"  # bench/daemon_run.py signs with the same


async def run(
    jobs: int,
    job_seconds: tuple[float, float],
    poll: tuple[float, float],
    modes: list[str],
    retention: bool = False,
    floor: bool = False,
) -> dict[str, Any]:
    """The floor (if asked), then one daemon run per mode, in order, each in a fresh process
    sharing one data folder: a later run starts with what the poll planner learned in the
    earlier one, as a restarted daemon does, and each run's CPU and peak RSS are its own."""
    ensure_rabbitmq("amqp://guest:guest@localhost:5672/")
    sim, base = start_simulator(job_seconds)
    data_dir = Path(tempfile.mkdtemp(prefix="vw-bench-"))
    try:
        floor_figures = _floor(base, jobs, poll) if floor else None
        runs: dict[str, Any] = {}
        for mode in modes:
            figures = _daemon_process(mode, base, data_dir, jobs, poll)
            if floor_figures:
                figures["ratios_to_floor"] = {
                    k: round(figures[k] / v, 2) for k, v in floor_figures.items() if v and k in figures
                }
            runs[mode] = figures
    finally:
        sim.terminate()
    settings = load_settings(None, openrouter_api_key="sim-key", data_dir=data_dir)
    sizes = await _retention(settings, jobs) if retention else {}
    ledger = data_dir / "ledger.sqlite3"
    return {
        "jobs": jobs,
        "job_seconds": list(job_seconds),
        "poll": list(poll),
        **({"floor": floor_figures} if floor_figures else {}),
        "runs": runs,
        **sizes,
        "ledger_mib": round(sum(p.stat().st_size for p in data_dir.glob("ledger.sqlite3*")) / 2**20, 1)
        if ledger.exists()
        else 0,
    }


def _daemon_process(mode: str, base: str, data_dir: Path, jobs: int, poll: tuple[float, float]) -> dict[str, Any]:
    """One daemon run in a fresh ``python bench/daemon_run.py`` process.

    The simulator is configured before the child starts and read after it ends, here, so
    the child's memory and CPU hold the same work as the floor's process and nothing more.
    """
    callbacks = mode == "callbacks"
    sim_admin(base, "config", {"callback_secret": SIGNING_SECRET if callbacks else None})
    command = [sys.executable, str(ROOT / "bench" / "daemon_run.py"), mode, base, str(data_dir), str(jobs)]
    command += map(str, poll)
    run = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT, timeout=max(600, jobs))
    got = json.loads(run.stdout)
    stats = sim_admin(base, "stats")
    sim_admin(base, "reset")
    prefix, started_unix, cpu_s, arrived = (got.pop(k) for k in ("prefix", "started_unix", "cpu_s", "arrived"))
    return {
        **_figures(stats, prefix, started_unix, cpu_s, jobs, arrived),
        **got,
        "submits": stats["submits"],
        **(
            {"callbacks_sent": stats["callbacks_sent"], "callbacks_failed": stats["callbacks_failed"]}
            if callbacks
            else {}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--job-seconds", type=float, nargs=2, default=(20.0, 30.0))
    parser.add_argument("--poll", type=float, nargs=2, default=(2.0, 5.0), help="poll_interval poll_max_interval")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("polling", "callbacks"),
        default=["polling"],
        help="daemon runs, in order, sharing one data folder (a later run starts with what the planner learned)",
    )
    parser.add_argument("--retention", action="store_true", help="also measure the ledger before and after pruning")
    parser.add_argument("--floor", action="store_true", help="first run the bare loop (bench/bare_loop.py); add ratios")
    args = parser.parse_args()
    result = asyncio.run(
        run(args.jobs, tuple(args.job_seconds), tuple(args.poll), args.modes, args.retention, args.floor)  # type: ignore[arg-type]
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
