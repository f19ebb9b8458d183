"""One daemon run for bench/throughput.py, in a process of its own like the floor's.

It imports what the floor's process imports (aio-pika, the publisher, the memory
reader) plus the daemon and the free-port helper, and nothing else of the bench's: the
simulator's control calls and the figures are the parent's. So its CPU and peak RSS are the daemon's, next to the
same publisher and reply consumer the floor carries.

    python bench/daemon_run.py <callbacks|polling> <simulator base url> <data dir> <jobs> <min poll> <max poll>

prints one JSON line: the run's figures, when it started, its CPU seconds and when each
reply arrived.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import uuid
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory import peak_rss_mib, rss_mib
from bench.publisher import publish_requests
from videoworker.config import load_settings
from videoworker.logs import configure_logging
from videoworker.runtime import Daemon
from videoworker_devtools.ports import free_port

#: The simulator signs its callbacks with this (bench/throughput.py configures it).
SIGNING_SECRET = "bench-signing-secret"


def _cpu_seconds() -> float:
    """CPU seconds of this process (the daemon and the bench's own publisher and reply consumer)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _daemon(base: str, data_dir: Path, jobs: int, poll: tuple[float, float], callbacks: bool) -> dict[str, Any]:
    """One daemon run in this process: publish ``jobs`` requests at once, wait for every reply.

    Only the daemon, the publisher and the reply consumer run here, as in the floor's
    process; the simulator's control calls are the parent's.
    """
    push: dict[str, Any] = {}
    if callbacks:
        callback_port = free_port()
        push = {
            "callback_public_url": f"http://127.0.0.1:{callback_port}/cb",
            "callback_port": callback_port,
            "openrouter_webhook_secret": SIGNING_SECRET,
        }
    suffix = uuid.uuid4().hex[:6]
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
        # plugins installed in this environment for their tests, not used here: not loaded (as in production)
        disabled_plugins=[p.name for p in entry_points(group="videoworker") if not p.value.startswith("videoworker.")],
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
    arrived: dict[str, float] = {}
    statuses: dict[str, str] = {}
    peak = 0

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        arrived[event["id"]], statuses[event["id"]] = time.time(), event["status"]
        await message.ack()
        if len(arrived) >= jobs:
            done.set()

    await replies.consume(on_reply)
    started, started_unix, cpu_before = time.perf_counter(), time.time(), _cpu_seconds()
    rss_at_start = rss_mib()
    publish_s = await publish_requests(channel, settings.request_queue, jobs, f"bench{suffix}", replies.name)
    while not done.is_set():
        peak = max(peak, daemon.engine.load)
        await asyncio.sleep(0.2)
    total_s = time.perf_counter() - started
    cpu_s = _cpu_seconds() - cpu_before
    daemon.request_stop("bench done")
    await task
    peak_rss = peak_rss_mib()
    await channel.queue_delete(settings.request_queue)
    await channel.queue_delete(settings.dead_letter_queue)
    await channel.exchange_delete(settings.events_exchange)
    await connection.close()
    return {
        "prefix": f"bench{suffix} ",
        "started_unix": started_unix,
        "cpu_s": cpu_s,
        "arrived": arrived,
        "end_to_end_s": round(total_s, 2),
        "completed": sum(1 for s in statuses.values() if s == "completed"),
        "publish_s": round(publish_s, 2),
        "jobs_per_s": round(jobs / total_s, 1),
        "peak_inflight": peak,
        "peak_rss_mib": round(peak_rss, 1),
        "rss_at_start_mib": round(rss_at_start, 1),
    }


def main() -> None:
    mode, base, data_dir, jobs, low, high = sys.argv[1:7]
    figures = asyncio.run(_daemon(base, Path(data_dir), int(jobs), (float(low), float(high)), mode == "callbacks"))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
