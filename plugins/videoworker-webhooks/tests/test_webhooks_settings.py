"""The ``[plugins.webhooks]`` section: defaults, errors that name the key, secrets, and one runtime per daemon."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import videoworker_webhooks as webhooks
from pydantic import SecretStr
from webhooks_support import REQUEST_URL_SECRET, SECRET, Receiver, event, notification, settings_with

from videoworker import ConfigError, NotifyError, NotifyTarget, Settings

ENDPOINT = NotifyTarget(key="endpoint:ops", data={"endpoint": "ops"})


async def test_without_a_section_the_plugin_owes_nothing(tmp_path: Path) -> None:
    """An absent section starts nothing, names no targets and lets requests without webhook options through."""
    settings = Settings(data_dir=tmp_path, openrouter_api_key="k")
    await webhooks.videoworker_startup(settings)
    try:
        for status in ("submitted", "in_progress", "completed", "failed"):
            assert webhooks.videoworker_notification_targets(event(status), settings) == []
        assert webhooks.runtime.find(settings) is None
    finally:
        await webhooks.videoworker_shutdown(settings)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"colour": "red"}, r"\[plugins\.webhooks\] colour"),
        ({"endpoints": [{"name": "ops"}]}, r"\[plugins\.webhooks\] endpoints\.0\.url"),
        ({"endpoints": [{"name": "ops", "url": "ftp://x/"}]}, r"\[plugins\.webhooks\] endpoints\.0\.url"),
        ({"endpoints": [{"name": "o p", "url": "https://x/"}]}, r"\[plugins\.webhooks\] endpoints\.0\.name"),
        ({"endpoints": [{"name": "request_url", "url": "https://x/"}]}, r"\[plugins\.webhooks\] endpoints\.0\.name"),
        ({"endpoints": [{"name": "a", "url": "https://x/", "statuses": ["done"]}]}, r"endpoints\.0\.statuses\.0"),
        ({"endpoints": [{"name": "a", "url": "https://x/", "secret": "s3cr3t-value"}]}, r"endpoints\.0\.secret"),
        ({"request_url_hosts": ["hooks.internal"]}, r"\[plugins\.webhooks\] request_url_hosts"),
        ({"request_url_secret": "whsec_!!!"}, r"\[plugins\.webhooks\] request_url_secret"),
        ({"timeout": 0}, r"\[plugins\.webhooks\] timeout"),
        ({"max_response_bytes": -1}, r"\[plugins\.webhooks\] max_response_bytes"),
    ],
)
async def test_a_wrong_setting_stops_the_start_naming_its_key(
    tmp_path: Path, section: dict[str, Any], key: str
) -> None:
    """Each wrong value is a ConfigError naming ``[plugins.webhooks] <key>``, never echoing a secret."""
    with pytest.raises(ConfigError, match=key) as info:
        await webhooks.videoworker_startup(settings_with(tmp_path, **section))
    assert "s3cr3t-value" not in str(info.value) and "!!!" not in str(info.value)


async def test_duplicate_endpoint_names_are_refused(tmp_path: Path) -> None:
    """Names are target keys, so a repeated one is a ConfigError naming both entries."""
    endpoints = [{"name": "ops", "url": "https://a/", "secret": SECRET}, {"name": "ops", "url": "https://b/"}]
    with pytest.raises(ConfigError, match=r"\[plugins\.webhooks\] endpoints: .*endpoints\.1\.name 'ops' repeats"):
        await webhooks.videoworker_startup(settings_with(tmp_path, endpoints=endpoints))


async def test_an_endpoint_without_any_secret_is_refused(tmp_path: Path) -> None:
    """No secret in the config and no credential file stops the start naming the endpoint's secret key."""
    endpoints = [{"name": "a", "url": "https://a/", "secret": SECRET}, {"name": "ops", "url": "https://b/"}]
    with pytest.raises(ConfigError, match=r"\[plugins\.webhooks\] endpoints\.1\.secret: endpoint 'ops' has no secret"):
        await webhooks.videoworker_startup(settings_with(tmp_path, endpoints=endpoints))


async def test_allowing_request_urls_requires_a_secret_to_sign_them(tmp_path: Path) -> None:
    """Request URLs are always signed, so allowing them without request_url_secret stops the start."""
    with pytest.raises(ConfigError, match=r"\[plugins\.webhooks\] request_url_secret"):
        await webhooks.videoworker_startup(settings_with(tmp_path, allow_request_urls=True))


