"""Settings: every knob of the daemon, read once at start and passed down.

Sources, strongest first: keyword arguments (tests), environment variables
(``VIDEOWORKER_*``; the API key also as plain ``OPENROUTER_API_KEY``), secret files
(``$CREDENTIALS_DIRECTORY`` under systemd, one file per setting), the TOML file
(``--config`` or ``VIDEOWORKER_CONFIG``), then the defaults below. A wrong value is
refused at start by :func:`load_settings` with a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from videoworker.errors import ConfigError

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


class Settings(BaseSettings):
    """The daemon's configuration. Field names are the TOML keys; env names add ``VIDEOWORKER_``."""

    model_config = SettingsConfigDict(
        env_prefix="VIDEOWORKER_",
        extra="forbid",
        validate_default=True,
        env_nested_delimiter="__",
    )
    _toml_file: ClassVar[Path | None] = None

    # --- where things are -------------------------------------------------------------
    amqp_url: SecretStr = Field(
        SecretStr("amqp://guest:guest@localhost:5672/"),
        description="RabbitMQ URL; its password is a secret.",
    )
    openrouter_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("VIDEOWORKER_OPENROUTER_API_KEY", "OPENROUTER_API_KEY", "openrouter_api_key"),
        description="OpenRouter API key; `run` refuses to start without it.",
    )
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    data_dir: Path = Path("./data")
    ledger_url: str | None = Field(
        None, description="sqlite:///path or postgresql://…; default <data_dir>/ledger.sqlite3"
    )
    request_queue: str = "videos.requests"
    events_exchange: str = "videos.events"
    instance_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    # --- polling and time limits -------------------------------------------------------
    poll_interval: float = Field(5.0, gt=0, description="shortest gap between two polls of one job, s")
    poll_max_interval: float = Field(60.0, gt=0, description="longest gap between two polls of one job, s")
    job_timeout: float = Field(
        3600.0, gt=0, description="a job not finished this long after submit fails with `timeout`, s"
    )
    lease_seconds: float = Field(30.0, ge=2, description="ownership lease of a job; others adopt it once expired, s")
    shutdown_grace: float = Field(10.0, ge=0, description="SIGTERM: time given to in-flight steps before exit, s")
    publish_timeout: float = Field(10.0, gt=0, description="longest wait for a broker confirm, s")
    http_connect_timeout: float = Field(5.0, gt=0)
    http_read_timeout: float = Field(30.0, gt=0)
    models_cache_seconds: float = Field(600.0, ge=0, description="how long /videos/models answers are trusted, s")

    # --- limits ----------------------------------------------------------------------
    max_message_bytes: int = Field(1024 * 1024, gt=0)
    max_prompt_chars: int = Field(8000, gt=0)
    max_metadata_bytes: int = Field(16 * 1024, gt=0)
    max_download_bytes: int = Field(2 * 1024**3, gt=0)
    max_inflight: int = Field(10_000, gt=0, description="jobs one instance holds at once; intake pauses above it")
    max_concurrent_submits: int = Field(16, gt=0)
    max_concurrent_polls: int = Field(64, gt=0)
    max_concurrent_downloads: int = Field(8, gt=0)
    prefetch: int = Field(64, gt=0, description="unacked request deliveries per consumer")
    delivery_limit: int = Field(5, ge=1, description="deliveries before the broker dead-letters a poison message")
    submit_max_attempts: int = Field(8, ge=1, description="retryable submit failures before the job fails")
    download_max_attempts: int = Field(5, ge=1)
    storage_retry_seconds: float = Field(600.0, ge=0, description="how long a failing storage is retried, s")
    retry_backoff_base: float = Field(
        1.0, gt=0, description="scales every retry's backoff (first retries wait about this long), s"
    )

    # --- notifications -------------------------------------------------------------------
    notify_retry_hours: float = Field(24.0, gt=0, description="how long an undelivered notification is retried, h")
    notify_timeout: float = Field(30.0, gt=0, description="longest one notification delivery may take, s")
    notify_concurrency: int = Field(4, gt=0, description="deliveries in flight per notifier target")
    notify_max_inflight: int = Field(256, gt=0, description="deliveries in flight per instance, all targets")

    # --- policy ------------------------------------------------------------------------
    resubmit_unknown: bool = Field(
        False, description="resubmit a job whose submit outcome is unknown (may pay twice); off by default"
    )

    # --- operations ----------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    health_port: int | None = Field(None, ge=0, le=65535, description="serve /healthz /readyz /metrics on this port")
    disabled_plugins: list[str] = Field(default_factory=list)
    trace_plugins: bool = Field(False, description="log every plugin hook call with its duration and outcome")
    observer_timeout: float = Field(30.0, gt=0, description="longest a videoworker_job_event observer may run, s")
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-plugin settings by plugin name")

    @field_validator("openrouter_api_key")
    @classmethod
    def _empty_key_is_no_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("openrouter_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://openrouter.ai/api/v1")
        return value.rstrip("/")

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, value: SecretStr) -> SecretStr:
        if urlsplit(value.get_secret_value()).scheme not in ("amqp", "amqps"):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value

    @field_validator("request_queue", "events_exchange")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not _QUEUE_NAME.match(value):
            raise ValueError("must be 1-200 of A-Z a-z 0-9 . _ : -")
        return value

    @field_validator("ledger_url")
    @classmethod
    def _ledger_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _intervals(self) -> Settings:
        if self.poll_max_interval < self.poll_interval:
            raise ValueError(
                "poll_max_interval (VIDEOWORKER_POLL_MAX_INTERVAL) must be at least poll_interval "
                "(VIDEOWORKER_POLL_INTERVAL)"
            )
        return self

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.request_queue}.dead"

    @property
    def effective_ledger_url(self) -> str:
        return self.ledger_url or f"sqlite:///{(self.data_dir / 'ledger.sqlite3').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings, file_secret_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings once at start; raise :class:`ConfigError` naming each wrong setting."""
    path = config_file or os.environ.get("VIDEOWORKER_CONFIG")
    toml = Path(path) if path else None
    if toml is not None and not toml.is_file():
        raise ConfigError(f"config file {toml} does not exist")
    secrets_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    bound = type("Settings", (Settings,), {"_toml_file": toml})
    try:
        return bound(_secrets_dir=secrets_dir, **overrides)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {toml} is not valid TOML: {exc}") from None
    except SettingsError as exc:
        # e.g. a list or dict setting given as an env var that is not JSON
        raise ConfigError(f"invalid configuration: {exc}") from None


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        # the input may be a secret: name the setting and the rule, never echo the value
        lines.append(f"{_setting_name(err['loc'])}: {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _setting_name(loc: tuple[int | str, ...]) -> str:
    """``name (ENV_NAME)`` for an error location; model-wide rules have no location."""
    if not loc:
        return "settings"
    name = str(loc[0])
    if name.upper() in ("OPENROUTER_API_KEY", "VIDEOWORKER_OPENROUTER_API_KEY"):
        name = "openrouter_api_key"
    dotted = ".".join(str(part) for part in (name, *loc[1:]))
    return f"{dotted} (VIDEOWORKER_{name.upper()})"


def redact_url(url: str) -> str:
    """Hide the password of a URL so it can be logged or printed."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def describe(settings: Settings, secret_fields: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """The effective configuration with every secret redacted, for ``videoworker config``.

    ``secret_fields``: per plugin, the section keys its settings model declares as secrets;
    they are hidden on top of every key whose name looks secret.
    """
    data = settings.model_dump(mode="json")
    data["amqp_url"] = redact_url(settings.amqp_url.get_secret_value())
    data["openrouter_api_key"] = "***" if settings.openrouter_api_key else None
    data["ledger_url"] = redact_url(settings.effective_ledger_url)
    data["dead_letter_queue"] = settings.dead_letter_queue
    data["data_dir"] = str(settings.data_dir)
    declared = secret_fields or {}
    data["plugins"] = {name: _redact(section, declared.get(name, set())) for name, section in settings.plugins.items()}
    return data


_SECRET_HINTS = ("secret", "token", "password", "key", "webhook", "credential")


def _redact(value: Any, secrets: Collection[str] = ()) -> Any:
    """Plugin settings as printable: declared secrets, values under secret-looking names, URL passwords, hidden."""
    if isinstance(value, dict):
        return {
            name: "***" if name in secrets or any(h in name.lower() for h in _SECRET_HINTS) else _redact(item)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_redact(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value
