"""The ``videoworker`` command. Builds settings, logging and plugins, then hands over; no logic of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from worker import __version__
from worker.config import Settings, describe, load_settings
from worker.errors import ConfigError, WorkerError
from worker.logging import configure_logging


class _Ctx:
    def __init__(self, config: Path | None) -> None:
        self.config = config

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.config, **overrides)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"videoworker: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="videoworker")
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    envvar="VIDEOWORKER_CONFIG",
    help="TOML settings file (also VIDEOWORKER_CONFIG).",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """videoworker: turns RabbitMQ video requests into OpenRouter videos, stored and announced.

    Settings come from VIDEOWORKER_* variables, the TOML file, and systemd credentials;
    `videoworker config` shows what is in effect.
    """
    ctx.obj = _Ctx(config)


@main.command()
@click.pass_obj
def run(obj: _Ctx) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT.

    On a stop signal, intake stops, in-flight submits get shutdown_grace seconds to record
    their job ids, and unfinished jobs stay in the ledger to resume on the next start.
    """
    from worker.runtime import Daemon

    try:
        settings = obj.settings()
        configure_logging(settings.log_level, settings.log_format)
        daemon = Daemon(settings)
    except WorkerError as exc:
        _fail(str(exc))
        return

    async def main_loop() -> None:
        daemon.install_signal_handlers()
        await daemon.run()

    try:
        asyncio.run(main_loop())
    except ConfigError as exc:
        _fail(str(exc))


@main.command()
@click.option("--port", type=int, help="Health port (default: the health_port setting).")
@click.pass_obj
def check(obj: _Ctx, port: int | None) -> None:
    """Exit 0 if the local daemon is ready (GET /readyz), else 1; for HEALTHCHECK and probes."""
    import httpx

    try:
        port = port or obj.settings().health_port
    except ConfigError as exc:
        _fail(str(exc))
    if not port:
        _fail("no health port: set health_port (VIDEOWORKER_HEALTH_PORT) or pass --port")
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    except httpx.HTTPError as exc:
        _fail(f"daemon not answering on port {port}: {type(exc).__name__}", code=1)
        return
    click.echo(answer.text)
    sys.exit(0 if answer.status_code == 200 else 1)


@main.command("config")
@click.pass_obj
def show_config(obj: _Ctx) -> None:
    """Print the effective configuration as JSON, secrets redacted."""
    try:
        click.echo(json.dumps(describe(obj.settings()), indent=2, sort_keys=True))
    except ConfigError as exc:
        _fail(str(exc))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def plugins(obj: _Ctx, as_json: bool) -> None:
    """List the loaded plugins (built-in and installed) and the hooks each implements."""
    from worker.plugins import describe_plugins, make_plugin_manager

    try:
        rows = describe_plugins(make_plugin_manager(obj.settings()))
    except WorkerError as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        kind = "built-in" if row["builtin"] else row["distribution"]
        click.echo(f"{row['name']:<14} {row['module']:<28} {kind} {row['version']}  hooks: {', '.join(row['hooks'])}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw models list as JSON.")
@click.pass_obj
def models(obj: _Ctx, as_json: bool) -> None:
    """List OpenRouter's video models and what each supports."""
    from worker.openrouter import OpenRouterClient

    async def fetch() -> list[Any]:
        s = obj.settings()
        key = s.openrouter_api_key.get_secret_value() if s.openrouter_api_key else None
        async with OpenRouterClient(s.openrouter_base_url, key) as client:
            return await client.video_models()

    try:
        found = asyncio.run(fetch())
    except WorkerError as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps([m.model_dump(mode="json") for m in found], indent=2))
        return
    for m in found:
        click.echo(
            f"{m.id:<28} durations={m.supported_durations} resolutions={m.supported_resolutions} "
            f"aspect_ratios={m.supported_aspect_ratios}"
        )


@main.command()
@click.option("--model", help="Video model id, e.g. google/veo-3.1.")
@click.option("--prompt", help="What to generate.")
@click.option("--id", "request_id", help="Idempotency key; generated if absent.")
@click.option("--duration", type=int)
@click.option("--resolution")
@click.option("--aspect-ratio")
@click.option("--size")
@click.option("--metadata", help="JSON object echoed in every event.")
@click.option("--file", "file", type=click.File("r"), help="Read the request JSON from a file ('-' for stdin).")
@click.option("--wait", is_flag=True, help="Wait for the final event and show progress.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds to wait with --wait.")
@click.pass_obj
def submit(obj: _Ctx, /, file: Any, wait: bool, timeout: float, metadata: str | None, **fields: Any) -> None:
    """Publish one request to the request queue (from flags or a JSON file)."""
    from worker.producer import submit as publish

    request: dict[str, Any] = json.load(file) if file else {}
    fields["id"] = fields.pop("request_id")
    request.update({k: v for k, v in fields.items() if v is not None})
    if metadata:
        request["metadata"] = json.loads(metadata)

    def progress(event: dict[str, Any]) -> None:
        click.echo(
            f"{event['id']}: {event['status']}" + (f" (job {event['job_id']})" if event.get("job_id") else ""), err=True
        )

    try:
        results = asyncio.run(publish(obj.settings(), [request], wait=timeout if wait else None, on_event=progress))
    except TimeoutError:
        _fail(f"no final event within {timeout:g}s", code=1)
        return
    except (WorkerError, OSError) as exc:
        _fail(str(exc))
        return
    click.echo(json.dumps(results[0], indent=2))
    if wait and results[0].get("status") != "completed":
        sys.exit(1)


@main.command()
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
    from worker.simulator import SimConfig, serve

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


@main.command()
@click.option("--count", type=int, default=3, show_default=True, help="Requests to publish.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("./demo-data"), show_default=True)
@click.pass_obj
def demo(obj: _Ctx, count: int, data_dir: Path) -> None:
    """Run everything here: simulator, RabbitMQ (started if needed), daemon, and a few requests."""
    from worker.demo import run_demo

    try:
        sys.exit(asyncio.run(run_demo(obj.config, count, data_dir)))
    except WorkerError as exc:
        _fail(str(exc))


@main.command()
@click.argument("which", type=click.Choice(["request", "event", "all"]), default="all")
def schema(which: str) -> None:
    """Print the JSON Schemas of the request and result-event messages."""
    from worker.schemas import schemas

    found = schemas()
    click.echo(json.dumps(found if which == "all" else found[which], indent=2))
