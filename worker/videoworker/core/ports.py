"""What the core needs from the outside world, as protocols, so it imports neither httpx nor aio-pika.

:class:`videoworker.provider.client.OpenRouterClient` is the real :class:`Provider`;
unit tests may hand the engine anything with the same three methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from videoworker.provider.models import Download
from videoworker.provider.models import Job as ProviderJob


class Provider(Protocol):
    """The provider's video API, as the steps call it. Failures raise :mod:`videoworker.errors` types."""

    async def submit(self, body: Mapping[str, Any]) -> ProviderJob: ...

    async def poll(self, job_id: str) -> ProviderJob: ...

    async def download(self, job_id: str, index: int, dest: Path, *, max_bytes: int) -> Download: ...


__all__ = ["Provider", "ProviderJob"]
