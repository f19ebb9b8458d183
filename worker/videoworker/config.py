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
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from videoworker.credentials import refuse_conflicting_credentials
from videoworker.errors import ConfigError
from videoworker.urls import is_loopback, public_https_url, redact_url

#: Private queues whose names are random: RabbitMQ's direct reply-to (as the broker rewrites
#: it on delivery), server-named queues, and those aio-pika's robust channels name
#: (``amq_<uuid>``). A producer cannot aim a reply at a queue it could not have named itself.
DEFAULT_REPLY_TO_PATTERN = (
    r"amq\.rabbitmq\.reply-to(\.[A-Za-z0-9._+/=-]{1,240})?|amq\.gen-[A-Za-z0-9_-]{1,200}|amq_[0-9a-f]{32}"
)
__all__ = ["DEFAULT_REPLY_TO_PATTERN", "Settings", "load_settings", "redact_url"]

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


class Settings(BaseSettings):
    """The daemon's configuration. Field names are the TOML keys; env names add ``VIDEOWORKER_``."""

    model_config = SettingsConfigDict(
        env_prefix="VIDEOWORKER_",
        extra="forbid",
        validate_default=True,
        env_nested_delimiter="__",
    )
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
    allow_insecure_base_url: bool = Field(
        False, description="accept a plain http:// openrouter_base_url on a host other than loopback (a trial)"
    )
    openrouter_base_url: str = Field(
        "https://openrouter.ai/api/v1", description="OpenRouter's API base; the key goes to this origin only."
    )
    data_dir: Path = Field(Path("./data"), description="the ledger (SQLite), temporary downloads, and local videos")
    ledger_url: str | None = Field(
        None, description="sqlite:///path or postgresql://…; default <data_dir>/ledger.sqlite3"
    )
    request_queue: str = Field(
        "videos.requests", description="the quorum queue requests arrive on; dead letters go to <name>.dead"
    )
    events_exchange: str = Field("videos.events", description="the topic exchange events go to (video.<status>)")
    instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="this instance's name in leases; default <hostname>-<pid>",
    )

    # --- polling and time limits -------------------------------------------------------
    poll_interval: float = Field(5.0, gt=0, description="shortest gap between two polls of one job, s")
    poll_max_interval: float = Field(60.0, gt=0, description="longest gap between two polls of one job, s")
    job_timeout: float = Field(
        3600.0, gt=0, description="a job not finished this long after submit fails with `timeout`, s"
    )
    lease_seconds: float = Field(30.0, ge=2, description="ownership lease of a job; others adopt it once expired, s")
    shutdown_grace: float = Field(10.0, ge=0, description="SIGTERM: time given to in-flight steps before exit, s")
    publish_timeout: float = Field(10.0, gt=0, description="longest wait for a broker confirm, s")
    http_connect_timeout: float = Field(5.0, gt=0, description="longest wait to connect to OpenRouter, s")
    http_read_timeout: float = Field(30.0, gt=0, description="longest wait for OpenRouter to answer, s")
    models_cache_seconds: float = Field(600.0, ge=0, description="how long /videos/models answers are trusted, s")

    # --- limits ----------------------------------------------------------------------
    max_message_bytes: int = Field(1024 * 1024, gt=0, description="largest request message accepted, bytes")
    max_prompt_chars: int = Field(8000, gt=0, description="longest prompt accepted, characters")
    max_metadata_bytes: int = Field(16 * 1024, gt=0, description="largest metadata object accepted, bytes of JSON")
    max_download_bytes: int = Field(2 * 1024**3, gt=0, description="largest video downloaded, bytes")
    max_inflight: int = Field(10_000, gt=0, description="jobs one instance holds at once; intake pauses above it")
    max_concurrent_submits: int = Field(64, gt=0, description="submits in flight at once")
    max_concurrent_polls: int = Field(64, gt=0, description="polls in flight at once")
    max_concurrent_downloads: int = Field(32, gt=0, description="downloads (and storage steps) in flight at once")
    prefetch: int = Field(64, gt=0, description="unacked request deliveries per consumer")
    delivery_limit: int = Field(5, ge=1, description="deliveries before the broker dead-letters a poison message")
    submit_max_attempts: int = Field(8, ge=1, description="retryable submit failures before the job fails")
    download_max_attempts: int = Field(5, ge=1, description="failed download rounds before the job fails")
    storage_retry_seconds: float = Field(600.0, ge=0, description="how long a failing storage is retried, s")
    retry_backoff_base: float = Field(
        1.0, gt=0, description="scales every retry's backoff (first retries wait about this long), s"
    )
    max_retry_after: float = Field(300.0, ge=0, description="longest provider Retry-After honoured; longer is cut, s")
    max_outputs_per_job: int = Field(8, ge=1, le=1000, description="most videos one job may produce; more fail it")
    download_deadline: float = Field(
        3600.0, gt=0, description="longest one output's download may take, from request to last byte, s"
    )

    # --- callbacks (the push path) ------------------------------------------------------
    callback_public_url: str | None = Field(
        None, description="https base OpenRouter calls back on (<base>/<request id>); unset: polling only"
    )
    callback_host: str = Field("127.0.0.1", description="the address the callback receiver listens on")
    callback_port: int = Field(8090, ge=0, le=65535, description="the callback receiver's port (not the health port)")
    openrouter_webhook_secret: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "VIDEOWORKER_OPENROUTER_WEBHOOK_SECRET", "OPENROUTER_WEBHOOK_SECRET", "openrouter_webhook_secret"
        ),
        description="the workspace's signing secret; unsigned callbacks are refused when it is set",
    )
    reconcile_interval: float = Field(
        120.0, gt=0, description="callbacks on: polls catch a lost callback this often, s"
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
    reply_to_pattern: str = Field(
        DEFAULT_REPLY_TO_PATTERN,
        description="regex a request's reply_to must match in full to get replies (default: broker-named queues)",
    )
    allow_foreign_previous_job: bool = Field(
        False, description="accept a previous_job_id this ledger did not create (extend another system's video)"
    )

    # --- retention -----------------------------------------------------------------------
    outbox_retention: float = Field(86400.0, ge=0, description="how long sent outbox rows are kept, s")
    trim_after: float = Field(
        7 * 86400.0, ge=0, description="finished jobs keep request and history this long (retry needs them), s"
    )
    dedupe_days: float = Field(
        30.0, gt=0, description="how long a finished id is remembered (and refused as a duplicate), days"
    )
    prune_interval: float = Field(60.0, gt=0, description="gap between two pruning rounds of the ledger, s")
    prune_batch: int = Field(500, ge=1, le=10_000, description="rows one pruning transaction touches at most")

    # --- operations ----------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="debug, info, warning or error")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json, console, or auto (JSON unless stderr is a terminal)"
    )
    health_port: int | None = Field(None, ge=0, le=65535, description="serve /healthz /readyz /metrics on this port")
    health_host: str = Field("127.0.0.1", description="the address the health port listens on (0.0.0.0: everywhere)")
    health_max_connections: int = Field(64, ge=1, le=4096, description="open connections the health port accepts")
    health_show_identity: bool = Field(False, description="let /readyz name this instance (hostname and pid)")
    file_mode: Literal["0600", "0640"] = Field(
        "0600", description="mode of downloaded and stored video files: 0600, or 0640 to let the group read them"
    )
    disabled_plugins: list[str] = Field(
        default_factory=list, description="plugin names not to load (not essential ones)"
    )
    trace_plugins: bool = Field(False, description="log every plugin hook call with its duration and outcome")
    observer_timeout: float = Field(30.0, gt=0, description="longest a videoworker_job_event observer may run, s")
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-plugin settings by plugin name")

    @field_validator("openrouter_api_key", "openrouter_webhook_secret")
    @classmethod
    def _empty_key_is_no_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("openrouter_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be an http(s) URL such as https://openrouter.ai/api/v1 (no ?query or #fragment)")
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

    @field_validator("reply_to_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("ledger_url")
    @classmethod
    def _ledger_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _secure_base_url(self) -> Settings:
        parts = urlsplit(self.openrouter_base_url)
        if parts.scheme == "http" and not is_loopback(parts.hostname) and not self.allow_insecure_base_url:
            raise ValueError(
                "openrouter_base_url (VIDEOWORKER_OPENROUTER_BASE_URL) is plain http on a host that is not "
                "loopback: the API key would cross the network in clear. Use https, or set "
                "allow_insecure_base_url (VIDEOWORKER_ALLOW_INSECURE_BASE_URL) for a trial"
            )
        return self

    @field_validator("callback_public_url")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        return public_https_url(value)

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
        toml = _TOML_FILE.get()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


_TOML_FILE: ContextVar[Path | None] = ContextVar("toml", default=None)  # not a class per call: ~1 MiB of validators


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings once at start; raise :class:`ConfigError` naming each wrong setting."""
    path = config_file or os.environ.get("VIDEOWORKER_CONFIG")
    toml = Path(path) if path else None
    if toml is not None and not toml.is_file():
        raise ConfigError(f"config file {toml} does not exist")
    secrets_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if secrets_dir:
        refuse_conflicting_credentials(Path(secrets_dir), overrides)
    reading = _TOML_FILE.set(toml)
    try:
        return Settings(_secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {toml} is not valid TOML: {exc}") from None
    except SettingsError as exc:
        # e.g. a list or dict setting given as an env var that is not JSON
        raise ConfigError(f"invalid configuration: {exc}") from None
    finally:
        _TOML_FILE.reset(reading)


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
