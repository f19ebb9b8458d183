"""``videoworker notifications``: what notifier plugins are owed, what was given up, and replaying it."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import TypeVar

import click

from videoworker.cli.common import Ctx, fail, when, with_ledger
from videoworker.ledger.base import OwedNotification

T = TypeVar("T")


@click.group(invoke_without_command=True)
@click.option("--failed", is_flag=True, help="Only the dead ones: given up after notify_retry_hours, or refused.")
@click.option("--pending", is_flag=True, help="Only those not yet delivered.")
@click.option("--request", "request_id", help="Only this request id's.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def notifications(
    ctx: click.Context, failed: bool, pending: bool, request_id: str | None, limit: int, as_json: bool
) -> None:
    """List notifications owed to notifier plugins (webhooks, Slack, …), newest first.

    Each is delivered at least once, retried with backoff for notify_retry_hours, then
    marked dead. `videoworker notifications replay ID…` (or `--all`) makes dead ones due again.
    """
    if ctx.invoked_subcommand is not None:
        return
    obj: Ctx = ctx.obj
    state = "dead" if failed else "pending" if pending else None
    rows = with_ledger(obj, lambda ledger: ledger.list_notifications(state=state, request_id=request_id, limit=limit))
    if as_json:
        click.echo(json.dumps([_row(n) for n in rows], indent=2))
        return
    if not rows:
        click.echo("no notifications" + (f" in state {state}" if state else ""))
        return
    click.echo(f"{'ID':>6}  {'STATE':<9} {'TRIES':>5}  {'PLUGIN/TARGET':<28} {'REQUEST:STATUS':<36} WHEN / LAST ERROR")
    for n in rows:
        at = when(n.delivered_at if n.state == "delivered" else n.next_at)
        note = at if n.state != "dead" else (n.last_error or "")[:60]
        target = f"{n.plugin}/{n.target_key}"[:28]
        click.echo(f"{n.id:>6}  {n.state:<9} {n.attempts:>5}  {target:<28} {n.request_id + ':' + n.status:<36} {note}")


@notifications.command()
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Replay every dead notification.")
@click.pass_obj
def replay(obj: Ctx, ids: tuple[int, ...], every: bool) -> None:
    """Make dead notifications due again (by ID, or --all), with a fresh notify_retry_hours."""
    if bool(ids) == every:
        fail("give notification ids or --all (not both)")
    deadline = time.time() + obj.settings().notify_retry_hours * 3600
    count = with_ledger(
        obj, lambda ledger: ledger.replay_notifications(None if every else list(ids), deadline=deadline)
    )
    click.echo(f"{count} notification(s) will be delivered again")
    if ids and count < len(ids):
        fail(f"{len(ids) - count} of the ids given are not dead notifications", code=1)


def _row(n: OwedNotification) -> dict[str, object]:
    row = asdict(n)
    row["notification_id"] = n.stable_id
    return row


COMMANDS = (notifications,)
