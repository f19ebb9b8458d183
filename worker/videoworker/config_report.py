"""What ``videoworker config`` prints: the effective settings with every secret hidden, and the settings reference.

Hidden: the API key; the password and every query value of each URL setting (a token
may travel as ``?password=`` or ``?sslpassword=``); in plugin sections, every field the
plugin's model declares as a secret (at any depth), every value under a name that looks
secret, and URL passwords and queries. :func:`secret_values` lists the same secrets as
values, for the logs' last-line scrubbing (:func:`videoworker.logs.register_settings_secrets`).

The reference (``videoworker config --reference``) is generated from the settings model,
so docs/operations.md, which embeds it, cannot drift from the code (a test compares them).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from videoworker.config import Settings, redact_url
from videoworker.plugins.settings import secret_fields


def describe(settings: Settings, secret_fields: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """The effective configuration with every secret redacted, for ``videoworker config``.

    ``secret_fields``: per plugin, the section keys its settings model declares as secrets
    (see :func:`declared_secrets`); they are hidden at any depth of that section, on top of
    every key whose name looks secret.
    """
    data = settings.model_dump(mode="json")
    for name, value in data.items():
        if isinstance(value, str) and "://" in value:  # openrouter_base_url, and any URL setting to come
            data[name] = redact_url(value)
    data["amqp_url"] = redact_url(settings.amqp_url.get_secret_value())
    data["openrouter_api_key"] = "***" if settings.openrouter_api_key else None
    data["ledger_url"] = redact_url(settings.effective_ledger_url)
    data["dead_letter_queue"] = settings.dead_letter_queue
    data["data_dir"] = str(settings.data_dir)
    declared = secret_fields or {}
    data["plugins"] = {name: _redact(section, declared.get(name, set())) for name, section in settings.plugins.items()}
    return data


_SECRET_HINTS = ("secret", "token", "password", "key", "webhook", "credential")
#: Narrower than what ``config`` hides: values under these names are scrubbed from every log line.
_SECRET_WORDS = ("secret", "token", "password", "passwd", "credential", "api_key", "apikey")
_QUERY_SECRET_WORDS = (*_SECRET_WORDS, "key", "sig", "auth", "pass", "pwd")


def _redact(value: Any, secrets: Collection[str] = ()) -> Any:
    """Plugin settings as printable: declared secrets, values under secret-looking names, URL passwords, hidden."""
    if isinstance(value, dict):
        return {
            name: "***" if name in secrets or any(h in name.lower() for h in _SECRET_HINTS) else _redact(item, secrets)
            for name, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, secrets) for item in value]
    if isinstance(value, str):
        parsed = _json_container(value)
        if parsed is not None:  # a list or table given as JSON text (an environment variable): its contents count
            return _redact(parsed, secrets)
        if "://" in value:
            return redact_url(value)
    return value


#: Kept for callers of this module; the public name is :func:`videoworker.plugins.settings.secret_fields`.
declared_secrets = secret_fields


def secret_values(settings: Settings, models: Mapping[str, type[BaseModel]] | None = None) -> set[str]:
    """Every secret value the settings hold: the API key, URL passwords and query values, plugins' secrets.

    ``models``: each plugin's settings model, whose ``SecretStr`` fields (at any depth) are secrets.
    """
    found: set[str] = set()
    for secret in (settings.openrouter_api_key, settings.openrouter_webhook_secret):
        if secret is not None:
            found.add(secret.get_secret_value())
    for url in (settings.amqp_url.get_secret_value(), settings.effective_ledger_url, settings.openrouter_base_url):
        found |= url_secrets(url)
    declared = {name: declared_secrets(model) for name, model in (models or {}).items()}
    for name, section in settings.plugins.items():
        found |= _section_secrets(section, declared.get(name, set()), hidden=False)
    return {value for value in found if value.strip()}


def url_secrets(url: str) -> set[str]:
    """The password of ``url`` and the values of its query parameters with secret-looking names, raw and decoded.

    Other query values (``?heartbeat=30``, ``?sslmode=require``) are not listed: scrubbing such
    words from every log line would garble them. Logs hide every query value inside a URL anyway.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return set()
    raw = [password] if password else []
    for part in parts.query.replace(";", "&").split("&"):
        name, _, value = part.partition("=")
        if value and any(word in unquote(name).lower() for word in _QUERY_SECRET_WORDS):
            raw.append(value)
    return {*raw, *(unquote(value) for value in raw)}


def _section_secrets(value: Any, declared: Collection[str], hidden: bool) -> set[str]:
    if isinstance(value, dict):
        found: set[str] = set()
        for name, item in value.items():
            secret = hidden or name in declared or any(word in str(name).lower() for word in _SECRET_WORDS)
            found |= _section_secrets(item, declared, secret)
        return found
    if isinstance(value, list | tuple):
        return set().union(*(_section_secrets(item, declared, hidden) for item in value))
    if isinstance(value, str):
        parsed = _json_container(value)
        if parsed is not None:
            return _section_secrets(parsed, declared, hidden)
        urls = url_secrets(value) if "://" in value else set()
        return {value, *urls} if hidden else urls
    return set()


def _json_container(text: str) -> Any:
    if not text.lstrip().startswith(("[", "{")):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, list | dict) else None


def reference() -> str:
    """Every setting as a Markdown table: its TOML key, its environment variable, its default and its meaning."""
    rows = ["| setting (TOML) | environment | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        env = f"`{name.upper()}`, " if name in ("openrouter_api_key", "openrouter_webhook_secret") else ""
        env += f"`VIDEOWORKER_{name.upper()}`"
        rows.append(f"| `{name}` | {env} | {_default(name, field.default)} | {field.description or ''} |")
    return "\n".join(rows) + "\n"


def _default(name: str, value: Any) -> str:
    if value is PydanticUndefined or name in ("instance_id", "disabled_plugins", "plugins"):
        return {"instance_id": "`<hostname>-<pid>`", "disabled_plugins": "`[]`", "plugins": "`{}`"}.get(name, "")
    if value is None:
        return "unset"
    if hasattr(value, "get_secret_value"):
        return f"`{redact_url(value.get_secret_value())}`"
    if isinstance(value, str) and "://" in value:
        return f"`{redact_url(value)}`"
    return f"`{value}`"
