"""The ``videoworker`` command: builds settings, logging and plugins, then hands over; no logic of its own.

Each subcommand lives in a small module of this package. Commands of other
distributions (the development tools' ``simulate`` and ``demo``) are found through
the ``videoworker.commands`` entry-point group when they are run, so a production
install neither needs nor imports them; when they are missing, the command says how
to get them.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import click

from videoworker import __version__
from videoworker.cli import daemon, dead_letters, inspect, jobs, notifications, submit
from videoworker.cli.common import Ctx, fail

#: Entry-point group through which other distributions add subcommands.
COMMAND_GROUP = "videoworker.commands"

#: Commands that live in the development tools, and how to get them.
DEV_COMMANDS = {
    "simulate": "Serve a simulator of OpenRouter's video API (development tools).",
    "demo": "Run the whole path on this machine with the simulator (development tools).",
}
_DEV_HINT = (
    "`videoworker {name}` is a development tool from the videoworker-devtools distribution, "
    "which is not installed. From a checkout: pip install -e ./devtools (make demo and make test do this)."
)


class _Commands(click.Group):
    """Built-in commands plus those other distributions register, loaded only when run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *DEV_COMMANDS, *_entry_points()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        found = super().get_command(ctx, name)
        if found is not None:
            return found
        point = _entry_points().get(name)
        if point is not None:
            try:
                command = point.load()
            except Exception as exc:  # noqa: BLE001 - a broken extra must not break the whole CLI
                return _explain(name, f"`videoworker {name}` could not be loaded ({point.value}): {exc}")
            if isinstance(command, click.Command):
                return command
            return _explain(name, f"entry point {point.value} is not a click command")
        if name in DEV_COMMANDS:
            return _explain(name, _DEV_HINT.format(name=name))
        return None


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {point.name: point for point in metadata.entry_points(group=COMMAND_GROUP)}


def _explain(name: str, message: str) -> click.Command:
    """A stand-in command that says why the real one cannot run."""

    def run(**_: object) -> None:
        fail(message)

    return click.Command(
        name,
        callback=run,
        help=DEV_COMMANDS.get(name, message),
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
    ctx.obj = Ctx(config)


for _module in (daemon, dead_letters, inspect, jobs, notifications, submit):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["COMMAND_GROUP", "Ctx", "fail", "main"]
