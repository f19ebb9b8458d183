"""Scale out on one PostgreSQL ledger: 1 and 2 instances, the same burst, the ledger's cost per job.

    python bench/scale_out.py --instances 1 2 --jobs 2000

For each instance count, a fresh schema in the local PostgreSQL (``test`` database), N
``videoworker run`` processes (each its own process, as in production) on one request
queue, and the simulator in its own process. ``--jobs`` requests are published at once
and every reply awaited. Reported per count: jobs/s (publish to last reply), ledger
statements per job (``videoworker_ledger_statements_total`` scraped from every
instance, by kind), CPU seconds per job of the daemons, and the lease-renewal cost
(statements per second and the time of one renewal round for the jobs held, measured
on the same schema with ``--jobs`` live rows). One JSON line; docs/scaling.md models
10 and 100 instances from these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg  # type: ignore[import-untyped, unused-ignore]
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.publisher import publish_requests  # noqa: E402
from bench.simulator import sim_admin, start_simulator  # noqa: E402
from videoworker.core.states import JobState  # noqa: E402
from videoworker.ledger.base import JobRecord  # noqa: E402
from videoworker.ledger.postgres import PostgresLedger  # noqa: E402
from videoworker_devtools.ports import free_port, wait_until_answers  # noqa: E402
from videoworker_devtools.rabbit import ensure_rabbitmq  # noqa: E402

PG = os.environ.get("VIDEOWORKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
AMQP = "amqp://guest:guest@localhost:5672/"
_STATEMENTS = re.compile(r'^videoworker_ledger_statements_total\{kind="(\w+)"\} ([0-9.e+]+)$', re.M)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _statements(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {kind: float(value) for kind, value in _STATEMENTS.findall(text)}


async def _run(count: int, jobs: int, base: str, poll: tuple[float, float], work: Path) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:6]
    schema = f"vwbench_{suffix}"
    queue = f"scale.{suffix}"
    env_common = {
        **os.environ,
        "OPENROUTER_API_KEY": "sim-key",
        "VIDEOWORKER_OPENROUTER_BASE_URL": base,
        "VIDEOWORKER_LEDGER_URL": f"{PG}?schema={schema}",
        "VIDEOWORKER_REQUEST_QUEUE": queue,
        "VIDEOWORKER_EVENTS_EXCHANGE": f"{queue}.events",
        "VIDEOWORKER_POLL_INTERVAL": str(poll[0]),
        "VIDEOWORKER_POLL_MAX_INTERVAL": str(poll[1]),
        "VIDEOWORKER_LOG_LEVEL": "warning",
        # plugins installed here for their tests, not used: not loaded (as in production)
        "VIDEOWORKER_DISABLED_PLUGINS": json.dumps(["s3", "slack", "webhooks", "blocklist"]),
    }
    instances: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        return await _measure(count, jobs, queue, env_common, work, suffix, instances, schema)
    finally:  # a failed or timed-out run leaves no daemon consuming and no schema behind
        for process, _ in instances:
            process.terminate()
        for process, _ in instances:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        await _drop(schema)


async def _measure(
    count: int,
    jobs: int,
    queue: str,
    env_common: dict[str, str],
    work: Path,
    suffix: str,
    instances: list[tuple[subprocess.Popen[bytes], int]],
    schema: str,
) -> dict[str, Any]:
    for index in range(count):
        port = free_port()
        env = {
            **env_common,
            "VIDEOWORKER_DATA_DIR": str(work / f"{suffix}-{index}"),
            "VIDEOWORKER_HEALTH_PORT": str(port),
        }
        log = (work / f"{suffix}-{index}.log").open("w")
        process = subprocess.Popen([sys.executable, "-m", "videoworker", "run"], env=env, stdout=log, stderr=log)
        instances.append((process, port))
    for _, port in instances:
        wait_until_answers(f"http://127.0.0.1:{port}/readyz", 60, f"instance on health port {port}", status=200)
    cpu_before = sum(_cpu_seconds(p.pid) for p, _ in instances)
    connection = await aio_pika.connect_robust(AMQP)
    channel = await connection.channel()
    replies = await channel.declare_queue(exclusive=True)
    arrived: set[str] = set()
    done = asyncio.Event()

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        arrived.add(json.loads(message.body)["id"])
        if len(arrived) >= jobs:
            done.set()

    await replies.consume(on_reply, no_ack=True)
    started = time.perf_counter()
    await publish_requests(channel, queue, jobs, f"scale{suffix}", replies.name)
    await asyncio.wait_for(done.wait(), timeout=max(600, jobs))
    elapsed = time.perf_counter() - started
    cpu = sum(_cpu_seconds(p.pid) for p, _ in instances) - cpu_before
    statements: dict[str, float] = {}
    for _, port in instances:
        for kind, value in _statements(port).items():
            statements[kind] = statements.get(kind, 0) + value
    for process, _ in instances:
        process.terminate()
        process.wait(60)
    await channel.queue_delete(queue)
    await channel.queue_delete(f"{queue}.dead")
    await connection.close()
    renewal = await _lease_renewal(schema, jobs)
    total = sum(statements.values())
    return {
        "instances": count,
        "jobs": jobs,
        "jobs_per_s": round(jobs / elapsed, 1),
        "elapsed_s": round(elapsed, 1),
        "cpu_ms_per_job": round(cpu * 1000 / jobs, 2),
        "statements_per_job": round(total / jobs, 1),
        "statements_per_job_by_kind": {k: round(v / jobs, 2) for k, v in sorted(statements.items())},
        "statements_per_s": round(total / elapsed, 1),
        **renewal,
    }


async def _lease_renewal(schema: str, jobs: int) -> dict[str, float]:
    """One renewal round over ``jobs`` live rows of one owner, timed (median of 10)."""
    ledger = PostgresLedger(PG, schema=schema)
    await ledger.open()
    try:
        now = time.time()
        for i in range(jobs):
            record = JobRecord(
                f"lease-{i}", JobState.RECEIVED, "sim/fast", {"id": f"lease-{i}"}, owner="me", lease_until=now + 30
            )
            await ledger.claim(record, None)
        rounds = []
        for _ in range(10):
            started = time.perf_counter()
            await ledger.renew_leases("me", time.time() + 30)
            rounds.append(time.perf_counter() - started)
        rounds.sort()
        return {"renewal_round_ms": round(rounds[len(rounds) // 2] * 1000, 1), "renewal_rows": jobs}
    finally:
        await ledger.close()


async def _drop(schema: str) -> None:
    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--job-seconds", type=float, nargs=2, default=(2.0, 4.0))
    parser.add_argument("--poll", type=float, nargs=2, default=(1.0, 3.0), help="poll_interval poll_max_interval")
    args = parser.parse_args()
    ensure_rabbitmq(AMQP)
    sim, base = start_simulator(tuple(args.job_seconds))
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="vw-scale-") as work:
            for count in args.instances:
                results.append(asyncio.run(_run(count, args.jobs, base, tuple(args.poll), Path(work))))  # type: ignore[arg-type]
                sim_admin(base, "reset")
    finally:
        sim.terminate()
    print(json.dumps({"job_seconds": list(args.job_seconds), "poll": list(args.poll), "runs": results}))


if __name__ == "__main__":
    main()
