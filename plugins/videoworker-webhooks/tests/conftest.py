"""Fixtures: receivers and sentinels that are closed after each test, and daemons that are shut down."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import videoworker_webhooks as webhooks
from webhooks_support import Receiver, Sentinel, settings_with

from videoworker import Settings


@pytest_asyncio.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    """Start receivers on demand; every one is closed at the end of the test."""
    started: list[Receiver] = []

    async def make(*args: Any, **kwargs: Any) -> Receiver:
        receiver = await Receiver(*args, **kwargs).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        await receiver.close()


@pytest_asyncio.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    """A listener on 127.0.0.1 that request URLs must never reach."""
    listener = await Sentinel().start()
    yield listener
    await listener.close()


@pytest_asyncio.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Settings]]]:
    """Start the plugin for a daemon with a given section (and optional resolver/transport); shut it down after."""
    started: list[Settings] = []

    async def start(section: dict[str, Any], **inject: Any) -> Settings:
        settings = settings_with(tmp_path, **section)
        await webhooks.start(settings, **inject)
        started.append(settings)
        return settings

    yield start
    for settings in started:
        await webhooks.videoworker_shutdown(settings)


@pytest.fixture(autouse=True)
def _no_inherited_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets come only from what each test configures, never from the environment running the tests."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
