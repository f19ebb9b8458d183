"""Logging, configured once at start: JSON lines when stdout is not a TTY, readable on one.

Job code binds ``request_id`` and ``job_id`` with ``structlog.contextvars`` so every line
about a job carries them. Standard-library loggers (aio-pika, httpx) go through the same
renderer. A last processor scrubs anything that looks like a bearer token, as a net
under the rule that secrets are never logged.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_URL_PASSWORD = re.compile(r"(amqps?://[^:/\s]+:)[^@\s]+@")


def _scrub(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and ("earer" in value or "://" in value):
            event[key] = _URL_PASSWORD.sub(r"\1***@", _BEARER.sub(r"\1***", value))
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
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
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
    for noisy in ("httpx", "httpcore", "aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
