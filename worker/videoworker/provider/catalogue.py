"""The video models OpenRouter advertises, cached, so requests are checked before money is spent.

The API's enums are open: new resolutions appear without notice, so the models list is
the authority. When it cannot be fetched, :attr:`Catalogue.available` is False and the
``capabilities`` plugin falls back to the documented values. Whatever goes wrong while
fetching (a refused answer, a bug) counts as "cannot be fetched": a bad models list must
never fail the requests it was meant to check. Each list fetched also tells
:func:`videoworker.metrics.known_models` which model names may become metric labels.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from videoworker import metrics
from videoworker.errors import ProviderError
from videoworker.provider.models import VideoModel
from videoworker.provider.scrub import scrub


class ModelLister(Protocol):
    """The one provider call the cache makes (:meth:`videoworker.provider.client.OpenRouterClient.video_models`)."""

    async def video_models(self) -> list[VideoModel]: ...


log = structlog.get_logger("videoworker.catalogue")

_RETRY_FAILED_FETCH = 30.0


@dataclass(frozen=True)
class Catalogue:
    """A snapshot of the video models, as validators get it. ``available`` is False when it could not be fetched."""

    models: dict[str, VideoModel] = field(default_factory=dict)
    available: bool = False

    def get(self, model_id: str) -> VideoModel | None:
        """The model named ``model_id``, or None when the provider does not list it."""
        return self.models.get(model_id)


class CatalogueCache:
    """Fetches ``/videos/models`` at most once per ``ttl`` seconds; a stale copy beats none."""

    def __init__(self, client: ModelLister, ttl: float) -> None:
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
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            error = exc.message if isinstance(exc, ProviderError) else scrub(f"{type(exc).__name__}: {exc}")
            log.warning("models list unavailable; checking against documented values", error=error)
            # try again soon, not at every message
            self._fetched_at = time.monotonic() - self._ttl + _RETRY_FAILED_FETCH
            return
        self._current = Catalogue({m.id: m for m in models}, available=True)
        self._fetched_at = time.monotonic()
        metrics.known_models(self._current.models)
