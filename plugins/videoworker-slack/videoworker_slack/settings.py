"""The ``[plugins.slack]`` section: where to post, which statuses to post, and what to show.

The webhook URL is a secret (it is the only credential an incoming webhook has), so it
is a ``SecretStr``, it may come from a systemd credential file instead of the config,
and no message, log line or exception ever repeats it.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError

from videoworker import Settings, plugin_settings

NAME = "slack"
#: The file under ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``) read when the config has no URL.
CREDENTIAL_FILE = "slack_webhook_url"

Status = Literal["submitted", "in_progress", "completed", "failed"]

_BAD_URL = "must be an https:// URL (plain http:// only to a loopback host, for tests)"


class SlackSettings(BaseModel):
    """The ``[plugins.slack]`` section. Without a webhook URL the plugin owes nothing to anyone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_url: SecretStr | None = Field(
        None,
        validate_default=True,
        description="The incoming-webhook URL (a secret); else read from $CREDENTIALS_DIRECTORY/slack_webhook_url.",
    )
    statuses: tuple[Status, ...] = Field(("completed", "failed"), description="The statuses that are posted.")
    channel: str | None = Field(None, min_length=1, max_length=80, description="Channel override (legacy webhooks).")
    username: str | None = Field(None, min_length=1, max_length=80, description="Sender name (legacy webhooks).")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds one post may take, retries included.")
    prompt_chars: int = Field(300, ge=0, le=2000, description="Longest prompt excerpt shown; 0 shows no prompt.")
    metadata_keys: tuple[str, ...] = Field(
        (), max_length=10, description="Keys of the request's metadata to show (none by default: it may be private)."
    )

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _default_from_credentials(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return _read_credential()
        return value

    @field_validator("webhook_url")
    @classmethod
    def _must_be_https(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not acceptable_webhook_url(value.get_secret_value()):
            # the message is a fixed text: the URL is the secret, so it is never echoed
            raise PydanticCustomError("webhook_url", _BAD_URL)
        return value


def load_settings(settings: Settings) -> SlackSettings:
    """This plugin's section, validated once per settings object; a wrong value is a ``ConfigError`` naming its key."""
    return plugin_settings(settings, NAME, SlackSettings)


def acceptable_webhook_url(url: str) -> bool:
    """True for an absolute https URL, or an http URL to a loopback host (a local receiver in tests)."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        return False
    if not host:
        return False
    scheme = parts.scheme.lower()
    return scheme == "https" or (scheme == "http" and _loopback(host))


def _read_credential() -> str | None:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / CREDENTIAL_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise PydanticCustomError(
            "credential",
            "cannot read $CREDENTIALS_DIRECTORY/{file}: {reason}",
            {"file": CREDENTIAL_FILE, "reason": reason},
        ) from None
    return text or None


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
