"""Fixtures of the Slack plugin's tests: a local webhook receiver, started and stopped per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_fakes import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running local receiver standing in for hooks.slack.com."""
    found = Receiver()
    await found.start()
    try:
        yield found
    finally:
        await found.stop()


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the settings they build: no systemd credentials, no proxy from the developer's shell."""
    for name in ("CREDENTIALS_DIRECTORY", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
