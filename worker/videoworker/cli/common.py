"""What every subcommand shares: the context object that builds settings, and the one way to fail."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from videoworker.config import Settings, load_settings


class Ctx:
    """The ``--config`` choice, carried to subcommands; settings are built when a command needs them."""

    def __init__(self, config: Path | None) -> None:
        self.config = config

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.config, **overrides)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line naming the problem to stderr and exit with ``code``."""
    click.echo(f"videoworker: {message}", err=True)
    sys.exit(code)
