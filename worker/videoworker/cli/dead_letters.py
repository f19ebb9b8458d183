"""``videoworker dead-letters``: inspect, fix and replay (or delete) what ended in the dead-letter queue."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import click

from videoworker.cli.common import Ctx, fail
from videoworker.config import Settings
from videoworker.errors import WorkerError

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

    from videoworker.amqp.dead_letters import DeadLetter

T = TypeVar("T")
MAX_MESSAGES = 1000  # = videoworker.amqp.dead_letters.MAX_MESSAGES: most messages one command looks at
RETURNS_WARNING = 10  # RabbitMQ 4.0-4.2 drop a quorum queue message after 20 returns by default


@click.group("dead-letters")
def dead_letters() -> None:
    """Inspect and repair the dead-letter queue (<request_queue>.dead); KEY: a message_id or request id.

    The daemon dead-letters what it refuses (the reason in x-videoworker-error-code/-error headers);
    the broker, what failed delivery_limit deliveries (x-death). Looking leaves the queue as it was.
    """


@dead_letters.command("list")
@click.option("--limit", type=click.IntRange(1, MAX_MESSAGES), default=50, show_default=True, help="Messages shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(obj: Ctx, limit: int, as_json: bool) -> None:
    """List the dead letters, oldest first, with why each is there."""
    from videoworker.amqp.dead_letters import NoDeadLetterQueue, browse

    async def work(settings: Settings, connection: AbstractConnection) -> tuple[int, list[DeadLetter]] | None:
        try:
            return await browse(connection, settings, limit)
        except NoDeadLetterQueue as exc:  # not an error: nothing to list
            click.echo(str(exc), err=as_json)
            return None

    settings, found = _run(obj, work)
    count, letters = found or (0, [])
    if as_json:
        rows = [_summary(letter) for letter in letters]
        click.echo(json.dumps({"queue": settings.dead_letter_queue, "depth": count, "messages": rows}, indent=2))
    elif found is not None:
        shown = f", the first {len(letters)} shown" if count > len(letters) else ""
        click.echo(f"{settings.dead_letter_queue}: {count} message(s){shown}")
        if letters:
            click.echo(f"{'#':>4}  {'MESSAGE_ID':<24} {'REQUEST_ID':<24} {'CODE':<18} {'WHEN':<20} {'SIZE':>7}  REASON")
        for letter in letters:
            code, reason = _reason(letter)
            mid, rid = _cut(letter.message_id or "-", 24), _cut(letter.request_id or "-", 24)
            line = f"{letter.position:>4}  {mid:<24} {rid:<24} {code:<18} {_when(letter):<20} {len(letter.body):>7}  "
            click.echo(line + _cut(reason, 80))
    _warn_returns(letters)


@dead_letters.command()
@click.argument("key")
@click.option("--max-body", type=click.IntRange(0, 1 << 20), default=2048, show_default=True, help="Body chars shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj: Ctx, key: str, max_body: int, as_json: bool) -> None:
    """Show one dead letter by KEY: its headers, properties and body (the first match)."""
    from videoworker.amqp.dead_letters import browse

    settings, (_, letters) = _run(obj, lambda s, c: browse(c, s, MAX_MESSAGES))
    matching = [letter for letter in letters if letter.matches({key})]
    if not matching:
        fail(f"no dead letter with message_id or request id {key} among {len(letters)} looked at", code=1)
    letter = matching[0]
    detail = _detail(letter, max_body)
    if as_json:
        click.echo(json.dumps({"queue": settings.dead_letter_queue, "matches": len(matching), **detail}, indent=2))
        return
    more = f" ({len(matching) - 1} more match {key})" if len(matching) > 1 else ""
    click.echo(f"message {letter.position} of {settings.dead_letter_queue}{more}")
    rows = {
        "message_id": letter.message_id,
        "request id": letter.request_id,
        "reason": "{}: {}".format(*_reason(letter)),
        **detail["properties"],
        "when": _when(letter),
        "size": f"{len(letter.body)} bytes",
        "returns": f"{_returns(letter)} (x-delivery-count: times it went back to this queue)",
    }
    for name, value in rows.items():
        click.echo(f"  {name:<19}{value if value not in (None, '') else '-'}")
    click.echo("headers:")
    for name, value in detail["headers"].items():
        deaths = value if name == "x-death" and isinstance(value, list) else []
        click.echo(f"  {name}:" + ("" if deaths else f" {value}"))
        for death in deaths:  # the broker's record of each dead-lettering, newest first
            click.echo("    - " + ", ".join(f"{k}={v}" for k, v in death.items()))
    click.echo(f"body ({detail['body_kind']}{', truncated' if detail['body_truncated'] else ''}):")
    click.echo(detail["body_text"])
    _warn_returns([letter])


@dead_letters.command()
@click.argument("keys", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Replay every dead letter (up to 1000 per run).")
@click.option("--set", "sets", multiple=True, metavar="FIELD=JSON", help="Set a top-level field to a JSON value.")
@click.option("--drop-field", "drops", multiple=True, metavar="FIELD", help="Remove a top-level field.")
@click.option("--dry-run", is_flag=True, help="Print what would be replayed (fixed), replay nothing.")
@click.option("--yes", is_flag=True, help="Do not ask before replaying --all.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def replay(
    obj: Ctx, /, keys: tuple[str, ...], every: bool, sets: tuple[str, ...], drops: tuple[str, ...], **flags: bool
) -> None:
    """Republish dead letters (by KEY, or --all) to the request queue, optionally fixed.

    \b
    videoworker dead-letters replay order-42 --set 'model="google/veo-3.1"'
    videoworker dead-letters replay order-42 --drop-field colour

    message_id, correlation_id and content_type are kept; reply_to is restored from
    x-original-reply-to. Each message is published with a publisher confirm, and only then
    removed from the dead-letter queue: a crash in between replays it twice at worst, and
    that is harmless, because the daemon's ledger answers a request id it has already
    taken as a duplicate (it never submits it again); so a request that was taken once runs
    again only under a new id: --set 'id="order-42-b"'. Messages not chosen stay, in order.
    """
    from videoworker.amqp.dead_letters import Fix
    from videoworker.amqp.dead_letters import replay as republish

    if bool(keys) == every:
        fail("give dead-letter keys (message_id or request id) or --all (not both)")
    fix = Fix(dict(_parse_set(item) for item in sets), drops)
    settings = _settings(obj)
    if every and not (flags["yes"] or flags["dry_run"]):
        click.confirm(f"Replay every message of {settings.dead_letter_queue} to {settings.request_queue}?", abort=True)
    verb, summary = ("would replay", "would be replayed") if flags["dry_run"] else ("replayed", "replayed")

    def each(letter: DeadLetter, body: bytes) -> None:
        if not flags["as_json"]:
            click.echo(f"{verb} {_label(letter)} -> {settings.request_queue}")
            if flags["dry_run"] or fix.set or fix.drop:
                click.echo("  " + _body_text(body, 2048)[0].replace("\n", "\n  "))

    _, (done, missing) = _run(
        obj, lambda s, c: republish(c, s, set(keys) if keys else None, fix, dry_run=flags["dry_run"], on_each=each)
    )
    if flags["as_json"]:
        rows = [{**_ids(letter), "body": fix.apply(letter).decode(errors="replace")} for letter in done]
        click.echo(json.dumps({"dry_run": flags["dry_run"], "replayed": rows, "not_found": sorted(missing)}, indent=2))
    else:
        click.echo(f"{len(done)} message(s) {summary} to {settings.request_queue}")
    _not_found(missing)


@dead_letters.command()
@click.argument("keys", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Delete every dead letter (needs --yes).")
@click.option("--yes", is_flag=True, help="Confirm --all.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def purge(obj: Ctx, keys: tuple[str, ...], every: bool, yes: bool, as_json: bool) -> None:
    """Delete dead letters for good: those matching KEY, or every one with --all --yes."""
    from videoworker.amqp.dead_letters import purge as delete
    from videoworker.amqp.dead_letters import purge_all

    if bool(keys) == every:
        fail("give dead-letter keys (message_id or request id) or --all (not both)")
    if every and not yes:
        fail("purge --all deletes every dead letter for good; add --yes to confirm")
    if every:
        settings, count = _run(obj, lambda s, c: purge_all(c, s))
        text = f"{count} message(s) purged from {settings.dead_letter_queue}"
        click.echo(json.dumps({"purged": count}) if as_json else text)
        return
    settings, (done, missing) = _run(obj, lambda s, c: delete(c, s, set(keys)))
    if as_json:
        click.echo(json.dumps({"purged": [_ids(letter) for letter in done], "not_found": sorted(missing)}, indent=2))
    else:
        for letter in done:
            click.echo(f"purged {_label(letter)}")
        click.echo(f"{len(done)} message(s) purged from {settings.dead_letter_queue}")
    _not_found(missing)


def _settings(obj: Ctx) -> Settings:
    try:
        return obj.settings()
    except WorkerError as exc:
        fail(str(exc))


def _run(obj: Ctx, work: Callable[[Settings, AbstractConnection], Awaitable[T]]) -> tuple[Settings, T]:
    """Run ``work`` on a connection of its own; any failure is one line, exit 1 (missing queue) or 2."""
    from videoworker.amqp.dead_letters import NoDeadLetterQueue, session

    settings = _settings(obj)
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # it logs a failed connect that the line below reports
    try:
        return settings, asyncio.run(session(settings, lambda connection: work(settings, connection)))
    except WorkerError as exc:
        fail(str(exc), code=1 if isinstance(exc, NoDeadLetterQueue) else 2)


def _parse_set(item: str) -> tuple[str, Any]:
    name, sep, raw = item.partition("=")
    if not sep or not name.strip():
        fail(f"--set {item!r}: expected FIELD=JSON, e.g. --set 'model=\"google/veo-3.1\"'")
    try:
        return name.strip(), json.loads(raw)
    except ValueError as exc:
        fail(f"--set {name}: the value is not JSON ({exc}); a string needs quotes: --set '{name}=\"{raw}\"'")


def _not_found(missing: set[str]) -> None:
    if missing:
        fail(f"not found in the dead-letter queue (first {MAX_MESSAGES} looked at): {', '.join(sorted(missing))}", 1)


def _reason(letter: DeadLetter) -> tuple[str, str]:  # the daemon's refusal from its headers, else the broker's
    headers = letter.headers
    if "x-videoworker-error-code" in headers or "x-videoworker-error" in headers:
        field = headers.get("x-videoworker-error-field")
        text = _plain(headers.get("x-videoworker-error", "")) + (f" (field {_plain(field)})" if field else "")
        return str(_plain(headers.get("x-videoworker-error-code", "-"))), text
    if letter.deaths:
        death, code = letter.deaths[0], str(_plain(letter.deaths[0].get("reason", "-")))
        return code, f"dead-lettered by the broker: {code} x{death.get('count', 1)} from {_plain(death.get('queue'))}"
    return "-", "no reason recorded"


def _when(letter: DeadLetter) -> str:  # published (the producer's timestamp), else dead-lettered by the broker
    stamp = letter.timestamp or (letter.deaths[0].get("time") if letter.deaths else None)
    return stamp.strftime("%Y-%m-%d %H:%M:%SZ") if isinstance(stamp, datetime) else "-"


def _returns(letter: DeadLetter) -> int:
    return count if isinstance(count := letter.headers.get("x-delivery-count"), int) else 0


def _ids(letter: DeadLetter) -> dict[str, Any]:
    return {"position": letter.position, "message_id": letter.message_id, "request_id": letter.request_id}


def _label(letter: DeadLetter) -> str:
    return f"#{letter.position} {letter.message_id or '-'} (request {letter.request_id or '-'}, {_reason(letter)[0]})"


def _summary(letter: DeadLetter) -> dict[str, Any]:
    code, reason = _reason(letter)
    death = letter.deaths[0] if letter.deaths else None
    return {
        **_ids(letter),
        "reason_code": code,
        "reason": reason,
        "death": {k: _plain(death.get(k)) for k in ("reason", "count", "queue")} if death else None,
        "when": None if _when(letter) == "-" else _when(letter),
        "size": len(letter.body),
        "returns": _returns(letter),
    }


def _detail(letter: DeadLetter, max_body: int) -> dict[str, Any]:
    text, truncated = _body_text(letter.body, max_body)
    parsed = letter.json_body()
    return {
        **_summary(letter),
        "properties": {name: getattr(letter, name) for name in ("content_type", "correlation_id", "reply_to")}
        | {"original_reply_to": _plain(letter.headers.get("x-original-reply-to"))},
        "headers": {name: _plain(value) for name, value in letter.headers.items()},
        "body": parsed if parsed is not None and not truncated else None,
        "body_kind": "JSON" if parsed is not None else "not JSON",
        "body_text": text,
        "body_truncated": truncated,
    }


def _body_text(body: bytes, limit: int) -> tuple[str, bool]:  # pretty JSON, else a repr; cut at limit characters
    try:
        text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        text = repr(body[: limit + 1])
    return (text[:limit] + "…", True) if len(text) > limit else (text, False)


def _plain(value: Any) -> Any:
    """A header value as JSON can hold it: bytes decoded, times in ISO 8601, decimals as text, tables walked."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="backslashreplace")
    if isinstance(value, datetime | Decimal):
        return value.isoformat() if isinstance(value, datetime) else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _warn_returns(letters: list[DeadLetter]) -> None:
    if worn := [letter for letter in letters if _returns(letter) >= RETURNS_WARNING]:
        note = "RabbitMQ 4.0-4.2 drop a quorum queue message after 20 returns by default: see docs/dead-letters.md"
        click.echo(f"warning: {len(worn)} message(s) went back to the queue {RETURNS_WARNING}+ times; {note}", err=True)


COMMANDS = (dead_letters,)