async def test_a_secret_can_come_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """With no secret in the config, ``$CREDENTIALS_DIRECTORY/webhooks_<name>_secret`` is used to sign."""
    receiver = await receivers()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "webhooks_ops_secret").write_text(SECRET + "\n")
    (credentials / "webhooks_request_url_secret").write_text(REQUEST_URL_SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = settings_with(tmp_path, endpoints=[{"name": "ops", "url": receiver.url()}], allow_request_urls=True)
    await webhooks.videoworker_startup(settings)
    try:
        await webhooks.videoworker_notify(notification(ENDPOINT), settings)
    finally:
        await webhooks.videoworker_shutdown(settings)
    assert len(receiver.verified) == 1


async def test_a_malformed_credential_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A credential that is not a whsec_ secret stops the start naming the key, not printing the file."""
    (tmp_path / "webhooks_ops_secret").write_text("hunter2")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = settings_with(tmp_path, endpoints=[{"name": "ops", "url": "https://a/"}])
    with pytest.raises(ConfigError, match=r"\[plugins\.webhooks\] endpoints\.0\.secret: the credential") as info:
        await webhooks.videoworker_startup(settings)
    assert "hunter2" not in str(info.value)


def test_lists_given_as_json_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``VIDEOWORKER_PLUGINS__WEBHOOKS__ENDPOINTS='[…]'`` reaches the plugin as a string and is parsed as JSON."""
    endpoints = [{"name": "ops", "url": "https://a/", "secret": SECRET, "statuses": ["failed"]}]
    monkeypatch.setenv("VIDEOWORKER_PLUGINS__WEBHOOKS__ENDPOINTS", json.dumps(endpoints))
    monkeypatch.setenv("VIDEOWORKER_PLUGINS__WEBHOOKS__TIMEOUT", "2.5")
    settings = Settings(data_dir=tmp_path, openrouter_api_key="k")
    targets = webhooks.videoworker_notification_targets(event("failed"), settings)
    assert [t.key for t in targets] == ["endpoint:ops"]


def test_secrets_are_typed_secret_so_they_are_redacted() -> None:
    """Both secret fields are SecretStr: ``videoworker config`` and reprs hide them."""
    model = webhooks.videoworker_settings_model()
    parsed = model.model_validate(
        {"endpoints": [{"name": "ops", "url": "https://a/", "secret": SECRET}], "request_url_secret": SECRET}
    )
    assert isinstance(parsed, webhooks.WebhooksSettings)
    assert isinstance(parsed.request_url_secret, SecretStr) and isinstance(parsed.endpoints[0].secret, SecretStr)
    assert SECRET not in repr(parsed) and SECRET not in parsed.model_dump_json()


async def test_each_daemon_has_its_own_client_and_shared_settings_close_last(tmp_path: Path) -> None:
    """Two settings objects get two runtimes; two daemons on one settings object share one, closed by the last."""
    section = {"endpoints": [{"name": "ops", "url": "https://a/", "secret": SECRET}]}
    first, second = settings_with(tmp_path, **section), settings_with(tmp_path, **section)
    await webhooks.videoworker_startup(first)
    await webhooks.videoworker_startup(second)
    await webhooks.videoworker_startup(first)
    one, two = webhooks.runtime.find(first), webhooks.runtime.find(second)
    assert one is not None and two is not None and one is not two and one.client is not two.client
    await webhooks.videoworker_shutdown(first)
    assert webhooks.runtime.find(first) is one and not one.client.is_closed
    await webhooks.videoworker_shutdown(first)
    await webhooks.videoworker_shutdown(second)
    assert one.client.is_closed and two.client.is_closed
    assert webhooks.runtime.find(first) is None


async def test_notify_before_startup_is_retryable(tmp_path: Path) -> None:
    """A notification that reaches a daemon where the plugin never started is retried, not dropped."""
    settings = settings_with(tmp_path, endpoints=[{"name": "ops", "url": "https://a/", "secret": SECRET}])
    with pytest.raises(NotifyError, match="has not started") as info:
        await webhooks.videoworker_notify(notification(ENDPOINT), settings)
    assert info.value.retryable
