"""``videoworker plugins``, ``models`` and ``schema``: what is loaded, what the provider offers, the contract."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from videoworker.cli.common import Ctx, fail
from videoworker.errors import WorkerError


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def plugins(obj: Ctx, as_json: bool) -> None:
    """List the loaded plugins (built-in and installed), their versions and the hooks each implements."""
    from videoworker.plugins.manager import describe_plugins, make_plugin_manager

    try:
        rows = describe_plugins(make_plugin_manager(obj.settings()))
    except WorkerError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        kind = "built-in" if row["builtin"] else row["distribution"]
        click.echo(f"{row['name']:<14} {row['module']:<40} {kind} {row['version']}  hooks: {', '.join(row['hooks'])}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw models list as JSON.")
@click.pass_obj
def models(obj: Ctx, as_json: bool) -> None:
    """List OpenRouter's video models and what each supports."""
    from videoworker.provider.client import OpenRouterClient

    async def fetch() -> list[Any]:
        s = obj.settings()
        key = s.openrouter_api_key.get_secret_value() if s.openrouter_api_key else None
        async with OpenRouterClient(s.openrouter_base_url, key) as client:
            return await client.video_models()

    try:
        found = asyncio.run(fetch())
    except WorkerError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps([m.model_dump(mode="json") for m in found], indent=2))
        return
    for m in found:
        click.echo(
            f"{m.id:<28} durations={m.supported_durations} resolutions={m.supported_resolutions} "
            f"aspect_ratios={m.supported_aspect_ratios}"
        )


@click.command()
@click.argument("which", type=click.Choice(["request", "event", "all", "asyncapi"]), default="all")
def schema(which: str) -> None:
    """Print the JSON Schemas of the request and result-event messages, or the AsyncAPI 3 document."""
    if which == "asyncapi":
        from videoworker.contract.asyncapi import render

        click.echo(render(), nl=False)
        return
    from videoworker.contract.schemas import schemas

    found = schemas()
    click.echo(json.dumps(found if which == "all" else found[which], indent=2))


COMMANDS = (plugins, models, schema)
