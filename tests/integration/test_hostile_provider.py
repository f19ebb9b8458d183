"""A compromised or buggy OpenRouter, over real HTTP: the simulator's hostile modes against the daemon and the client.

Daemon tests run the whole path (RabbitMQ, ledger, simulator) with default settings and
check each request's final event. Client tests talk to the simulator over a real socket
for what needs settings other than the defaults (a short download deadline) or a look
at the disk (a planted symlink).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Observer
from videoworker.errors import DownloadError, RetryableError
from videoworker.provider.client import OpenRouterClient
from videoworker.provider.untrusted import ProviderLimits
from videoworker.testing.recorder import until
from videoworker_devtools.simulator import SimulatorThread
from videoworker_devtools.simulator.hostile import SECRET_TEXT

MODEL = "google/veo-3.1"


def _request(name: str) -> dict[str, Any]:
    return {"id": f"hostile-{name}", "model": MODEL, "prompt": f"hostile {name}", "duration": 4, "resolution": "720p"}


async def _final(daemon: Any, observer: Observer, sim: SimulatorThread, name: str, **knobs: Any) -> dict[str, Any]:
    """Bend the simulator, run one request through a daemon with default settings, return its final event."""
    sim.configure(**knobs)
    await daemon()
    await observer.publish(_request(name))
    return await observer.final(f"hostile-{name}", timeout=60)


def _error(final: dict[str, Any]) -> tuple[str, str]:
    assert final["status"] == "failed", final
    return final["error"]["code"], final["error"]["message"]


def _files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in root.rglob("*") if p.is_file() and p.suffix in (".part", ".mp4")}


# --- through the daemon ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("poll_oversized", "answer over 1 MiB; refused"),
        ("poll_deep", "answer nested deeper than 64 levels"),
        ("many_outputs", "the job lists 1000 outputs, over max_outputs_per_job=8; nothing downloaded"),
    ],
)
async def test_a_hostile_completed_answer_fails_the_job_without_a_download(
    daemon: Any, observer: Observer, sim: SimulatorThread, mode: str, says: str
) -> None:
    final = await _final(daemon, observer, sim, mode, hostile=[mode])
    code, message = _error(final)
    assert code == "provider_failed" and says in message, message
    assert final["error"]["retryable"] is False
    assert sim.stats()["downloads"] == 0


async def test_a_deep_models_list_does_not_refuse_valid_requests(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """The capability check falls back to the documented values; the request completes, nothing is dead-lettered."""
    final = await _final(daemon, observer, sim, "models", hostile=["models_deep"])
    assert final["status"] == "completed", final
    assert observer.dead == []


@pytest.mark.parametrize("mode", ["cost_nan", "cost_negative"])
async def test_a_nonsense_cost_is_recorded_as_unknown(
    daemon: Any, observer: Observer, sim: SimulatorThread, mode: str
) -> None:
    """The job completes (it used to stick in `stored` on NaN) and its actual cost is unknown."""
    final = await _final(daemon, observer, sim, mode, hostile=[mode])
    assert final["status"] == "completed", final
    assert final["cost"]["actual_usd"] is None and final["usage"]["cost"] is None


async def test_a_gzip_video_is_refused_and_never_inflated(
    daemon: Any, observer: Observer, sim: SimulatorThread, tmp_path: Path
) -> None:
    final = await _final(daemon, observer, sim, "gzip", hostile=["content_gzip"])
    code, message = _error(final)
    assert code == "download_failed" and "Content-Encoding 'gzip'; only identity is accepted" in message
    assert all(size < 1024 * 1024 for size in _files(tmp_path).values())


async def test_an_html_media_type_is_recorded_as_mp4(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    final = await _final(daemon, observer, sim, "html", hostile=["content_html"])
    assert final["status"] == "completed", final
    assert final["outputs"][0]["content_type"] == "video/mp4"


@pytest.mark.parametrize(
    ("name", "knobs", "expected"),
    [
        ("failed-job", {"failure_rate": 1.0}, "provider_failed"),
        ("http-error", {"error_rate": 1.0, "error_statuses": [400]}, "provider_rejected"),
    ],
)
async def test_provider_error_text_is_scrubbed_before_the_event(
    daemon: Any, observer: Observer, sim: SimulatorThread, name: str, knobs: dict[str, Any], expected: str
) -> None:
    final = await _final(daemon, observer, sim, name, hostile=["error_secrets"], **knobs)
    code, message = _error(final)
    assert code == expected and "render failed" in message
    for secret in ("sk-or-v1-0123", "deadbeefcafe", "AKIA123", "\x1b", "\x07", "\u202e", "\n"):
        assert secret not in message, (secret, message)
    assert "Bearer ***" in message and "https://storage.example/v/1.mp4?***" in message
    assert len(message) <= 600 and len(SECRET_TEXT) > 2000


# --- the client, over real HTTP ------------------------------------------------------------------


async def _completed_job(client: OpenRouterClient) -> str:
    job = await client.submit({"model": MODEL, "prompt": "hostile client"})

    async def done() -> bool:
        return (await client.poll(job.id)).status == "completed"

    await until(done, 30, "the job to complete")
    return job.id


async def test_a_drip_fed_video_hits_the_download_deadline(sim: SimulatorThread, tmp_path: Path) -> None:
    sim.configure(hostile=["content_drip"])
    dest = tmp_path / "0.part"
    async with OpenRouterClient(sim.base_url, sim.api_key, limits=ProviderLimits(download_deadline=0.5)) as client:
        job_id = await _completed_job(client)
        started = asyncio.get_running_loop().time()
        with pytest.raises(DownloadError, match=r"not finished within download_deadline=0.5s") as info:
            await client.download(job_id, 0, dest, max_bytes=10**8)
        took = asyncio.get_running_loop().time() - started
    assert info.value.retryable and not dest.exists()
    assert 0.5 <= took < 3


async def test_a_planted_symlink_is_not_followed(sim: SimulatorThread, tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "authorized_keys"
    outside.parent.mkdir()
    outside.write_text("ssh-ed25519 AAAA precious\n")
    work = tmp_path / "data" / "tmp" / "hostile-symlink"
    work.mkdir(parents=True)
    dest = work / "0.part"
    dest.symlink_to(outside)
    async with OpenRouterClient(sim.base_url, sim.api_key) as client:
        got = await client.download(await _completed_job(client), 0, dest, max_bytes=10**8)
    assert outside.read_text() == "ssh-ed25519 AAAA precious\n"
    assert not dest.is_symlink() and dest.read_bytes()[4:8] == b"ftyp" and got.bytes == dest.stat().st_size
    assert os.stat(dest).st_mode & 0o777 == 0o600


async def test_a_huge_retry_after_is_capped(sim: SimulatorThread) -> None:
    sim.configure(error_rate=1.0, error_statuses=[429], retry_after=1e9)
    async with OpenRouterClient(sim.base_url, sim.api_key) as client:
        with pytest.raises(RetryableError) as info:
            await client.submit({"model": MODEL, "prompt": "wait forever"})
    assert info.value.retry_after == 300.0


async def test_the_daemon_takes_its_provider_limits_from_the_settings(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """max_outputs_per_job reaches the client: two outputs are one too many for a limit of one."""
    sim.configure(outputs=2)
    await daemon(max_outputs_per_job=1)
    await observer.publish(_request("limits"))
    final = await observer.final("hostile-limits", timeout=60)
    code, message = _error(final)
    assert code == "provider_failed" and "over max_outputs_per_job=1" in message, message
    assert sim.stats()["downloads"] == 0
