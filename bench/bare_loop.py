"""The floor: a bare worker doing the same work as the daemon, without any of its guarantees.

aio-pika and httpx only: take a request, acknowledge it at once, submit, poll with
exponential backoff between the same minimum and maximum gaps, download every output,
publish the final event and the reply. No ledger, no plugins, no dedup, no crash safety.
``bench/throughput.py --floor`` runs it (in its own process, so its CPU and memory are
its own) against the same simulator in the same invocation, so the daemon's figures can
be given as ratios to it:

    python bench/bare_loop.py <simulator base url> <queue> <jobs> <min poll> <max poll>

prints one JSON line: its end-to-end time, polls, CPU seconds, peak RSS and when each
reply arrived.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory import peak_rss_mib, rss_mib
from bench.publisher import publish_requests


async def run_floor(
    amqp_url: str, base_url: str, api_key: str, queue: str, jobs: int, poll: tuple[float, float]
) -> dict[str, Any]:
    """Push ``jobs`` requests through the bare loop; return its time, submit burst and reply times."""
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=jobs)
    requests = await channel.declare_queue(queue, auto_delete=True)
    replies = await channel.declare_queue(exclusive=True)
    exchange = await channel.declare_exchange(f"{queue}.events", aio_pika.ExchangeType.TOPIC, auto_delete=True)
    client = httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=httpx.Timeout(30, pool=None),  # a burst queues for a connection instead of failing
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
    )
    folder = Path(tempfile.mkdtemp(prefix="vw-floor-"))
    done = asyncio.Event()
    arrived: dict[str, float] = {}  # request id → when its reply came (unix), for completion-to-result
    polls = 0

    async def work(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal polls
        await message.ack()
        request = json.loads(message.body)
        job = (await client.post("/videos", json={k: v for k, v in request.items() if k != "id"})).json()
        gap = poll[0]
        while True:
            await asyncio.sleep(gap)
            polls += 1
            state = (await client.get(f"/videos/{job['id']}")).json()
            if state["status"] in ("completed", "failed", "cancelled", "expired"):
                break
            gap = min(gap * 1.5, poll[1])
        outputs = []
        for index, _ in enumerate(state.get("unsigned_urls") or []):
            path = folder / f"{request['id']}.{index}.mp4"
            async with client.stream("GET", f"/videos/{job['id']}/content", params={"index": index}) as answer:
                with path.open("wb") as out:
                    async for chunk in answer.aiter_bytes():
                        out.write(chunk)
            outputs.append({"index": index, "location": path.as_uri()})
        event = json.dumps({"id": request["id"], "status": state["status"], "outputs": outputs}).encode()
        await exchange.publish(aio_pika.Message(event), routing_key=f"video.{state['status']}")
        if message.reply_to:
            await channel.default_exchange.publish(aio_pika.Message(event), routing_key=message.reply_to)

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        arrived[json.loads(message.body)["id"]] = time.time()
        if len(arrived) >= jobs:
            done.set()

    async def consume(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        asyncio.create_task(work(message))  # noqa: RUF006 - the floor keeps no track of its work

    await requests.consume(consume)
    await replies.consume(on_reply, no_ack=True)
    # from here, as in bench/daemon_run.py: the burst and the CPU leave out starting up
    started, started_unix, cpu_before, rss_at_start = time.perf_counter(), time.time(), _cpu_seconds(), rss_mib()
    await publish_requests(channel, queue, jobs, "floor", replies.name)
    await done.wait()
    total = time.perf_counter() - started
    await client.aclose()
    await connection.close()
    return {
        "started_unix": started_unix,
        "cpu_s": _cpu_seconds() - cpu_before,
        "end_to_end_s": round(total, 2),
        "polls": polls,
        "arrived": arrived,
        "rss_at_start_mib": round(rss_at_start, 1),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    base, queue, jobs, low, high = sys.argv[1:6]
    got = asyncio.run(
        run_floor("amqp://guest:guest@localhost:5672/", base, "sim-key", queue, int(jobs), (float(low), float(high)))
    )
    print(json.dumps({**got, "peak_rss_mib": round(peak_rss_mib(), 1)}))


if __name__ == "__main__":
    main()
