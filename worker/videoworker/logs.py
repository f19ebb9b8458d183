"""Logging, configured once at start: JSON lines when stdout is not a TTY, readable on one.

Job code binds ``request_id`` and ``job_id`` with ``structlog.contextvars`` so every line
about a job carries them. Standard-library loggers (aio-pika, httpx) go through the same
renderer. A last processor is a net under the rule that secrets are never logged: it
replaces every secret value registered at start (:func:`register_settings_secrets`: the
API key, URL passwords and query values, plugins' secrets), URL passwords and query
values of any scheme, and bearer tokens, with ``***``, in every value of every line,
exception text included.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from pydantic import BaseModel

    from videoworker.config import Settings

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
# scheme://user:password@ → scheme://user:***@ (any scheme: amqp, postgresql, https, …)
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/?#@]*):[^\s/?#@]*@")
# the query of an absolute URL, up to a fragment, a blank or a quote
_URL_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#\"'<>]*)\?([^\s#\"'<>]*)")
_REDACTED = "***"
#: Values shorter than this are not registered: replacing them everywhere would garble lines, not hide a secret.
MIN_SECRET_CHARS = 6

#: Libraries kept at WARNING even with log_level = debug: their debug lines carry request headers and signed
#: requests (botocore logs the canonical request with the session token, and the Authorization header).
NOISY_LOGGERS = (
    "httpx",
    "httpcore",
    "aiormq",
    "aio_pika",
    "botocore",
    "aiobotocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "aiohttp",
    "slack_sdk",
    "asyncpg",
)

_secrets: tuple[str, ...] = ()
_lock = threading.Lock()


def register_secrets(values: Iterable[str | None]) -> None:
    """Add exact secret values that no log line may carry; each is replaced by ``***`` wherever it appears."""
    global _secrets
    with _lock:
        found = {*_secrets, *(v for v in values if v and len(v) >= MIN_SECRET_CHARS)}
        _secrets = tuple(sorted(found, key=len, reverse=True))  # longest first: a secret inside another goes too


def register_settings_secrets(settings: Settings, models: Mapping[str, type[BaseModel]] | None = None) -> None:
    """Register every secret of ``settings`` (and of each plugin's section, by its declared model): see
    :func:`videoworker.config_report.secret_values`. Called once at start, before plugins run."""
    from videoworker.config_report import secret_values

    register_secrets(secret_values(settings, models))


def forget_secrets() -> None:
    """Drop every registered secret (for tests)."""
    global _secrets
    with _lock:
        _secrets = ()


def scrub_text(text: str) -> str:
    """``text`` without registered secrets, URL passwords, URL query values or bearer tokens."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\1:{_REDACTED}@", text)
        text = _URL_QUERY.sub(_query_values, text)
    if "earer" in text:
        text = _BEARER.sub(rf"\1{_REDACTED}", text)
    return text


def _query_values(match: re.Match[str]) -> str:
    # every value goes, and a parameter without "=" is all value (``?token``); the names stay, to say what was there
    hidden = []
    for part in re.split(r"([&;])", match[2]):
        if part in ("", "&", ";"):
            hidden.append(part)
        else:
            name, equals, _ = part.partition("=")
            hidden.append(f"{name}={_REDACTED}" if equals else _REDACTED)
    return f"{match[1]}?{''.join(hidden)}"


def _scrubbed(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if depth >= 4:
        return value
    if isinstance(value, dict):
        return {key: _scrubbed(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrubbed(item, depth + 1) for item in value)
    return value


def _scrub(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if isinstance(value, str | dict | list | tuple):
            event[key] = _scrubbed(value)
    return event


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog and stdlib logging to stderr in the chosen format."""
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _scrub,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    structlog.configure(
        # a call below the level is dropped before the chain (timestamp, scrub) runs, not after it
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
