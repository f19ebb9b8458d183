"""``videoworker demo``: the whole path on one machine, with the simulator standing in for OpenRouter.

Starts RabbitMQ if it is installed but down, the simulator on a free port, the daemon
in this process (its own queue names, so it never touches a real deployment's), then
publishes a few requests, waits for their final events and shows where the videos are.
With ``--callbacks`` the push path is on: the simulator sends a signed callback as each
job ends, the daemon's receiver checks it and polls that job at once, and the demo shows
how many callbacks came and how many polls were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import click

from videoworker.amqp.producer import submit
from videoworker.config import load_settings
from videoworker.logs import configure_logging
from videoworker.runtime import Daemon
from videoworker_devtools.demo_sinks import sinks
from videoworker_devtools.ports import free_port
from videoworker_devtools.rabbit import BrokerMissing, ensure_rabbitmq
from videoworker_devtools.simulator import SimConfig, SimulatorThread

PROMPTS = [
    "A golden retriever playing fetch on a sunny beach",
    "Time-lapse of clouds rolling over snowy mountains",
    "A paper boat drifting down a rainy street",
    "Neon city at night seen from a slow drone",
    "A hummingbird hovering over a red flower, slow motion",
]


async def run_demo(
    config: Path | None, count: int, data_dir: Path, *, with_sinks: bool = False, with_callbacks: bool = False
) -> int:
    """Return the exit code: 0 when every request completed (and, with sinks, reached every sink;
    with callbacks, each job was found through its callback)."""
    base = load_settings(config)
    try:
        click.echo(ensure_rabbitmq(base.amqp_url.get_secret_value()))
    except BrokerMissing as exc:
        click.echo(f"videoworker demo: {exc}", err=True)
        return 2
    with contextlib.ExitStack() as stack:
        extra = stack.enter_context(sinks()) if with_sinks else None
        code = await _run(config, count, data_dir, extra.plugin_config() if extra else {}, with_callbacks)
        if extra is not None and code == 0:
            click.echo("and in the sinks:")
            code = 0 if await extra.report(_RESULTS) else 1
    return code


_RESULTS: list[dict[str, Any]] = []


async def _run(config: Path | None, count: int, data_dir: Path, plugins: dict[str, Any], callbacks: bool) -> int:
    suffix = uuid.uuid4().hex[:6]
    secret = f"demo-signing-{suffix}"
    with SimulatorThread(SimConfig(job_seconds=(2.0, 4.0), callback_secret=secret if callbacks else None)) as sim:
        push: dict[str, Any] = {}
        if callbacks:
            port = free_port()
            push = {
                "callback_public_url": f"http://127.0.0.1:{port}/callbacks",
                "callback_port": port,
                "openrouter_webhook_secret": secret,
            }
        settings = load_settings(
            config,
            openrouter_api_key=sim.api_key,
            openrouter_base_url=sim.base_url,
            data_dir=data_dir,
            request_queue=f"demo.{suffix}.requests",
            events_exchange=f"demo.{suffix}.events",
            poll_interval=0.5,
            poll_max_interval=2.0,
            log_format="console",
            log_level="warning",
            plugins=plugins,
            **push,
        )
        configure_logging(settings.log_level, settings.log_format)
        click.echo(f"simulator at {sim.base_url}; data in {data_dir.resolve()}; queue {settings.request_queue}")
        daemon = Daemon(settings)
        running = asyncio.create_task(daemon.run())
        await daemon.ready.wait()
        requests = [
            {
                "model": "google/veo-3.1",
                "prompt": PROMPTS[i % len(PROMPTS)],
                "duration": 4,
                "resolution": "720p",
                "metadata": {"demo": i},
                "id": f"demo-{suffix}-{i}",
            }
            for i in range(count)
        ]
        requests.append(
            {"id": f"demo-{suffix}-bad", "model": "google/veo-3.1", "prompt": "too big", "resolution": "9000p"}
        )
        click.echo(f"published {count} requests and one bad one; waiting for results…")
        try:
            results = await submit(settings, requests, wait=120, on_event=_progress)
        finally:
            daemon.request_stop("demo finished")
            await running
            await _drop_queues(settings)
        stats = sim.stats()
    _RESULTS[:] = results
    code = _report(results, count)
    if callbacks:
        code = code or _report_callbacks(stats, count)
    return code


def _report_callbacks(stats: dict[str, Any], count: int) -> int:
    """With the push path on, each job should be polled once: the poll its callback asked for."""
    sent, polls = stats["callbacks_sent"], stats["polls"]
    click.echo(f"push path: {sent} signed callbacks delivered; {polls} polls for {count} jobs")
    return 0 if sent >= count and polls <= count else 1


def _progress(event: dict[str, Any]) -> None:
    click.echo(f"  {event['id']}: {event['status']}")


def _report(results: list[dict[str, Any]], count: int) -> int:
    ok = 0
    for event in results:
        if event["status"] == "completed":
            ok += 1
            for out in event["outputs"]:
                click.echo(f"✔ {event['id']}: {out['location']} ({out['bytes']} bytes, sha256 {out['sha256'][:12]}…)")
        else:
            error = event["error"] or {}
            click.echo(f"✘ {event['id']}: failed, {error.get('code')}: {error.get('message')}")
    click.echo(f"{ok}/{count} videos stored; the bad request was refused and dead-lettered as it should be.")
    return 0 if ok == count else 1


async def _drop_queues(settings: object) -> None:
    import aio_pika

    from videoworker.config import Settings

    assert isinstance(settings, Settings)
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        for name in (settings.request_queue, settings.dead_letter_queue):
            await channel.queue_delete(name)
        await channel.exchange_delete(settings.events_exchange)
