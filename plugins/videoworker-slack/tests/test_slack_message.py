"""The Block Kit message, as the local receiver got it: layout, numbers, links, escaping and Slack's limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import videoworker_slack as slack
from slack_fakes import Receiver, dump, job_event, make_settings, notification, output, texts
from videoworker_slack.text import format_cost, format_duration, link_target, mrkdwn_escape

from videoworker import JobEvent

EVIL = "<!channel> <@U123> *bold* <https://evil.example|click> & @here"
EVIL_PARTS = ("<!channel>", "<@U123>", "<https://evil.example|click>")


async def delivered(receiver: Receiver, tmp_path: Path, event: JobEvent, **section: Any) -> dict[str, Any]:
    """Deliver ``event`` to the receiver and return the JSON it got."""
    settings = make_settings(tmp_path, webhook_url=receiver.url, **section)
    await slack.videoworker_notify(notification(event), settings)
    [post] = await receiver.wait_for_posts(1)
    return post.json


def fields(payload: dict[str, Any]) -> list[str]:
    """The texts of every section field, in order."""
    return [f["text"] for block in payload["blocks"] if block["type"] == "section" for f in block.get("fields", [])]


async def test_a_completed_message_has_header_facts_link_and_fallback(tmp_path: Path, receiver: Receiver) -> None:
    """A completed job posts a header with an emoji, model/request/duration/cost, a link, a footer and a fallback."""
    payload = await delivered(receiver, tmp_path, job_event("completed"), channel="#videos", username="videoworker")
    assert receiver.posts[0].content_type == "application/json"
    assert payload["text"] == ":white_check_mark: Video completed: acme/video-1 (request req-1)"
    assert payload["channel"] == "#videos" and payload["username"] == "videoworker"
    assert payload["unfurl_links"] is False and payload["unfurl_media"] is False
    header = payload["blocks"][0]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": ":white_check_mark: Video completed", "emoji": True},
    }
    assert fields(payload) == ["Model: acme/video-1", "Request: req-1", "Duration: 3 min 07 s", "Cost: $0.42"]
    assert all(f["type"] == "plain_text" for b in payload["blocks"] for f in b.get("fields", []))
    links = [
        b["text"]["text"]
        for b in payload["blocks"]
        if b["type"] == "section" and b.get("text", {}).get("type") == "mrkdwn"
    ]
    assert links == ["<https://cdn.example.com/videos/req-1/0.mp4|Open the video>"]
    footer = payload["blocks"][-1]
    assert (
        footer["type"] == "context"
        and footer["elements"][0]["text"] == "job job-abc · notification req-1:completed:slack:webhook"
    )


async def test_a_failed_message_shows_the_error_code_and_message(tmp_path: Path, receiver: Receiver) -> None:
    """A failed job posts a :x: header, the error code and message in plain text, and the code in the fallback."""
    error = {"code": "provider_failed", "message": "the provider gave up after 3 tries", "retryable": True}
    payload = await delivered(receiver, tmp_path, job_event("failed", error=error))
    assert payload["blocks"][0]["text"]["text"] == ":x: Video failed"
    assert payload["text"] == ":x: Video failed: acme/video-1 (request req-1) — provider_failed"
    assert ("plain_text", "Error: provider_failed\nthe provider gave up after 3 tries") in texts(payload)
    assert "Cost:" not in " ".join(fields(payload)) and "Duration: 3 min 07 s" in fields(payload)


async def test_a_refused_request_without_model_or_times_still_reads_well(tmp_path: Path, receiver: Receiver) -> None:
    """A failed event with no model, timestamps or usage shows only what it has."""
    event = job_event(
        "failed",
        model=None,
        timestamps={},
        job_id=None,
        error={"code": "invalid_request", "message": "x", "retryable": False},
    )
    payload = await delivered(receiver, tmp_path, event)
    assert fields(payload) == ["Request: req-1"]
    assert payload["text"] == ":x: Video failed (request req-1) — invalid_request"


@pytest.mark.parametrize(
    ("cost", "shown"),
    [
        (0.42, "$0.42"),
        (0.0042, "$0.0042"),
        (1234.5, "$1,234.50"),
        (0, "$0.00"),
        (3, "$3.00"),
        (None, None),
        (True, None),
        (float("nan"), None),
        ("1", None),
    ],
)
def test_costs_are_formatted_as_usd(cost: object, shown: str | None) -> None:
    """usage.cost reads as dollars, with four decimals below a cent, and is left out when not a number."""
    assert format_cost(cost) == shown


@pytest.mark.parametrize(
    ("submitted", "completed", "shown"),
    [
        ("2026-11-25T19:00:00.000Z", "2026-11-25T19:00:42.500Z", "42.5 s"),
        ("2026-11-25T19:00:00.000Z", "2026-11-25T19:03:07.000Z", "3 min 07 s"),
        ("2026-11-25T19:00:00.000Z", "2026-11-25T20:02:00.000Z", "1 h 02 min"),
        ("2026-11-25T19:00:00.000Z", "2026-11-25T18:00:00.000Z", None),
        ("2026-11-25T19:00:00.000Z", None, None),
        ("yesterday", "2026-11-25T19:00:00.000Z", None),
    ],
)
def test_durations_run_from_submitted_to_completed(submitted: str, completed: str | None, shown: str | None) -> None:
    """The duration is completed minus submitted, readable at every scale, and absent when unknown or negative."""
    assert format_duration(submitted, completed) == shown


async def test_only_http_locations_and_presigned_urls_become_links(tmp_path: Path, receiver: Receiver) -> None:
    """https locations and outputs' url are linked (& escaped); file://, s3:// and broken URLs are plain text."""
    outputs = [
        output(0, "file:///var/lib/videoworker/videos/req-1/0.mp4"),
        output(
            1,
            "s3://bucket/req-1/1.mp4",
            url="https://bucket.s3.example.com/req-1/1.mp4?X-Amz-Signature=ab&X-Amz-Expires=60",
        ),
        output(2, "https://cdn.example.com/2.mp4"),
        output(3, "javascript:alert(1)"),
        output(4, "https://cdn.example.com/4.mp4|<!channel>"),
        output(5, "s3://bucket/5.mp4", url="https://x.example.com/a>b"),
    ]
    payload = await delivered(receiver, tmp_path, job_event("completed", outputs=outputs))
    [links] = [b["text"]["text"] for b in payload["blocks"] if b.get("text", {}).get("type") == "mrkdwn"]
    assert links == (
        "<https://bucket.s3.example.com/req-1/1.mp4?X-Amz-Signature=ab&amp;X-Amz-Expires=60|Video 2>"
        " · <https://cdn.example.com/2.mp4|Video 3>"
    )
    [stored] = [
        e["text"] for b in payload["blocks"] if b["type"] == "context" for e in b["elements"] if "Stored" in e["text"]
    ]
    assert stored.startswith("Stored at: file:///var/lib/videoworker/videos/req-1/0.mp4 · javascript:alert(1)")
    assert all(e["type"] == "plain_text" for b in payload["blocks"] if b["type"] == "context" for e in b["elements"])


