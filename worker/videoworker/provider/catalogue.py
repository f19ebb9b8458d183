"""The video models OpenRouter advertises, cached, so requests are checked before money is spent.

The API's enums are open: new resolutions appear without notice, so the models list is
the authority. When it cannot be fetched, the documented lists apply instead
(:data:`DOCUMENTED_RESOLUTIONS`, :data:`DOCUMENTED_ASPECT_RATIOS`) and the model name
cannot be checked.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from videoworker.errors import ProviderError
from videoworker.provider.models import VideoModel

if TYPE_CHECKING:
    from videoworker.provider.client import OpenRouterClient

log = structlog.get_logger("videoworker.catalogue")

DOCUMENTED_RESOLUTIONS = frozenset({"360p", "480p", "720p", "768p", "1080p", "1K", "2K", "4K"})
DOCUMENTED_ASPECT_RATIOS = frozenset({"16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21"})
_RETRY_FAILED_FETCH = 30.0


@dataclass(frozen=True)
class Catalogue:
    """A snapshot of the models list. ``available`` is False when it could not be fetched."""

    models: dict[str, VideoModel] = field(default_factory=dict)
    available: bool = False

    def get(self, model_id: str) -> VideoModel | None:
        return self.models.get(model_id)


class CatalogueCache:
    """Fetches ``/videos/models`` at most once per ``ttl`` seconds; a stale copy beats none."""

    def __init__(self, client: OpenRouterClient, ttl: float) -> None:
        self._client = client
        self._ttl = ttl
        self._current = Catalogue()
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> Catalogue:
        if time.monotonic() - self._fetched_at < self._ttl:
            return self._current
        async with self._lock:
            if time.monotonic() - self._fetched_at >= self._ttl:
                await self._refresh()
        return self._current

    async def _refresh(self) -> None:
        try:
            models = await self._client.video_models()
        except ProviderError as exc:
            log.warning("models list unavailable; checking against documented values", error=exc.message)
            # try again soon, not at every message
            self._fetched_at = time.monotonic() - self._ttl + _RETRY_FAILED_FETCH
            return
        self._current = Catalogue({m.id: m for m in models}, available=True)
        self._fetched_at = time.monotonic()
