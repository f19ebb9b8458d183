"""Throughput and scale: N requests through one daemon, with the simulator in its own process.

    python bench/throughput.py --jobs 10000 --job-seconds 20 40

Reports publish rate, intake rate, peak jobs in flight, end-to-end time, polls per job,
peak RSS and ledger size. The simulator runs as a separate ``videoworker simulate``
process so it does not share the daemon's GIL. Numbers go to docs/benchmarks.md.

``--callbacks`` turns the push path on: the simulator sends a signed callback as each job
ends, and the daemon polls only to reconcile. Compare polls per job and CPU with a run
without it.

``--retention`` then measures what retention leaves of the ledger: the bytes in use
(SQLite pages minus free pages) after the run, after a pruning round as it runs once
``outbox_retention`` and ``trim_after`` have passed, and after one past ``dedupe_days``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bare_loop import run_floor  # noqa: E402
from videoworker.config import load_settings  # noqa: E402
from videoworker.core.retention import Pruner  # noqa: E402
from videoworker.ledger import open_ledger  # noqa: E402
from videoworker.logs import configure_logging  # noqa: E402
from videoworker.runtime import Daemon  # noqa: E402
from videoworker_devtools.rabbit import ensure_rabbitmq  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _publish(queue: str, n: int, reply_to: str, channel: aio_pika.abc.AbstractChannel) -> float:
    started = time.perf_counter()
    sem = asyncio.Semaphore(500)

    async def one(i: int) -> None:
        async with sem:
            body = json.dumps({"id": f"b-{i}", "model": "sim/fast", "prompt": f"bench {i}", "duration": 4}).encode()
            await channel.default_exchange.publish(
                aio_pika.Message(body, reply_to=reply_to, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue,
            )

    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


async def _floor(base: str, jobs: int, poll: tuple[float, float]) -> dict[str, float]:
    """The bare loop's figures on the same simulator, which is then reset for the daemon's run."""
    started_unix, cpu_before = time.time(), _cpu_seconds()
    queue = f"floor.{uuid.uuid4().hex[:6]}"
    got = await run_floor("amqp://guest:guest@localhost:5672/", base, "sim-key", queue, jobs, poll)
    cpu_s = _cpu_seconds() - cpu_before
    stats = httpx.get(f"{base.removesuffix('/api/v1')}/_sim/stats", timeout=300).json()
    httpx.post(f"{base.removesuffix('/api/v1')}/_sim/reset", timeout=30)
    return {
        "submit_burst_s": round(max(j["submitted_at"] for j in stats["jobs"].values()) - started_unix, 2),
        "cpu_ms_per_job": round(cpu_s * 1000 / jobs, 2),
        "polls_per_job": round(stats["polls"] / jobs, 2),
        "end_to_end_s": got["end_to_end_s"],
    }


def _cpu_seconds() -> float:
    """CPU seconds of this process (the daemon and the bench's own publisher and reply consumer)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


async def run(
    jobs: int,
    job_seconds: tuple[float, float],
    poll: tuple[float, float],
    retention: bool = False,
    callbacks: bool = False,
    floor: bool = False,
) -> dict[str, Any]:
    ensure_rabbitmq("amqp://guest:guest@localhost:5672/")
    port = _free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "videoworker", "simulate", "--port", str(port), "--job-seconds", *map(str, job_seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    for _ in range(100):
        try:
            httpx.get(f"{base}/videos/models", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    floor_figures = await _floor(base, jobs, poll) if floor else None
    push: dict[str, Any] = {}
    if callbacks:
        secret, callback_port = "bench-signing-secret", _free_port()
        httpx.post(f"http://127.0.0.1:{port}/_sim/config", json={"callback_secret": secret}, timeout=5)
        push = {
            "callback_public_url": f"http://127.0.0.1:{callback_port}/cb",
            "callback_port": callback_port,
            "openrouter_webhook_secret": secret,
        }
    suffix = uuid.uuid4().hex[:6]
    data_dir = Path(tempfile.mkdtemp(prefix="vw-bench-"))
    settings = load_settings(
        None,
        openrouter_api_key="sim-key",
        openrouter_base_url=base,
        data_dir=data_dir,
        request_queue=f"bench.{suffix}",
        events_exchange=f"bench.{suffix}.events",
        poll_interval=poll[0],
        poll_max_interval=poll[1],
        max_inflight=max(jobs, 10),
        log_level="warning",
        log_format="json",
        prefetch=256,
        **push,
    )
    configure_logging(settings.log_level, settings.log_format)
    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run())
    await daemon.ready.wait()
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    channel = await connection.channel()
    replies = await channel.declare_queue(exclusive=True)
    done = asyncio.Event()
    finished: dict[str, str] = {}
    peak = 0

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        finished[event["id"]] = event["status"]
        await message.ack()
        if len(finished) >= jobs:
            done.set()

    await replies.consume(on_reply)
    started = time.perf_counter()
    started_unix = time.time()
    cpu_before = _cpu_seconds()
    publish_s = await _publish(settings.request_queue, jobs, replies.name, channel)
    while not done.is_set():
        peak = max(peak, daemon.engine.load)
        await asyncio.sleep(0.2)
    total_s = time.perf_counter() - started
    cpu_s = _cpu_seconds() - cpu_before
    stats = httpx.get(f"http://127.0.0.1:{port}/_sim/stats", timeout=300).json()
    daemon.request_stop("bench done")
    await task
    await channel.queue_delete(settings.request_queue)
    await channel.queue_delete(settings.dead_letter_queue)
    await channel.exchange_delete(settings.events_exchange)
    await connection.close()
    sim.terminate()
    ledger = data_dir / "ledger.sqlite3"
    sizes = await _retention(settings, jobs) if retention else {}
    figures = {
        "submit_burst_s": round(max(j["submitted_at"] for j in stats["jobs"].values()) - started_unix, 2),
        "cpu_ms_per_job": round(cpu_s * 1000 / jobs, 2),
        "polls_per_job": round(stats["polls"] / jobs, 2),
        "end_to_end_s": round(total_s, 2),
    }
    ratios = {k: round(v / floor_figures[k], 2) for k, v in figures.items() if floor_figures and floor_figures[k]}
    return {
        **({"floor": floor_figures, "ratios_to_floor": ratios} if floor_figures else {}),
        **sizes,
        "jobs": jobs,
        "completed": sum(1 for s in finished.values() if s == "completed"),
        "publish_s": round(publish_s, 2),
        **figures,
        "jobs_per_s": round(jobs / total_s, 1),
        "peak_inflight": peak,
        "submits": stats["submits"],
        "callbacks": callbacks,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ledger_mib": round(sum(p.stat().st_size for p in data_dir.glob("ledger.sqlite3*")) / 2**20, 1)
        if ledger.exists()
        else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--job-seconds", type=float, nargs=2, default=(5.0, 10.0))
    parser.add_argument("--poll", type=float, nargs=2, default=(1.0, 5.0), help="poll_interval poll_max_interval")
    parser.add_argument("--retention", action="store_true", help="also measure the ledger before and after pruning")
    parser.add_argument("--callbacks", action="store_true", help="signed callbacks on; polls only reconcile")
    parser.add_argument("--floor", action="store_true", help="first run the bare loop (bench/bare_loop.py); add ratios")
    args = parser.parse_args()
    result = asyncio.run(
        run(args.jobs, tuple(args.job_seconds), tuple(args.poll), args.retention, args.callbacks, args.floor)  # type: ignore[arg-type]
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