@pytest.mark.parametrize(
    "value",
    [
        "https://a.example/x|y",
        "https://a.example/<x>",
        "http://",
        "mailto:a@b.c",
        "https://a.example/ x",
        "HTTPS://A.EXAMPLE/ok",
        7,
    ],
)
def test_link_targets_are_validated(value: object) -> None:
    """Only whole http(s) URLs without characters that end or break a link are linked."""
    expected = "HTTPS://A.EXAMPLE/ok" if value == "HTTPS://A.EXAMPLE/ok" else None
    assert link_target(value) == expected


async def test_outside_text_is_inert(tmp_path: Path, receiver: Receiver) -> None:
    """Mentions, links and formatting in the prompt, model, id, metadata and error are plain text or escaped."""
    event = job_event(
        "failed",
        id=EVIL,
        model=f"acme/{EVIL}",
        metadata={"team": EVIL, "other": "not shown"},
        error={"code": f"code{EVIL}", "message": EVIL, "retryable": False},
        outputs=[output(0, f"s3://b/{EVIL}")],
        job_id=EVIL,
        prompt=f"A cat {EVIL}",
    )
    payload = await delivered(receiver, tmp_path, event, metadata_keys=["team"])
    for kind, text in texts(payload):
        if kind != "plain_text":
            for part in EVIL_PARTS:
                assert part not in text, (kind, text)
            assert "@here" not in text, (kind, text)
    plain = [text for kind, text in texts(payload) if kind == "plain_text"]
    assert any(EVIL in text for text in plain)  # shown as it came, where Slack does not parse it
    assert "team: " + EVIL in plain and "not shown" not in dump(payload)
    assert (
        "&lt;!channel&gt; &lt;@U123&gt; *bold* &lt;https://evil.example|click&gt; &amp; @\u2060here" in payload["text"]
    )
    # ":shortcode:" stays text too: only the header (our own words) renders emoji
    for block in payload["blocks"][1:]:
        for obj in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if isinstance(obj, dict) and obj["type"] == "plain_text":
                assert obj["emoji"] is False


