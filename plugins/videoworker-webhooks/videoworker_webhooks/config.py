"""The ``[plugins.webhooks]`` section, the ``delivery.webhooks`` options, and where signing secrets come from.

The models only check shapes. What depends on the operator's choices (whether request URLs
are allowed at all, which hosts may be plain http) is checked against the section by
:mod:`videoworker_webhooks.guard`, because a delivery model is validated without the settings.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from videoworker import ConfigError, Settings, plugin_settings

NAME = "webhooks"

Status = Literal["submitted", "in_progress", "completed", "failed"]
FINAL: tuple[Status, ...] = ("completed", "failed")

# the credential file of the request-URL secret; an endpoint may not take this name, or the files would collide
REQUEST_URL = "request_url"


class Endpoint(BaseModel):
    """One operator endpoint: trusted as written, so neither its scheme nor its address is policed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    url: str
    secret: SecretStr | None = None
    statuses: tuple[Status, ...] = Field(FINAL, min_length=1)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == REQUEST_URL:
            raise ValueError(f"{REQUEST_URL!r} is reserved for the request-URL secret's credential file")
        return value

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        problem = url_shape_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("secret")
    @classmethod
    def _standard_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret(value.get_secret_value())
        return value


class WebhooksSettings(BaseModel):
    """The ``[plugins.webhooks]`` section. Empty (the default) means the plugin owes nothing to anyone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoints: tuple[Endpoint, ...] = ()
    allow_request_urls: bool = False
    request_url_hosts: tuple[str, ...] = ()
    request_url_statuses: tuple[Status, ...] = Field(FINAL, min_length=1)
    request_url_secret: SecretStr | None = None
    timeout: float = Field(10.0, gt=0, le=300)
    max_response_bytes: int = Field(4096, ge=0, le=1024 * 1024)

    @model_validator(mode="before")
    @classmethod
    def _json_lists_from_env(cls, data: Any) -> Any:
        # VIDEOWORKER_PLUGINS__WEBHOOKS__ENDPOINTS='[...]' arrives as a string: the host cannot know its type
        if isinstance(data, dict):
            lists = ("endpoints", "request_url_hosts", "request_url_statuses")
            for key in lists:
                value = data.get(key)
                if isinstance(value, str) and value.lstrip().startswith("["):
                    # a string that is not JSON stays a string, so the field's own error names it
                    with contextlib.suppress(json.JSONDecodeError):
                        data = {**data, key: json.loads(value)}
        return data

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, value: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        seen: dict[str, int] = {}
        for index, endpoint in enumerate(value):
            if endpoint.name in seen:
                raise ValueError(
                    f"endpoints.{index}.name {endpoint.name!r} repeats endpoints.{seen[endpoint.name]}.name"
                )
            seen[endpoint.name] = index
        return value

    @field_validator("request_url_hosts")
    @classmethod
    def _host_ports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(host_port(entry) for entry in value)

    @field_validator("request_url_secret")
    @classmethod
    def _standard_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret(value.get_secret_value())
        return value

    @property
    def active(self) -> bool:
        """Whether the plugin has anyone to notify: without endpoints or request URLs it stays idle."""
        return bool(self.endpoints) or self.allow_request_urls

    def endpoint(self, name: str) -> Endpoint | None:
        """The endpoint named ``name``, or None when the configuration no longer has it."""
        return next((e for e in self.endpoints if e.name == name), None)


class DeliveryOptions(BaseModel):
    """A request's ``delivery.webhooks``: a URL of its own to notify, and optionally which statuses it wants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=2048)
    statuses: tuple[Status, ...] | None = Field(None, min_length=1)

    @field_validator("url")
    @classmethod
    def _shape(cls, value: str) -> str:
        problem = url_shape_problem(value) or (
            "must not carry a user name or password" if httpx.URL(value).userinfo else None
        )
        if problem:
            raise ValueError(problem)
        return value


def url_shape_problem(value: str) -> str | None:
    """Why ``value`` is not an absolute http(s) URL with a host, or None when it is one."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        return "is not a valid URL"
    if url.scheme not in ("http", "https"):
        return "must be an https URL"
    if not url.host:
        return "has no host"
    return None


def host_port(entry: str) -> str:
    """An allowlist entry as ``host:port`` (lower case, IDNA, IPv6 in brackets); ValueError if it is not one."""
    try:
        url = httpx.URL(f"http://{entry.strip()}/")
    except httpx.InvalidURL:
        raise ValueError(f"{entry!r} is not host:port") from None
    if not url.host or url.port is None or url.userinfo or url.path != "/" or "/" in entry:
        raise ValueError(f"{entry!r} is not host:port (write the port, e.g. hooks.internal:8443)")
    return authority(url, url.port)


def authority(url: httpx.URL, port: int) -> str:
    """``host:port`` as the allowlist spells it: the ASCII (IDNA) host without a trailing dot."""
    host = url.raw_host.decode("ascii").rstrip(".").lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_secret(value: str) -> None:
    """Refuse anything but a Standard Webhooks secret: ``whsec_`` and 24 to 64 base64-encoded bytes."""
    if not value.startswith("whsec_"):
        raise ValueError("must be a Standard Webhooks secret starting with whsec_")
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"must hold 24 to 64 bytes of key, not {len(key)}")


def load_config(settings: Settings) -> WebhooksSettings:
    """This plugin's section, parsed once per settings object; a wrong key is a ConfigError naming it."""
    return plugin_settings(settings, NAME, WebhooksSettings)


def resolve_secret(configured: SecretStr | None, credential: str, where: str) -> str | None:
    """The secret from the config, else from ``$CREDENTIALS_DIRECTORY/<credential>`` (systemd), else None.

    Called at start, so a missing or malformed credential file stops the daemon naming ``where``.
    """
    if configured is not None:
        return configured.get_secret_value()
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / credential
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"[plugins.{NAME}] {where}: cannot read the credential {credential}: {exc.strerror}"
        ) from None
    try:
        check_secret(value)
    except ValueError as exc:
        raise ConfigError(f"[plugins.{NAME}] {where}: the credential {credential} {exc}") from None
    return value
