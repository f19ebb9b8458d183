"""``videoworker plugins``, ``models`` and ``schema``: what is loaded, what the provider offers, the contract."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click
from pydantic import BaseModel

from videoworker.cli.common import Ctx, fail
from videoworker.errors import ConfigError, WorkerError


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def plugins(obj: Ctx, as_json: bool) -> None:
    """List the loaded plugins (built-in and installed), their versions and the hooks each implements."""
    from videoworker.plugins.hooks import Hooks
    from videoworker.plugins.manager import describe_plugins, make_plugin_manager
    from videoworker.plugins.settings import plugin_settings

    try:
        settings = obj.settings()
        pm = make_plugin_manager(settings)
        models = Hooks(pm, settings).declared_models("videoworker_settings_model")
    except WorkerError as exc:
        fail(str(exc))
    rows = describe_plugins(pm)
    for row in rows:
        model = models.get(row["name"])
        row["settings"] = "ok"
        try:
            if model is not None:
                plugin_settings(settings, row["name"], model)
        except ConfigError as exc:
            row["settings"] = f"invalid: {exc}"
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        kind = "built-in" if row["builtin"] else row["distribution"]
        hooks = ", ".join(h.removeprefix("videoworker_") for h in row["hooks"])
        click.echo(f"{row['name']:<14} {kind:<22} {row['version']:<8} settings {row['settings']:<3}  hooks: {hooks}")


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
            f"{m.id:<28} {_price(m.pricing_skus):<28} durations={m.supported_durations} "
            f"resolutions={m.supported_resolutions} aspect_ratios={m.supported_aspect_ratios}"
        )


def _price(skus: dict[str, str] | None) -> str:
    """The per-second prices a model lists: ``$0.50/s (1080p $0.75)``, or ``price unknown``."""
    per_second = {k.removeprefix("per-video-second").lstrip("-"): v for k, v in (skus or {}).items()}
    if not per_second:
        return "price unknown"
    base = per_second.pop("", None)
    others = ", ".join(f"{name} ${value}" for name, value in sorted(per_second.items()))
    text = f"${base}/s" if base is not None else "per second:"
    return f"{text} ({others})" if others else text


@click.command()
@click.argument("which", type=click.Choice(["request", "event", "all", "asyncapi"]), default="all")
@click.pass_obj
def schema(obj: Ctx, which: str) -> None:
    """Print the JSON Schemas of the request and result-event messages, or the AsyncAPI 3 document.

    The request schema includes the delivery options of the plugins loaded here.
    """
    if which == "asyncapi":
        from videoworker.contract.asyncapi import render

        click.echo(render(), nl=False)
        return
    from videoworker.contract.schemas import schemas

    found = schemas(_delivery_models(obj))
    click.echo(json.dumps(found if which == "all" else found[which], indent=2))


def _delivery_models(obj: Ctx) -> dict[str, type[BaseModel]]:
    from videoworker.plugins.hooks import Hooks
    from videoworker.plugins.manager import make_plugin_manager

    try:
        settings = obj.settings()
        return Hooks(make_plugin_manager(settings), settings).declared_models("videoworker_delivery_model")
    except WorkerError as exc:
        fail(str(exc))


COMMANDS = (plugins, models, schema)
