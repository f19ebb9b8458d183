"""``videoworker run``, ``check`` and ``config``: running the daemon and looking at it from outside."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from videoworker.cli.common import Ctx, fail
from videoworker.config import Settings, describe
from videoworker.errors import ConfigError, WorkerError
from videoworker.logs import configure_logging


@click.command()
@click.pass_obj
def run(obj: Ctx) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT.

    On a stop signal, intake stops, in-flight submits get shutdown_grace seconds to record
    their job ids, and unfinished jobs stay in the ledger to resume on the next start.
    """
    from videoworker.runtime import Daemon

    try:
        settings = obj.settings()
        configure_logging(settings.log_level, settings.log_format)
        daemon = Daemon(settings)
    except WorkerError as exc:
        fail(str(exc))

    async def main_loop() -> None:
        daemon.install_signal_handlers()
        await daemon.run()

    try:
        asyncio.run(main_loop())
    except ConfigError as exc:
        fail(str(exc))


@click.command()
@click.option("--port", type=int, help="Health port (default: the health_port setting).")
@click.pass_obj
def check(obj: Ctx, port: int | None) -> None:
    """Exit 0 if the local daemon is ready (GET /readyz), else 1; for HEALTHCHECK and probes."""
    import httpx

    try:
        port = port or obj.settings().health_port
    except ConfigError as exc:
        fail(str(exc))
    if not port:
        fail("no health port: set health_port (VIDEOWORKER_HEALTH_PORT) or pass --port")
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    except httpx.HTTPError as exc:
        fail(f"daemon not answering on port {port}: {type(exc).__name__}", code=1)
    click.echo(answer.text)
    sys.exit(0 if answer.status_code == 200 else 1)


@click.command("config")
@click.pass_obj
def show_config(obj: Ctx) -> None:
    """Print the effective configuration as JSON, secrets redacted (plugins' declared secrets too)."""
    try:
        settings = obj.settings()
        click.echo(json.dumps(describe(settings, _declared_secrets(settings)), indent=2, sort_keys=True))
    except ConfigError as exc:
        fail(str(exc))


def _declared_secrets(settings: Settings) -> dict[str, set[str]]:
    """Each plugin's secret settings fields; none when plugins cannot load (names that look secret stay hidden)."""
    from videoworker.plugins.hooks import Hooks
    from videoworker.plugins.manager import make_plugin_manager
    from videoworker.plugins.settings import secret_fields

    try:
        models = Hooks(make_plugin_manager(settings), settings).declared_models("videoworker_settings_model")
    except WorkerError:
        return {}
    return {name: secret_fields(model) for name, model in models.items()}


COMMANDS = (run, check, show_config)
