"""Unit tests for videoworker.config: the stable configuration names, sources, precedence and refusals."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from videoworker.config import Settings, load_settings, redact_url
from videoworker.config_report import describe
from videoworker.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the shell running the tests; relative paths land in tmp_path."""
    for name in list(os.environ):
        if name.upper().startswith(("VIDEOWORKER_", "OPENROUTER_")) or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def refusal(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(None, **overrides)
    return str(info.value)


# --- defaults -------------------------------------------------------------------------------


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    s = load_settings(None)
    assert s.amqp_url.get_secret_value() == "amqp://guest:guest@localhost:5672/"
    assert s.openrouter_api_key is None
    assert s.openrouter_base_url == "https://openrouter.ai/api/v1"
    assert s.data_dir == Path("./data")
    assert s.ledger_url is None
    assert s.effective_ledger_url == f"sqlite:///{(tmp_path / 'data' / 'ledger.sqlite3').resolve()}"
    assert s.request_queue == "videos.requests"
    assert s.events_exchange == "videos.events"
    assert s.dead_letter_queue == "videos.requests.dead"
    assert 0 < s.poll_interval <= s.poll_max_interval


# --- every stable name, exactly as written ------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "value", "read"),
    [
        ("VIDEOWORKER_AMQP_URL", "amqps://u:p@rabbit.example:5671/vh", lambda s: s.amqp_url.get_secret_value()),
        ("OPENROUTER_API_KEY", "sk-or-plain", lambda s: s.openrouter_api_key.get_secret_value()),
        ("VIDEOWORKER_OPENROUTER_API_KEY", "sk-or-prefixed", lambda s: s.openrouter_api_key.get_secret_value()),
        ("VIDEOWORKER_OPENROUTER_BASE_URL", "http://127.0.0.1:9999/api/v1", lambda s: s.openrouter_base_url),
        ("VIDEOWORKER_LEDGER_URL", "postgresql://db.example/videos", lambda s: s.effective_ledger_url),
        ("VIDEOWORKER_REQUEST_QUEUE", "team.video-requests", lambda s: s.request_queue),
        ("VIDEOWORKER_EVENTS_EXCHANGE", "team.video-events", lambda s: s.events_exchange),
    ],
)
def test_env_name_sets_the_value(monkeypatch: pytest.MonkeyPatch, env: str, value: str, read: Any) -> None:
    monkeypatch.setenv(env, value)
    assert read(load_settings(None)) == value


def test_env_data_dir_moves_the_default_ledger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDEOWORKER_DATA_DIR", str(tmp_path / "state"))
    s = load_settings(None)
    assert s.data_dir == tmp_path / "state"
    assert s.effective_ledger_url == f"sqlite:///{(tmp_path / 'state' / 'ledger.sqlite3').resolve()}"


def test_explicit_ledger_url_beats_the_derived_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDEOWORKER_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VIDEOWORKER_LEDGER_URL", f"sqlite:///{tmp_path}/elsewhere.sqlite3")
    assert load_settings(None).effective_ledger_url == f"sqlite:///{tmp_path}/elsewhere.sqlite3"


def test_env_poll_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOWORKER_POLL_INTERVAL", "0.5")
    monkeypatch.setenv("VIDEOWORKER_POLL_MAX_INTERVAL", "120")
    s = load_settings(None)
    assert (s.poll_interval, s.poll_max_interval) == (0.5, 120.0)


def test_base_url_trailing_slash_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOWORKER_OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1/")
    assert load_settings(None).openrouter_base_url == "https://openrouter.ai/api/v1"


