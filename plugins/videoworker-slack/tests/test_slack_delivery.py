"""Posting to the webhook: Slack's answers as NotifyError, no secret in errors or logs, one client per daemon."""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import videoworker_slack as slack
from slack_fakes import SECRET, Answer, Receiver, closed_port, make_settings, notification
from structlog.testing import capture_logs
from videoworker_slack.client import retry_after

from videoworker import NotifyError


async def test_ok_means_delivered(tmp_path: Path, receiver: Receiver) -> None:
    """A 200 "ok" answer returns normally, after exactly one post to the webhook's path."""
    await slack.videoworker_notify(notification(), make_settings(tmp_path, webhook_url=receiver.url))
    [post] = await receiver.wait_for_posts(1)
    assert post.path.endswith(SECRET) and post.json["blocks"]


@pytest.mark.parametrize(("header", "wait"), [("7", 7.0), ("0.5", 0.5), ("100000", 300.0), ("-3", 0.0)])
async def test_429_waits_for_retry_after_capped(tmp_path: Path, receiver: Receiver, header: str, wait: float) -> None:
    """A 429 is retryable no sooner than its Retry-After, which is capped at 300 s."""
    receiver.answer(Answer(429, "rate_limited", {"Retry-After": header}))
    with pytest.raises(NotifyError) as info:
        await slack.videoworker_notify(notification(), make_settings(tmp_path, webhook_url=receiver.url))
    assert info.value.retryable is True and info.value.retry_after == wait


async def test_429_without_retry_after_leaves_the_pause_to_the_host(tmp_path: Path, receiver: Receiver) -> None:
    """A 429 with no usable Retry-After is retried on the host's own backoff."""
    receiver.answer(Answer(429, "rate_limited", {"Retry-After": "soon"}))
    with pytest.raises(NotifyError) as info:
        await slack.videoworker_notify(notification(), make_settings(tmp_path, webhook_url=receiver.url))
    assert info.value.retryable is True and info.value.retry_after is None


def test_retry_after_may_be_an_http_date() -> None:
    """Retry-After as an HTTP date means the seconds until then, still capped."""
    soon = retry_after(format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True))
    assert soon is not None and 55 <= soon <= 60
    assert retry_after(format_datetime(datetime.now(UTC) + timedelta(days=2), usegmt=True)) == 300
    assert retry_after("nan") is None and retry_after("") is None and retry_after(None) is None


@pytest.mark.parametrize(
    "answer",
    [
        Answer(410, "channel_is_archived"),
        Answer(404, "no_service"),
        Answer(404, "<html>not here</html>"),
        Answer(403, "invalid_token"),
        Answer(400, "invalid_payload"),
        Answer(500, "no_service"),
    ],
)
async def test_a_gone_or_refused_webhook_is_not_retried(tmp_path: Path, receiver: Receiver, answer: Answer) -> None:
    """404, 410, other 4xx and answers like no_service or invalid_token mark the delivery dead."""
    receiver.answer(answer)
    with pytest.raises(NotifyError) as info:
        await slack.videoworker_notify(notification(), make_settings(tmp_path, webhook_url=receiver.url))
    assert info.value.retryable is False
    assert f"HTTP {answer.status}" in info.value.message and "<html>" not in info.value.message


@pytest.mark.parametrize(
    "answer",
    [
        Answer(500, "oops"),
        Answer(503, ""),
        Answer(502, "<html>bad gateway</html>"),
        Answer(200, "not ok"),
        Answer(408, ""),
    ],
)
async def test_server_errors_are_retried(tmp_path: Path, receiver: Receiver, answer: Answer) -> None:
    """5xx, 408 and an unexpected 200 body are retryable, with no Retry-After of their own."""
    receiver.answer(answer)
    with pytest.raises(NotifyError) as info:
        await slack.videoworker_notify(notification(), make_settings(tmp_path, webhook_url=receiver.url))
    assert info.value.retryable is True and info.value.retry_after is None


async def test_a_timeout_is_retried(tmp_path: Path, receiver: Receiver) -> None:
    """A webhook that does not answer within ``timeout`` is a retryable NotifyError saying so."""
    receiver.answer(Answer(hang=True))
    with pytest.raises(NotifyError) as info:
        await slack.videoworker_notify(notification(), make_settings(tmp_path, webhook_url=receiver.url, timeout=0.2))
    assert info.value.retryable is True and "within 0.2 s" in info.value.message


async def test_a_connection_failure_is_retried(tmp_path: Path) -> None:
    """A webhook host that refuses connections is a retryable NotifyError."""
    url = f"http://127.0.0.1:{closed_port()}/services/T/B/{SECRET}"
    with pytest.raises(NotifyError) as info:
        await slack.videoworker_notify(notification(), make_settings(tmp_path, webhook_url=url))
    assert info.value.retryable is True and "could not post to the Slack webhook" in info.value.message


