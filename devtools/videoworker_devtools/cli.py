"""The development commands ``videoworker simulate`` and ``videoworker demo``.

The ``videoworker`` CLI finds them through the ``videoworker.commands`` entry-point group
of this distribution, so a production install neither carries nor imports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import click

from videoworker.cli.common import Ctx, fail
from videoworker.errors import WorkerError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8090, show_default=True)
@click.option("--api-key", default="sim-key", show_default=True, help="The key clients must send.")
@click.option("--job-seconds", nargs=2, type=float, default=(2.0, 5.0), show_default=True, help="Job duration range.")
@click.option("--failure-rate", type=float, default=0.0, show_default=True, help="Jobs that end failed.")
@click.option("--error-rate", type=float, default=0.0, show_default=True, help="Answers replaced by 429/5xx.")
@click.option("--truncate-rate", type=float, default=0.0, show_default=True, help="Downloads cut short.")
@click.option("--latency", nargs=2, type=float, default=(0.0, 0.0), show_default=True, help="Added delay range, s.")
@click.option("--never-finish-rate", type=float, default=0.0, show_default=True, help="Jobs that never finish.")
@click.option(
    "--submit-reset-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Submits accepted, then the connection is cut (ambiguous).",
)
@click.option("--outputs", type=int, default=1, show_default=True, help="Videos per job.")
@click.option("--seed", type=int, default=None, help="Seed the fault dice, for repeatable runs.")
def simulate(
    host: str,
    port: int,
    api_key: str,
    job_seconds: tuple[float, float],
    failure_rate: float,
    error_rate: float,
    truncate_rate: float,
    latency: tuple[float, float],
    never_finish_rate: float,
    submit_reset_rate: float,
    outputs: int,
    seed: int | None,
) -> None:
    """Serve a simulator of OpenRouter's video API (base URL http://HOST:PORT/api/v1)."""
    from videoworker_devtools.simulator import SimConfig, serve

    config = SimConfig(
        api_key=api_key,
        job_seconds=job_seconds,
        failure_rate=failure_rate,
        error_rate=error_rate,
        truncate_rate=truncate_rate,
        latency=latency,
        never_finish_rate=never_finish_rate,
        submit_reset_rate=submit_reset_rate,
        outputs=outputs,
        seed=seed,
    )

    async def forever() -> None:
        runner = await serve(host, port, config)
        click.echo(f"simulator serving http://{host}:{port}/api/v1 (admin: /_sim/stats); Ctrl-C stops", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(forever())


@click.command()
@click.option("--count", type=int, default=3, show_default=True, help="Requests to publish.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("./demo-data"), show_default=True)
@click.option(
    "--sinks", is_flag=True, help="Also store in S3 (moto) and announce through a signed webhook and Slack (local)."
)
@click.option(
    "--callbacks", is_flag=True, help="Turn the push path on: signed callbacks from the simulator replace most polls."
)
@click.pass_obj
def demo(obj: Ctx, count: int, data_dir: Path, sinks: bool, callbacks: bool) -> None:
    """Run everything here: simulator, RabbitMQ (started if needed), daemon, and a few requests.

    With --sinks the S3, webhooks and Slack plugins are configured against local stand-ins
    (moto's S3 server, a receiver verifying signatures, a Slack stand-in), and the demo
    shows each video in every sink. With --callbacks the simulator sends a signed callback
    as each job ends and the daemon polls that job once, when told.
    """
    from videoworker_devtools.demo import run_demo

    try:
        sys.exit(asyncio.run(run_demo(obj.config, count, data_dir, with_sinks=sinks, with_callbacks=callbacks)))
    except WorkerError as exc:
        fail(str(exc))
