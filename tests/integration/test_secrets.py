"""The API key and Authorization headers never appear in logs, events, dead letters, --help or `config`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from tests.conftest import ROOT, Observer
from videoworker_devtools.simulator import SimulatorThread

CANARY = "sk-or-v1-canary-5f3e9d2c71"
FORBIDDEN = (CANARY, "Authorization", "Bearer ")


def _clean(text: str, where: str) -> None:
    for needle in FORBIDDEN:
        assert needle not in text, f"{needle!r} leaked into {where}"


async def test_full_run_never_leaks_the_key(process: Any, observer: Observer, sim: SimulatorThread) -> None:
    """A run with successes, bad input, provider errors and failures: grep everything for the key."""
    sim.configure(
        api_key=CANARY,
        error_rate=0.3,
        error_statuses=[429, 500, 503],
        retry_after=0.2,
        failure_rate=0.3,
        truncate_rate=0.3,
    )
    daemon = process(openrouter_api_key=CANARY)
    daemon.start(VIDEOWORKER_LOG_LEVEL="debug", VIDEOWORKER_RETRY_BACKOFF_BASE="0.1")
    for i in range(12):
        await observer.publish({"id": f"s-{i}", "model": "google/veo-3.1", "prompt": f"secret test {i}"})
    await observer.publish(b"{broken", message_id="s-bad")
    await observer.publish({"id": "s-bad2", "model": "google/veo-3.1", "prompt": "x", "resolution": "9000p"})
    await observer.wait(lambda: len({b["id"] for b, _ in observer.replies}) == 14, timeout=90, what="14 replies")
    daemon.stop()
    log = daemon.log.read_text()
    assert "job finished" in log  # the log really is the daemon's
    _clean(log, "the daemon log")
    for key, _body, msg in observer.events:
        _clean(msg.body.decode(), f"event {key}")
    for _, msg in observer.replies:
        _clean(msg.body.decode(), "a reply")
    for msg in observer.dead:
        _clean(str(msg.headers) + msg.body.decode(errors="replace"), "a dead letter")


def test_help_and_config_never_show_the_key() -> None:
    """`--help` of every command and `videoworker config` print no secret."""
    env = {**os.environ, "OPENROUTER_API_KEY": CANARY, "VIDEOWORKER_AMQP_URL": "amqp://u:amqp-secret-77@h:5672/"}
    outputs = []
    for args in (["--help"], ["run", "--help"], ["submit", "--help"], ["simulate", "--help"], ["config"]):
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "videoworker", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (args, result.stderr, time.monotonic() - started)
        outputs.append(result.stdout + result.stderr)
    text = "\n".join(outputs)
    _clean(text, "help/config output")
    assert "amqp-secret-77" not in text
    assert '"openrouter_api_key": "***"' in text
