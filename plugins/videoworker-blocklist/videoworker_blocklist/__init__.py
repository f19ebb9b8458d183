"""videoworker-blocklist: refuse a request whose prompt contains a blocked word or phrase, before it is paid for.

An example of a third-party videoworker plugin. It imports nothing but public
``videoworker`` names, validates its own settings when the daemon starts, and checks
each request in an ``async`` validator (the list may live in a file, read off the event
loop and re-read when it changes).

Settings, in ``[plugins.blocklist]`` (or ``VIDEOWORKER_PLUGINS__BLOCKLIST__WORDS='["…"]'``):

``words``
    Words or phrases to refuse, matched case-insensitively as whole words.
``file``
    A UTF-8 file with one word or phrase per line (``#`` starts a comment), added to ``words``.
"""

from __future__ import annotations

import asyncio
import re
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from videoworker import ConfigError, InvalidRequest, Settings, VideoRequest, hookimpl

__version__ = "0.1.0"

NAME = "blocklist"


class BlocklistSettings(BaseModel):
    """The ``[plugins.blocklist]`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    words: tuple[str, ...] = ()
    file: Path | None = None


def load_settings(settings: Settings) -> BlocklistSettings:
    """This plugin's section, validated; a wrong value is a :class:`~videoworker.ConfigError` naming it."""
    try:
        return BlocklistSettings.model_validate(settings.plugins.get(NAME, {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "section"
        raise ConfigError(f"[plugins.{NAME}] {key}: {first['msg']}") from None


@hookimpl
async def videoworker_startup(settings: Settings) -> None:
    """Refuse to start on a wrong setting or an unreadable list file, rather than at the first request."""
    await _pattern(load_settings(settings))


@hookimpl
async def videoworker_validate_request(request: VideoRequest, settings: Settings) -> None:
    """Refuse the request if its prompt contains a blocked word or phrase."""
    pattern = await _pattern(load_settings(settings))
    found = pattern.search(request.prompt or "") if pattern is not None else None
    if found is not None:
        raise InvalidRequest(f"the prompt contains the blocked term {found.group(0)!r}", field="prompt")


async def _pattern(config: BlocklistSettings) -> re.Pattern[str] | None:
    terms = list(config.words)
    if config.file is not None:
        terms += await asyncio.to_thread(_read_terms, config.file)
    return _compile(tuple(sorted({t.strip().lower() for t in terms if t.strip()})))


def _read_terms(path: Path) -> list[str]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigError(f"[plugins.{NAME}] file: cannot read {path}: {exc.strerror}") from None
    return list(_read_cached(path, stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=8)
def _read_cached(path: Path, mtime_ns: int, size: int) -> tuple[str, ...]:
    # keyed by modification time and size, so an edited list is read again
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(line.split("#", 1)[0] for line in lines)


@lru_cache(maxsize=8)
def _compile(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, term.split())) for term in terms)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
