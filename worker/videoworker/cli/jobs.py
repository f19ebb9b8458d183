"""``videoworker status``, ``jobs`` and ``retry``: a job's story, a listing, and an operator's re-run.

All three read the ledger the daemon writes (SQLite or PostgreSQL, from the same
settings), so they work whether or not a daemon is running; a retried job is picked
up by any running daemon at its next adoption round (within ``lease_seconds / 3``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click

from videoworker.cli.common import Ctx, fail, parse_age, when, with_ledger
from videoworker.core.retry import NotRetryable, error_code, plan_retry, retry_data
from videoworker.core.states import JobState
from videoworker.errors import WorkerError
from videoworker.ledger.base import JobRecord, Ledger, OwedNotification

STATES = [state.value for state in JobState]


@click.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(obj: Ctx, request_id: str, as_json: bool) -> None:
    """Show one job: state, history with timestamps, provider job id, attempts, outputs, error and cost."""

    async def read(ledger: Ledger) -> tuple[JobRecord | None, list[OwedNotification]]:
        return await ledger.get(request_id), await ledger.list_notifications(request_id=request_id, limit=20)

    record, notes = with_ledger(obj, read)
    if record is None:
        fail(f"no job {request_id!r} in the ledger (never received, or forgotten after dedupe_days)", code=1)
    shown = _describe(record)
    shown["notifications"] = [
        {"plugin": n.plugin, "target": n.target_key, "status": n.status, "state": n.state, "attempts": n.attempts}
        for n in notes
    ]
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    for key in ("id", "state", "model", "job_id", "attempts", "retries", "owner", "cost", "error"):
        if shown.get(key) not in (None, ""):
            click.echo(f"{key + ':':<10} {shown[key]}")
    click.echo(f"{'changed:':<10} {when(record.updated_at)}")
    if shown["trimmed"]:
        click.echo("details:   trimmed (trim_after): the request and history are no longer kept")
    if shown["history"]:
        click.echo("history:")
        for entry in shown["history"]:
            extra = f"  (retry {entry['retry']})" if "retry" in entry else ""
            click.echo(f"  {entry.get('at', ''):<26} {entry.get('state', '')}{extra}")
    for output in shown["outputs"]:
        click.echo(f"output {output.get('index')}: {output.get('location')}  {output.get('bytes')} bytes")
    for n in shown["notifications"]:
        click.echo(f"notify {n['plugin']}/{n['target']} ({n['status']}): {n['state']} after {n['attempts']} tries")


@click.command()
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--since", help="Only jobs changed within this age: 30s, 15m, 1h, 2d.")
@click.option("--model", help="Only jobs of this model.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def jobs(obj: Ctx, state: str | None, since: str | None, model: str | None, limit: int, as_json: bool) -> None:
    """List jobs, most recently changed first, and count every job by state."""
    after = time.time() - parse_age(since) if since else None

    async def read(ledger: Ledger) -> tuple[list[JobRecord], dict[str, int]]:
        found = await ledger.list_jobs(state=JobState(state) if state else None, since=after, model=model, limit=limit)
        return found, await ledger.counts()

    rows, counts = with_ledger(obj, read)
    by_state = {s: counts.get(s, 0) for s in STATES}
    if as_json:
        click.echo(json.dumps({"jobs": [_describe(r) for r in rows], "counts": by_state}, indent=2))
        return
    click.echo(f"{'ID':<36} {'STATE':<15} {'MODEL':<26} {'CHANGED':<21} {'COST':>8}  ERROR")
    for r in rows:
        cost = _cost(r)
        cost_text = f"{cost:.2f}" if cost is not None else ""
        click.echo(
            f"{r.request_id[:36]:<36} {r.state.value:<15} {r.model[:26]:<26} {when(r.updated_at):<21}"
            f" {cost_text:>8}  {error_code(r) or ''}"
        )
    if not rows:
        click.echo("(no jobs match)")
    click.echo("counts: " + ", ".join(f"{s} {n}" for s, n in by_state.items() if n) or "counts: none")


@click.command()
@click.argument("request_id")
@click.option("--pay-again", is_flag=True, help="Allow a retry that submits again and may be charged again.")
@click.option("--no-check", is_flag=True, help="Do not ask the provider whether its video can still be downloaded.")
@click.pass_obj
def retry(obj: Ctx, request_id: str, pay_again: bool, no_check: bool) -> None:
    """Re-run a failed job from the step that failed; a running daemon picks it up.

    storage_failed and download_failed download and store the provider's finished video
    again, paying nothing, as long as the provider still has it (checked first). timeout
    polls the job again. A retry that submits again (provider_failed, a submit whose
    outcome is unknown) may be charged twice, so it needs --pay-again.
    """
    record = with_ledger(obj, lambda ledger: ledger.get(request_id))
    if record is None:
        fail(f"no job {request_id!r} in the ledger", code=1)
    try:
        plan = plan_retry(record)
    except NotRetryable as exc:
        fail(str(exc), code=1)
    if plan.pays_again and not pay_again:
        fail(f"retrying {request_id} may pay the provider again: {plan.why}. Add --pay-again to do it anyway", code=1)
    if plan.to is JobState.COMPLETED and not no_check:
        _check_downloadable(obj, record)
    moved = with_ledger(obj, lambda ledger: ledger.reopen(request_id, record.state, plan.to, retry_data(record, plan)))
    if not moved:
        fail(f"job {request_id} changed while retrying it (another retry?); look again with `videoworker status`")
    click.echo(f"{request_id}: {record.state.value} → {plan.to.value}; {plan.why}. A running daemon takes it next.")


def _check_downloadable(obj: Ctx, record: JobRecord) -> None:
    """Refuse, before changing anything, when the provider no longer has the finished video."""
    from videoworker.provider.client import OpenRouterClient

    async def ask() -> str:
        s = obj.settings()
        key = s.openrouter_api_key.get_secret_value() if s.openrouter_api_key else None
        assert record.job_id is not None
        async with OpenRouterClient(s.openrouter_base_url, key) as client:
            return (await client.poll(record.job_id)).status

    try:
        status = asyncio.run(ask())
    except WorkerError as exc:
        fail(f"cannot ask the provider about job {record.job_id} ({exc}); retry later, or pass --no-check")
    if status != "completed":
        fail(f"the provider reports job {record.job_id} as {status}: its video cannot be downloaded again", code=1)


def _describe(r: JobRecord) -> dict[str, Any]:
    found = r.data.get("final")
    final: dict[str, Any] = found if isinstance(found, dict) else {}
    history = r.data.get("history")
    return {
        "id": r.request_id,
        "state": r.state.value,
        "model": r.model,
        "job_id": r.job_id,
        "attempts": r.attempts,
        "retries": r.data.get("retries", 0),
        "owner": r.owner,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "history": history if isinstance(history, list) else [],
        "outputs": r.data.get("outputs") or final.get("outputs") or [],
        "error": final.get("error"),
        "cost": _cost(r),
        "trimmed": bool(r.data.get("trimmed")),
    }


def _cost(r: JobRecord) -> float | None:
    from videoworker.core.budget import actual_cost

    return actual_cost(r.data.get("usage"))


COMMANDS = (status, jobs, retry)