async def test_the_webhook_url_never_reaches_errors_or_logs(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Across success, 429, 410, 500, a timeout and a refused connection, no error, log line or record holds the URL."""
    caplog.set_level(logging.DEBUG)
    receiver.answer(
        Answer(), Answer(429, "", {"Retry-After": "1"}), Answer(410, "no_service"), Answer(500, "x"), Answer(hang=True)
    )
    live = make_settings(tmp_path, webhook_url=receiver.url, timeout=0.3)
    dead = make_settings(tmp_path, webhook_url=f"http://127.0.0.1:{closed_port()}/services/{SECRET}")
    errors: list[BaseException] = []
    with capture_logs() as logs:
        await slack.videoworker_startup(live)
        try:
            for settings in (live, live, live, live, live, dead):
                try:
                    await slack.videoworker_notify(notification(), settings)
                except NotifyError as exc:
                    errors.append(exc)
        finally:
            await slack.videoworker_shutdown(live)
    assert len(errors) == 5 and len(receiver.posts) == 5
    for error in errors:
        assert SECRET not in f"{error} {error!r} {error.args}"
        assert error.__cause__ is None and error.__context__ is None
    assert [entry["event"] for entry in logs].count("slack notification delivered") == 1
    assert SECRET not in repr(logs)
    assert SECRET not in caplog.text and all(SECRET not in r.getMessage() for r in caplog.records)


async def test_one_client_per_daemon_reused_until_shutdown(tmp_path: Path, receiver: Receiver) -> None:
    """After startup every post reuses the daemon's one keep-alive connection; shutdown closes it."""
    settings = make_settings(tmp_path, webhook_url=receiver.url)
    await slack.videoworker_startup(settings)
    try:
        for _ in range(3):
            await slack.videoworker_notify(notification(), settings)
    finally:
        await slack.videoworker_shutdown(settings)
    await slack.videoworker_notify(notification(), settings)  # after shutdown: a session of its own, then closed
    ports = [post.peer_port for post in await receiver.wait_for_posts(4)]
    assert len(set(ports[:3])) == 1 and ports[3] != ports[0]


async def test_daemons_in_one_process_keep_their_own_clients(tmp_path: Path, receiver: Receiver) -> None:
    """Two daemons post to their own webhooks; one shutting down does not close the other's client."""
    other = Receiver()
    await other.start()
    try:
        first = make_settings(tmp_path, webhook_url=receiver.url)
        second = make_settings(tmp_path, webhook_url=other.url)
        await slack.videoworker_startup(first)
        await slack.videoworker_startup(second)
        await slack.videoworker_notify(notification(), first)
        await slack.videoworker_notify(notification(), second)
        await slack.videoworker_shutdown(first)
        await slack.videoworker_notify(notification(), second)
        await slack.videoworker_shutdown(second)
        assert len(await receiver.wait_for_posts(1)) == 1
        ports = [post.peer_port for post in await other.wait_for_posts(2)]
        assert ports[0] == ports[1]
    finally:
        await other.stop()


async def test_a_shared_settings_object_closes_with_its_last_daemon(tmp_path: Path, receiver: Receiver) -> None:
    """Two daemons started with one settings object share a client, which stays open until both shut down."""
    settings = make_settings(tmp_path, webhook_url=receiver.url)
    await slack.videoworker_startup(settings)
    await slack.videoworker_startup(settings)
    await slack.videoworker_notify(notification(), settings)
    await slack.videoworker_shutdown(settings)
    await slack.videoworker_notify(notification(), settings)
    await slack.videoworker_shutdown(settings)
    await slack.videoworker_shutdown(settings)  # one too many is harmless
    ports = [post.peer_port for post in await receiver.wait_for_posts(2)]
    assert ports[0] == ports[1]


async def test_no_proxy_is_honoured(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment is used as aiohttp does it, so NO_PROXY still reaches a local webhook."""
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    await slack.videoworker_notify(notification(), make_settings(tmp_path, webhook_url=receiver.url))
    assert len(await receiver.wait_for_posts(1)) == 1


def test_the_plugin_imports_only_public_videoworker_names() -> None:
    """The plugin and its tests use the promised API: ``from videoworker import …`` and nothing deeper."""
    paths = [*Path(slack.__file__).parent.glob("*.py"), *Path(__file__).parent.glob("*.py")]
    for path in paths:
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        ours = {m for m in modules if m and m.split(".")[0] == "videoworker"}
        assert ours <= {"videoworker"}, (path.name, ours)


def test_videoworker_lists_the_installed_plugin() -> None:
    """`videoworker plugins --json` shows the plugin, from its distribution, with its version and hooks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOWORKER_") and k != "CREDENTIALS_DIRECTORY"}
    found = subprocess.run(
        [sys.executable, "-m", "videoworker", "plugins", "--json"], capture_output=True, text=True, env=env, check=True
    )
    row = {row["name"]: row for row in json.loads(found.stdout)}["slack"]
    assert row["distribution"] == "videoworker-slack" and row["version"] == slack.__version__
    assert row["hooks"] == [
        "videoworker_notification_targets",
        "videoworker_notify",
        "videoworker_settings_model",
        "videoworker_shutdown",
        "videoworker_startup",
    ]
    assert row["entry_point"] == "slack = videoworker_slack" and not row["builtin"]