def test_nested_groups_with_double_underscore(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDEOWORKER_PLUGINS__LOCAL__DIR", str(tmp_path / "videos"))
    assert load_settings(None).plugins == {"local": {"dir": str(tmp_path / "videos")}}


def test_keyword_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOWORKER_REQUEST_QUEUE", "from.env")
    assert load_settings(None, request_queue="from.kwargs").request_queue == "from.kwargs"


# --- TOML file --------------------------------------------------------------------------------

TOML = """
amqp_url = "amqp://u:toml-pw@toml-host:5672/"
openrouter_api_key = "sk-from-toml"
request_queue = "toml.requests"
poll_interval = 2.5
poll_max_interval = 30

[plugins.local]
dir = "/srv/videos"
"""


def check_toml_values(s: Settings) -> None:
    assert s.amqp_url.get_secret_value() == "amqp://u:toml-pw@toml-host:5672/"
    assert s.openrouter_api_key is not None
    assert s.openrouter_api_key.get_secret_value() == "sk-from-toml"
    assert s.request_queue == "toml.requests"
    assert (s.poll_interval, s.poll_max_interval) == (2.5, 30.0)
    assert s.plugins == {"local": {"dir": "/srv/videos"}}


def test_toml_file_by_path(tmp_path: Path) -> None:
    check_toml_values(load_settings(write_toml(tmp_path / "c.toml", TOML)))
    check_toml_values(load_settings(str(tmp_path / "c.toml")))


def test_toml_file_by_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDEOWORKER_CONFIG", str(write_toml(tmp_path / "c.toml", TOML)))
    check_toml_values(load_settings(None))


def test_env_beats_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", TOML)
    monkeypatch.setenv("VIDEOWORKER_REQUEST_QUEUE", "env.requests")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-from-env")
    monkeypatch.setenv("VIDEOWORKER_POLL_INTERVAL", "3")
    s = load_settings(path)
    assert s.request_queue == "env.requests"
    assert s.openrouter_api_key is not None and s.openrouter_api_key.get_secret_value() == "sk-from-env"
    assert s.poll_interval == 3.0
    assert s.poll_max_interval == 30.0  # untouched keys still come from the file


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_unknown_toml_key_is_refused_by_name(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", "poll_intervall = 3\n")
    with pytest.raises(ConfigError, match="poll_intervall"):
        load_settings(path)


def test_malformed_toml_is_a_config_error(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", "poll_interval = \n")
    with pytest.raises(ConfigError, match=r"c\.toml"):
        load_settings(path)


def test_malformed_complex_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOWORKER_DISABLED_PLUGINS", "local")
    with pytest.raises(ConfigError, match="disabled_plugins"):
        load_settings(None)


# --- systemd credentials ------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["openrouter_api_key", "OPENROUTER_API_KEY", "VIDEOWORKER_OPENROUTER_API_KEY"])
def test_api_key_from_credentials_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, filename: str) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / filename).write_text("sk-from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    s = load_settings(None)
    assert s.openrouter_api_key is not None
    assert s.openrouter_api_key.get_secret_value() == "sk-from-credential"


def test_credential_beats_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A systemd credential is preferred to the TOML file."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "openrouter_api_key").write_text("sk-from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = write_toml(tmp_path / "c.toml", TOML)
    key = load_settings(path).openrouter_api_key
    assert key is not None and key.get_secret_value() == "sk-from-credential"


@pytest.mark.parametrize(
    ("credential", "env", "value"),
    [
        ("openrouter_api_key", "OPENROUTER_API_KEY", "sk-or-v1-REPLACE-ME"),
        ("amqp_url", "VIDEOWORKER_AMQP_URL", "amqp://videoworker:REPLACE-ME@rabbitmq.internal:5672/"),
        ("ledger_url", "VIDEOWORKER_LEDGER_URL", "postgresql://vw:REPLACE-ME@db/vw"),
    ],
)
def test_a_secret_set_as_credential_and_env_differently_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, credential: str, env: str, value: str
) -> None:
    """An env file's placeholder must not silently replace the real credential: the start is refused, naming both."""
    creds = tmp_path / "creds"
    creds.mkdir()
    real = {"openrouter_api_key": "sk-real", "amqp_url": "amqp://vw:real@h/", "ledger_url": "sqlite:///real.db"}
    (creds / credential).write_text(real[credential] + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    message = str(info.value)
    assert credential in message and env in message
    assert "REPLACE-ME" not in message and "real" not in message.replace("credential", "")
    monkeypatch.setenv(env, real[credential])  # the same value twice is fine
    load_settings(None)


def test_no_credentials_directory_means_no_key() -> None:
    assert load_settings(None).openrouter_api_key is None


# --- refusals name the setting, never echo a secret ---------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "setting", "secret"),
    [
        ({"amqp_url": "http://user:pw-hunter2@x"}, "amqp_url", "pw-hunter2"),
        ({"amqp_url": "not a url with s3cr3t-pass"}, "amqp_url", "s3cr3t-pass"),
        ({"ledger_url": "mysql://u:db-hunter2@h/db"}, "ledger_url", "db-hunter2"),
        ({"openrouter_base_url": "ftp://openrouter.ai/api"}, "openrouter_base_url", None),
        ({"openrouter_base_url": "https://"}, "openrouter_base_url", None),
        ({"request_queue": "bad queue name"}, "request_queue", None),
        ({"events_exchange": ""}, "events_exchange", None),
        ({"poll_interval": 0}, "poll_interval", None),
        ({"poll_interval": -1}, "poll_interval", None),
        ({"poll_max_interval": 0}, "poll_max_interval", None),
        ({"max_message_bytes": 0}, "max_message_bytes", None),
        ({"log_level": "loud"}, "log_level", None),
        ({"health_port": 70000}, "health_port", None),
    ],
)
def test_wrong_value_is_refused_naming_the_setting(overrides: dict[str, Any], setting: str, secret: str | None) -> None:
    message = refusal(**overrides)
    assert setting in message
    if secret is not None:
        assert secret not in message


def test_wrong_secret_from_env_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOWORKER_AMQP_URL", "http://user:env-hunter2@x")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert "amqp_url" in str(info.value)
    assert "env-hunter2" not in str(info.value)


def test_wrong_secret_from_toml_is_not_echoed(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "c.toml", 'openrouter_api_key = ["sk-toml-hunter2"]\namqp_url = "x://u:toml-hunter3@h"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "openrouter_api_key" in message.lower() and "amqp_url" in message
    assert "hunter2" not in message and "hunter3" not in message


def test_api_key_refusal_names_real_env_names(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", "openrouter_api_key = 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "VIDEOWORKER_VIDEOWORKER_" not in str(info.value)


def test_wrong_number_from_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOWORKER_POLL_INTERVAL", "soon")
    with pytest.raises(ConfigError, match="poll_interval"):
        load_settings(None)


def test_poll_max_interval_below_poll_interval_is_refused() -> None:
    assert "poll_max_interval" in refusal(poll_interval=10, poll_max_interval=5)
    s = load_settings(None, poll_interval=5, poll_max_interval=5)
    assert s.poll_interval == s.poll_max_interval == 5


def test_interval_refusal_points_at_real_env_names() -> None:
    message = refusal(poll_interval=10, poll_max_interval=5)
    assert "VIDEOWORKER_SETTINGS" not in message


# --- describe() ---------------------------------------------------------------------------------


def test_describe_redacts_every_secret(tmp_path: Path) -> None:
    s = load_settings(
        None,
        amqp_url="amqp://worker:amqp-hunter2@rabbit.example:5672/vh",
        openrouter_api_key="sk-or-v1-hunter3",
        ledger_url="postgresql://db:pg-hunter4@db.example/videos",
        data_dir=tmp_path,
    )
    shown = describe(s)
    assert shown["amqp_url"] == "amqp://worker:***@rabbit.example:5672/vh"
    assert shown["openrouter_api_key"] == "***"
    assert shown["ledger_url"] == "postgresql://db:***@db.example/videos"
    assert shown["data_dir"] == str(tmp_path)
    assert shown["dead_letter_queue"] == "videos.requests.dead"
    text = json.dumps(shown)
    for secret in ("amqp-hunter2", "hunter3", "pg-hunter4"):
        assert secret not in text


def test_describe_without_key_says_none() -> None:
    assert describe(load_settings(None))["openrouter_api_key"] is None


def test_describe_shows_the_effective_ledger() -> None:
    shown = describe(load_settings(None, data_dir="/var/lib/videoworker"))
    assert shown["ledger_url"] == "sqlite:////var/lib/videoworker/ledger.sqlite3"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:guest@localhost:5672/", "amqp://guest:***@localhost:5672/"),
        ("amqp://localhost/", "amqp://localhost/"),
        ("amqp://u:p%40ss@h/v", "amqp://u:***@h/v"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_url_keeps_ipv6_brackets() -> None:
    assert redact_url("amqp://u:pw@[::1]:5672/") == "amqp://u:***@[::1]:5672/"


def test_the_example_env_file_holds_no_secret() -> None:
    """The example an operator copies sets no key and no password, so it cannot shadow a credential."""
    example = (Path(__file__).resolve().parents[2] / "config" / "videoworker.env.example").read_text()
    assignments = [line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")]
    assert assignments, "the example sets nothing"
    for name, value in assignments:
        assert "KEY" not in name and "SECRET" not in name, name
        assert not re.search(r"://[^/@\s]+:[^@\s]+@", value), f"{name} carries a password"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://openrouter.ai/api/v1", True),
        ("http://127.0.0.1:8090/api/v1", True),
        ("http://localhost:8090/api/v1", True),
        ("http://[::1]:8090/api/v1", True),
        ("http://openrouter.ai/api/v1", False),
        ("http://10.0.0.5/api/v1", False),
    ],
)
def test_a_plain_http_base_url_is_refused_off_loopback(url: str, allowed: bool) -> None:
    """The key must not cross a network in clear: http only to loopback, or with allow_insecure_base_url."""
    if allowed:
        load_settings(None, openrouter_base_url=url)
        return
    with pytest.raises(ConfigError, match="allow_insecure_base_url"):
        load_settings(None, openrouter_base_url=url)
    assert load_settings(None, openrouter_base_url=url, allow_insecure_base_url=True).openrouter_base_url == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://user:s3cret@host:5672/vh", "amqp://user:***@host:5672/vh"),
        (
            "postgresql://app@db/videos?sslpassword=s3cret&sslmode=require",
            "postgresql://app@db/videos?sslpassword=***&sslmode=***",
        ),
        ("https://api.example/v1?token=s3cret", "https://api.example/v1?token=***"),
        ("sqlite:////var/lib/videoworker/ledger.sqlite3", "sqlite:////var/lib/videoworker/ledger.sqlite3"),
        ("http://[::1", "<unparsable URL>"),
    ],
)
def test_urls_are_shown_without_passwords_or_query_values(url: str, shown: str) -> None:
    from videoworker.urls import redact_url

    assert redact_url(url) == shown


def test_webhook_signing_secret_from_a_credential_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "openrouter_webhook_secret").write_text("whsec-from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    secret = load_settings(None).openrouter_webhook_secret
    assert secret is not None and secret.get_secret_value().strip() == "whsec-from-credential"
    monkeypatch.setenv("OPENROUTER_WEBHOOK_SECRET", "whsec-other")
    assert "set twice, differently" in refusal()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    secret = load_settings(None).openrouter_webhook_secret
    assert secret is not None and secret.get_secret_value() == "whsec-other"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example.com/or", True),
        ("http://127.0.0.1:8090/or", True),
        ("http://hooks.example.com/or", False),
        ("https://hooks.example.com/or?token=x", False),
        ("ftp://hooks.example.com/", False),
    ],
)
def test_callback_public_url_is_https_unless_loopback(url: str, ok: bool) -> None:
    if ok:
        assert load_settings(None, callback_public_url=url + "/").callback_public_url == url
    else:
        assert "callback_public_url" in refusal(callback_public_url=url)
