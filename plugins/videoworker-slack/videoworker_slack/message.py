"""The Block Kit message for one notification, built from the published event only.

Layout: a header (our own words and an emoji), a section of plain-text facts (model,
request, duration, cost), the prompt excerpt, the error of a failed job, chosen
metadata, links to the videos, where else they were stored, and a footer naming the
job and the notification id (Slack cannot drop repeats; people reading can). Every
value from outside is a ``plain_text`` object or escaped mrkdwn (see :mod:`.text`),
and every text is kept within Slack's limits.
"""

from __future__ import annotations

import json
from typing import Any

from videoworker import JobEvent, Notification
from videoworker_slack.settings import SlackSettings
from videoworker_slack.text import clip, format_cost, format_duration, link_target, mrkdwn_escape, mrkdwn_link, one_line

# Slack's limits (https://docs.slack.dev/reference/block-kit/blocks)
HEADER_CHARS = 150
SECTION_CHARS = 3000
FIELD_CHARS = 2000
FALLBACK_CHARS = 3000
#: Outputs linked at most; more are summed up in the footer.
MAX_LINKS = 10
#: Characters shown of one value (model, id, metadata value, location).
VALUE_CHARS = 200

EMOJI = {
    "submitted": ":outbox_tray:",
    "in_progress": ":hourglass_flowing_sand:",
    "completed": ":white_check_mark:",
    "failed": ":x:",
}
LABEL = {"submitted": "submitted", "in_progress": "in progress", "completed": "completed", "failed": "failed"}

Block = dict[str, Any]


def build_message(notification: Notification, config: SlackSettings) -> dict[str, Any]:
    """The webhook payload (``text`` fallback, ``blocks``, options) announcing ``notification.event``."""
    event = notification.event
    body = event.payload
    status = event.status
    emoji = EMOJI.get(status, ":grey_question:")
    label = LABEL.get(status, status)

    blocks: list[Block] = [
        {"type": "header", "text": _plain(clip(f"{emoji} Video {label}", HEADER_CHARS), emoji=True)},
        {"type": "section", "fields": [_plain(clip(fact, FIELD_CHARS)) for fact in _facts(event)]},
    ]
    excerpt = _prompt_excerpt(event, config.prompt_chars)
    if excerpt:
        blocks.append({"type": "section", "text": _plain(excerpt)})
    problem = _error_text(body.get("error"))
    if problem:
        blocks.append({"type": "section", "text": _plain(problem)})
    shown = _metadata_fields(body.get("metadata"), config.metadata_keys)
    if shown:
        blocks.append({"type": "section", "fields": shown})
    links, elsewhere = _outputs(body.get("outputs"))
    if links:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": links}})
    if elsewhere:
        blocks.append({"type": "context", "elements": [_plain(clip(elsewhere, FIELD_CHARS))]})
    blocks.append({"type": "context", "elements": [_plain(clip(_footer(notification), FIELD_CHARS))]})

    payload: dict[str, Any] = {
        "text": _fallback(emoji, label, event),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }
    if config.channel:
        payload["channel"] = config.channel
    if config.username:
        payload["username"] = config.username
    return payload


def _plain(text: str, *, emoji: bool = False) -> Block:
    # emoji off for outside text: ":shortcode:" in a prompt stays the characters it was
    return {"type": "plain_text", "text": text or " ", "emoji": emoji}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _facts(event: JobEvent) -> list[str]:
    body = event.payload
    facts = []
    model = _str(body.get("model"))
    if model:
        facts.append(f"Model: {clip(model, VALUE_CHARS)}")
    facts.append(f"Request: {clip(event.request_id, VALUE_CHARS)}")
    stamps = body.get("timestamps")
    if isinstance(stamps, dict):
        took = format_duration(stamps.get("submitted"), stamps.get("completed"))
        if took:
            facts.append(f"Duration: {took}")
    cost = format_cost(_reported_cost(body))
    if cost:
        facts.append(f"Cost: {cost}")
    return facts


def _reported_cost(body: dict[str, Any]) -> object:
    # usage.cost is OpenRouter's own report; newer events also carry it as cost.actual_usd
    usage, cost = body.get("usage"), body.get("cost")
    reported = usage.get("cost") if isinstance(usage, dict) else None
    if reported is None and isinstance(cost, dict):
        reported = cost.get("actual_usd")
    return reported


def _prompt_excerpt(event: JobEvent, limit: int) -> str | None:
    prompt = _str(event.prompt)
    if prompt is None or limit <= 0:
        return None
    return "Prompt: " + clip(one_line(prompt), limit)


def _error_text(error: object) -> str | None:
    if not isinstance(error, dict):
        return None
    code = _str(error.get("code")) or "error"
    message = _str(error.get("message"))
    text = f"Error: {clip(code, VALUE_CHARS)}" + (f"\n{message}" if message else "")
    return clip(text, SECTION_CHARS)


def _metadata_fields(metadata: object, keys: tuple[str, ...]) -> list[Block]:
    if not isinstance(metadata, dict):
        return []
    fields = []
    for key in keys:
        if key in metadata:
            value = metadata[key]
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            fields.append(_plain(f"{clip(key, VALUE_CHARS)}: {clip(shown, VALUE_CHARS)}"))
    return fields


def _outputs(outputs: object) -> tuple[str, str]:
    """mrkdwn links to the outputs that have an http(s) URL, and a plain line naming where the others are."""
    if not isinstance(outputs, list):
        return "", ""
    entries = [o for o in outputs if isinstance(o, dict)]
    links: list[str] = []
    elsewhere: list[str] = []
    for position, output in enumerate(entries):
        index = output.get("index")
        number = (index if isinstance(index, int) and not isinstance(index, bool) else position) + 1
        target = link_target(output.get("url")) or link_target(output.get("location"))
        label = "Open the video" if len(entries) == 1 else f"Video {number}"
        link = mrkdwn_link(target, label) if target else None
        if link and len(links) < MAX_LINKS and len(" · ".join([*links, link])) <= SECTION_CHARS:
            links.append(link)
            continue
        location = _str(output.get("location"))
        if location:
            elsewhere.append(clip(location, VALUE_CHARS))
    where = ("Stored at: " + " · ".join(elsewhere)) if elsewhere else ""
    return " · ".join(links), where


def _footer(notification: Notification) -> str:
    parts = []
    job_id = _str(notification.event.payload.get("job_id"))
    if job_id:
        parts.append(f"job {clip(job_id, VALUE_CHARS)}")
    parts.append(f"notification {clip(notification.id, VALUE_CHARS)}")
    return " · ".join(parts)


def _fallback(emoji: str, label: str, event: JobEvent) -> str:
    # the fallback is what notifications and old clients show, and it is mrkdwn: escape it
    body = event.payload
    model = _str(body.get("model"))
    text = f"{emoji} Video {label}"
    if model:
        text += f": {mrkdwn_escape(clip(model, VALUE_CHARS))}"
    text += f" (request {mrkdwn_escape(clip(event.request_id, VALUE_CHARS))})"
    error = body.get("error")
    code = _str(error.get("code")) if isinstance(error, dict) else None
    if code:
        text += f" — {mrkdwn_escape(clip(code, VALUE_CHARS))}"
    return clip(text, FALLBACK_CHARS)
