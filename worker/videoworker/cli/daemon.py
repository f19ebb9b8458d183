"""``videoworker run``, ``check`` and ``config``: running the daemon and looking at it from outside."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from collections.abc import Coroutine
from typing import Any

import click

from videoworker.cli.common import Ctx, fail
from videoworker.config import Settings
from videoworker.config_report import describe
from videoworker.core.schedule import cancel_and_wait
from videoworker.errors import ConfigError, WorkerError
from videoworker.logs import configure_logging, scrub_text


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
        _run_to_the_end(main_loop())
    except ConfigError as exc:
        fail(str(exc))
    except Exception as exc:  # e.g. the ledger's host refuses: one line (the traceback at debug level)
        logging.getLogger("videoworker.runtime").debug("the daemon stopped on an error", exc_info=True)
        fail(f"stopped: {scrub_text(f'{type(exc).__name__}: {exc}')}", code=1)


def _run_to_the_end(main: Coroutine[Any, Any, None]) -> None:
    """Run the daemon's loop, then exit even if a plugin left a thread blocked in a call that never returns.

    ``asyncio.run`` would wait for such a thread (its executor's shutdown does), and so would
    the interpreter's exit: a stop that systemd or Docker then ends with SIGKILL. The loop
    is closed without waiting, and the process leaves without the stray thread.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        loop.run_until_complete(_cancel_the_rest())
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
    stray = [
        t.name for t in threading.enumerate() if t.is_alive() and not t.daemon and t is not threading.main_thread()
    ]
    if stray:
        logging.getLogger("videoworker.runtime").warning("leaving threads that never returned behind: %s", stray)
        logging.shutdown()
        os._exit(0)


async def _cancel_the_rest() -> None:
    """Cancel what the daemon left running, and wait a moment for each task to take its cancellation.

    A task held by its thread (``run_in_thread``: a copy that is still running) is let go
    with that thread; its job kept its lease, so no peer repeats the work before it runs out.
    """
    await cancel_and_wait([task for task in asyncio.all_tasks() if task is not asyncio.current_task()])


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
@click.option("--reference", is_flag=True, help="Print every setting, its environment name, default and meaning.")
@click.pass_obj
def show_config(obj: Ctx, reference: bool) -> None:
    """Print the effective configuration as JSON, secrets redacted (plugins' declared secrets too)."""
    if reference:
        from videoworker.config_report import reference as table

        click.echo(table(), nl=False)
        return
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
