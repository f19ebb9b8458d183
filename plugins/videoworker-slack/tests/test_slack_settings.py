"""The ``[plugins.slack]`` section: the webhook URL as a secret, its credential file, and which statuses are owed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import videoworker_slack as slack
from pydantic import SecretStr
from slack_fakes import SECRET, Receiver, job_event, make_settings, notification

from videoworker import ConfigError, NotifyError, NotifyTarget


async def test_without_a_webhook_url_nothing_is_owed(tmp_path: Path) -> None:
    """A daemon that does not configure the plugin starts, and owes no event to Slack."""
    settings = make_settings(tmp_path)
    await slack.videoworker_startup(settings)
    try:
        for status in ("submitted", "in_progress", "completed", "failed"):
            assert slack.videoworker_notification_targets(job_event(status), settings) == []
    finally:
        await slack.videoworker_shutdown(settings)


async def test_a_notification_left_over_without_a_webhook_is_given_up(tmp_path: Path) -> None:
    """A delivery recorded before the URL was removed cannot succeed, so it is not retried."""
    with pytest.raises(NotifyError) as info:
        await slack.videoworker_notify(notification(), make_settings(tmp_path, statuses=["completed"]))
    assert info.value.retryable is False and "[plugins.slack] webhook_url" in info.value.message


@pytest.mark.parametrize(
    ("statuses", "owed"),
    [
        (None, {"completed", "failed"}),
        (["failed"], {"failed"}),
        (["submitted", "in_progress", "completed", "failed"], {"submitted", "in_progress", "completed", "failed"}),
        ([], set()),
    ],
)
def test_targets_follow_the_configured_statuses(tmp_path: Path, statuses: list[str] | None, owed: set[str]) -> None:
    """Only statuses listed in ``statuses`` (default completed and failed) name the webhook target."""
    section: dict[str, object] = {"webhook_url": "https://hooks.slack.com/services/T/B/x"}
    if statuses is not None:
        section["statuses"] = statuses
    settings = make_settings(tmp_path, **section)
    for status in ("submitted", "in_progress", "completed", "failed"):
        targets = slack.videoworker_notification_targets(job_event(status), settings)
        assert targets == ([NotifyTarget(key="webhook", data={})] if status in owed else []), status


def test_the_target_carries_no_secret(tmp_path: Path) -> None:
    """Targets are stored in the ledger, so the URL is looked up when delivering, never put in the target."""
    settings = make_settings(tmp_path, webhook_url=f"https://hooks.slack.com/services/T/B/{SECRET}")
    [target] = slack.videoworker_notification_targets(job_event("completed"), settings)
    assert SECRET not in repr(target)


def test_the_settings_model_keeps_the_url_secret(tmp_path: Path) -> None:
    """The declared model types the URL as SecretStr, so the host redacts it and its repr hides it."""
    model = slack.videoworker_settings_model()
    assert model is slack.SlackSettings
    parsed = slack.load_settings(make_settings(tmp_path, webhook_url=f"https://hooks.slack.com/x/{SECRET}"))
    assert isinstance(parsed.webhook_url, SecretStr)
    assert SECRET not in repr(parsed) and SECRET not in str(parsed)
    assert parsed.statuses == ("completed", "failed") and parsed.timeout == 10


@pytest.mark.parametrize(
    "url",
    [
        f"http://hooks.slack.com/services/T/B/{SECRET}",
        f"ftp://hooks.slack.com/{SECRET}",
        f"hooks.slack.com/services/{SECRET}",
        f"https:///{SECRET}",
        f"https://hooks.slack.com/{SECRET} x",
        f"https://hooks.slack.com:99999/{SECRET}",
        f"http://10.0.0.1/{SECRET}",
    ],
)
async def test_a_wrong_url_is_refused_at_start_without_echoing_it(tmp_path: Path, url: str) -> None:
    """Only https (or http to a loopback host) is accepted, and the error names the key, never the value."""
    with pytest.raises(ConfigError) as info:
        await slack.videoworker_startup(make_settings(tmp_path, webhook_url=url))
    assert str(info.value).startswith("[plugins.slack] webhook_url: must be an https:// URL")
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8/x", "http://localhost/x", "http://[::1]:9/x", "https://a.b/c"])
def test_https_and_loopback_http_urls_are_accepted(tmp_path: Path, url: str) -> None:
    """A local receiver may be plain http; anything else must be https."""
    assert slack.load_settings(make_settings(tmp_path, webhook_url=url)).webhook_url is not None


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"colour": "red"}, "colour"),
        ({"statuses": ["done"]}, "statuses.0"),
        ({"timeout": 0}, "timeout"),
        ({"prompt_chars": -1}, "prompt_chars"),
        ({"webhook_url": 5}, "webhook_url"),
    ],
)
async def test_a_wrong_setting_is_named_at_start(tmp_path: Path, section: dict[str, object], key: str) -> None:
    """A wrong key or value stops the start with a message naming ``[plugins.slack] <key>``."""
    with pytest.raises(ConfigError, match="^" + re.escape(f"[plugins.slack] {key}: ")):
        await slack.videoworker_startup(make_settings(tmp_path, **section))


async def test_the_url_may_come_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """Without webhook_url in the config, $CREDENTIALS_DIRECTORY/slack_webhook_url supplies it."""
    (tmp_path / "slack_webhook_url").write_text(receiver.url + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = make_settings(tmp_path, statuses=["completed"])
    await slack.videoworker_startup(settings)
    try:
        assert slack.videoworker_notification_targets(job_event("completed"), settings)
        await slack.videoworker_notify(notification(), settings)
    finally:
        await slack.videoworker_shutdown(settings)
    assert len(receiver.posts) == 1


async def test_the_config_wins_over_the_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """A URL in the config is used even when a credential file exists."""
    (tmp_path / "slack_webhook_url").write_text("https://hooks.slack.com/services/never/used")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    await slack.videoworker_notify(notification(), make_settings(tmp_path, webhook_url=receiver.url))
    assert len(receiver.posts) == 1


def test_a_bad_credential_is_refused_without_echoing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A credential file holding a non-https URL is a ConfigError naming the key, not the URL."""
    (tmp_path / "slack_webhook_url").write_text(f"http://example.com/{SECRET}")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^\[plugins\.slack\] webhook_url: ") as info:
        slack.load_settings(make_settings(tmp_path))
    assert SECRET not in str(info.value)


def test_an_unreadable_credential_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A credential path that cannot be read (here: a directory) is a ConfigError naming the file."""
    (tmp_path / "slack_webhook_url").mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^\[plugins\.slack\] webhook_url: cannot read .*slack_webhook_url"):
        slack.load_settings(make_settings(tmp_path))


def test_an_empty_credential_directory_means_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With $CREDENTIALS_DIRECTORY set but no slack_webhook_url in it, the plugin owes nothing."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert slack.videoworker_notification_targets(job_event("failed"), make_settings(tmp_path)) == []