def test_mrkdwn_escaping_follows_slacks_rules() -> None:
    """&, < and > become entities (& first, so nothing is escaped twice) and broadcast words are defused."""
    assert mrkdwn_escape("a & <b> &lt;") == "a &amp; &lt;b&gt; &amp;lt;"
    assert mrkdwn_escape("@here @Channel @everyone @hereafter x@here") == (
        "@\u2060here @\u2060Channel @\u2060everyone @hereafter x@\u2060here"
    )


async def test_the_prompt_excerpt_is_one_clipped_line(tmp_path: Path, receiver: Receiver) -> None:
    """The prompt is shown as one line, cut to prompt_chars with an ellipsis."""
    event = job_event("completed", prompt="A red fox\n\nruns  through snow " + "very " * 100)
    payload = await delivered(receiver, tmp_path, event, prompt_chars=40)
    [excerpt] = [t for k, t in texts(payload) if k == "plain_text" and t.startswith("Prompt: ")]
    assert excerpt.startswith("Prompt: A red fox runs through snow very") and excerpt.endswith("…")
    assert len(excerpt) <= len("Prompt: ") + 40


async def test_prompt_chars_zero_hides_the_prompt(tmp_path: Path, receiver: Receiver) -> None:
    """With prompt_chars = 0 the prompt never leaves the daemon."""
    payload = await delivered(receiver, tmp_path, job_event("completed", prompt="secret plans"), prompt_chars=0)
    assert "secret plans" not in dump(payload)


async def test_metadata_is_hidden_unless_asked_for(tmp_path: Path, receiver: Receiver) -> None:
    """Metadata may be private: without metadata_keys none of it is posted."""
    payload = await delivered(receiver, tmp_path, job_event("completed", metadata={"customer": "ACME-42"}))
    assert "ACME-42" not in dump(payload)


async def test_every_text_stays_within_slacks_limits(tmp_path: Path, receiver: Receiver) -> None:
    """Huge values are clipped: header 150, section text 3000, fields 2000, fallback 3000 characters."""
    huge = "x" * 20_000
    event = job_event(
        "failed",
        model=huge,
        metadata={"k": huge},
        error={"code": huge, "message": huge, "retryable": False},
        outputs=[output(i, f"https://cdn.example.com/{'y' * 1900}/{i}.mp4") for i in range(12)],
        prompt=huge,
    )
    payload = await delivered(receiver, tmp_path, event, metadata_keys=["k"], prompt_chars=2000)
    assert len(payload["text"]) <= 3000 and len(payload["blocks"]) <= 50
    for block in payload["blocks"]:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if "text" in block and block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        assert len(block.get("fields", [])) <= 10 and all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        assert len(block.get("elements", [])) <= 10 and all(len(e["text"]) <= 2000 for e in block.get("elements", []))


async def test_the_cost_falls_back_to_the_events_actual_cost(tmp_path: Path, receiver: Receiver) -> None:
    """Without usage.cost, the event's cost.actual_usd is shown; with neither, no cost is."""
    event = job_event("completed", usage=None, cost={"estimate_usd": 0.5, "actual_usd": 0.37})
    assert "Cost: $0.37" in fields(await delivered(receiver, tmp_path, event))
    receiver.posts.clear()
    event = job_event("completed", usage={"is_byok": True}, cost={"estimate_usd": 0.5, "actual_usd": None})
    assert not any(f.startswith("Cost") for f in fields(await delivered(receiver, tmp_path, event)))


async def test_no_prompt_means_no_excerpt(tmp_path: Path, receiver: Receiver) -> None:
    """An image-only request (no prompt) gets no prompt section."""
    payload = await delivered(receiver, tmp_path, job_event("completed"))
    assert not any(text.startswith("Prompt") for _, text in texts(payload))
