"""Check real messages against the published JSON Schemas, with the ``jsonschema`` library.

For tests: the unit tests check what :func:`build_event` makes, the integration fixtures
every event and reply the daemon really sends. A message that breaks its schema raises
:class:`AssertionError` listing every violation with its JSON path, so the failure says
what to fix. The validators are built once per process.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from videoworker.contract.events import FINAL_STATUSES
from videoworker.contract.schemas import schemas

__all__ = ["check_event", "check_request", "validator"]


def _is_datetime(value: object) -> bool:
    # jsonschema checks date-time only with an optional package; the daemon's own form is all we need
    if not isinstance(value, str):
        return True
    if "T" not in value:
        raise ValueError("no time part")
    return datetime.fromisoformat(value).tzinfo is not None


_FORMATS = FormatChecker(formats=())
_FORMATS.checks("date-time", raises=ValueError)(_is_datetime)


@cache
def validator(which: str) -> Draft202012Validator:
    """The validator of the published schema ``which`` ("request" or "event"), checking date-time formats."""
    schema = schemas()[which]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_FORMATS)


def check_request(body: dict[str, Any] | bytes | str) -> None:
    """Raise AssertionError unless ``body`` (parsed, or raw JSON) fits the request schema."""
    _check("request", _parsed(body))


def check_event(
    body: dict[str, Any] | bytes | str,
    *,
    routing_key: str | None = None,
    message_id: str | None = None,
    reply: bool = False,
) -> None:
    """Raise AssertionError unless ``body`` fits the event schema, and the delivery around it fits the contract.

    Pass what the delivery carried: ``routing_key`` for one from the events exchange (it must
    be ``video.<status>``), its AMQP ``message_id`` (``<id>:<status>``), ``reply=True`` for
    one from a reply_to queue (final events only).
    """
    event = _parsed(body)
    _check("event", event)
    label = f"event {event['id']}:{event['status']}"
    if routing_key is not None and routing_key != f"video.{event['status']}":
        raise AssertionError(f"{label} came with routing key {routing_key!r}")
    if message_id is not None and message_id != f"{event['id']}:{event['status']}":
        raise AssertionError(f"{label} came with message_id {message_id!r}")
    if reply and event["status"] not in FINAL_STATUSES:
        raise AssertionError(f"{label} came as a reply, but only final events are replies")


def _check(which: str, body: Any) -> None:
    errors = sorted(validator(which).iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    label = f"{body.get('id')}:{body.get('status')}" if isinstance(body, dict) and which == "event" else which
    lines = [f"  at {e.json_path}: {e.message[:300]}" for e in errors[:20]]
    if len(errors) > 20:
        lines.append(f"  … and {len(errors) - 20} more")
    shown = json.dumps(body, ensure_ascii=False, default=repr)
    raise AssertionError(
        f"{which} {label} breaks the published schema:\n" + "\n".join(lines) + f"\nbody: {shown[:2000]}"
    )


def _parsed(body: dict[str, Any] | bytes | str) -> Any:
    if isinstance(body, bytes | str):
        try:
            return json.loads(body)
        except ValueError as exc:
            raise AssertionError(f"not JSON ({exc}): {body[:200]!r}") from None
    return body
