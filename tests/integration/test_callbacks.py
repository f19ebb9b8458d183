"""The push path against the real simulator and RabbitMQ: signed callbacks make the owner poll at once.

The daemons here poll rarely (``reconcile_interval`` of a minute, an unknown model's
first poll waits for it), so a job that finishes within seconds was finished by its
callback; the lost-callback tests shorten the interval to show polls still catch up.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import httpx
from aiohttp import web

from tests.conftest import PG_URL, Observer
from videoworker import metrics
from videoworker.callbacks.signature import sign
from videoworker_devtools.ports import free_port
from videoworker_devtools.simulator import SimulatorThread

SECRET = "whsec-test-signing-secret"
MODEL = "google/veo-3.1"


def _push(port: int, **overrides: Any) -> dict[str, Any]:
    return {
        "callback_public_url": f"http://127.0.0.1:{port}/hooks/or",
        "callback_port": port,
        "openrouter_webhook_secret": SECRET,
        "reconcile_interval": 60.0,
        **overrides,
    }


async def _run(observer: Observer, count: int, prefix: str, timeout: float) -> float:
    start = time.monotonic()
    for i in range(count):
        await observer.publish({"id": f"{prefix}-{i}", "model": MODEL, "prompt": f"push {prefix} {i}"})
    await observer.wait(lambda: len({b["id"] for b, _ in observer.replies}) == count, timeout=timeout, what="replies")
    assert {b["status"] for b, _ in observer.replies} == {"completed"}
    return time.monotonic() - start


async def test_signed_callbacks_finish_jobs_long_before_any_poll_would(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    sim.configure(callback_secret=SECRET, job_seconds=[0.5, 1.0])
    port = free_port()
    await daemon(**_push(port))
    took = await _run(observer, 10, "cb", timeout=20)
    assert took < 20  # the first poll without a callback would come 60 s after submit
    stats = sim.stats()
    for job in stats["jobs"].values():
        assert job["body"]["callback_url"].startswith(f"http://127.0.0.1:{port}/hooks/or/cb-")
        assert job["polls"] == 1, job  # one poll, the one the callback asked for
    assert Counter(c["status"] for c in stats["callbacks"]) == {204: 10}


async def test_repeated_callbacks_cost_nothing(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    sim.configure(callback_secret=SECRET, job_seconds=[0.3, 0.6], callback_duplicates=3)
    await daemon(**_push(free_port()))
    await _run(observer, 5, "dup", timeout=20)
    await observer.wait(lambda: sim.stats()["callbacks_sent"] == 20, what="every copy delivered")
    assert all(job["polls"] == 1 for job in sim.stats()["jobs"].values())


async def test_forged_callbacks_are_refused_and_polls_still_finish_the_jobs(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    sim.configure(callback_secret=SECRET, callback_bad_signature=True, job_seconds=[0.3, 0.6])
    port = free_port()
    await daemon(**_push(port, reconcile_interval=1.0))
    await _run(observer, 4, "forged", timeout=30)
    assert Counter(c["status"] for c in sim.stats()["callbacks"]) == {401: 4}
    url = f"http://127.0.0.1:{port}/hooks/or/forged-0"
    body = json.dumps({"data": {"id": "gen-x", "status": "completed"}}).encode()
    async with httpx.AsyncClient() as client:
        unsigned = await client.post(url, content=body)
        stale = await client.post(url, content=body, headers={"X-OpenRouter-Signature": sign(SECRET, body, 1)})
        huge = await client.post(url, content=b"{" + b" " * 70_000 + b"}")
        no_id = await client.post(f"http://127.0.0.1:{port}/", content=body)
    assert (unsigned.status_code, stale.status_code, huge.status_code, no_id.status_code) == (401, 401, 413, 404)
    assert "signature" in unsigned.json()["error"]


async def test_lost_callbacks_are_caught_by_reconciliation_polls(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    sim.configure(callback_secret=SECRET, callback_loss=1.0, job_seconds=[0.3, 0.6])
    await daemon(**_push(free_port(), reconcile_interval=1.5))
    await _run(observer, 4, "lost", timeout=30)
    stats = sim.stats()
    assert stats["callbacks_lost"] == 4 and not stats["callbacks"]
    assert all(job["polls"] <= 2 for job in stats["jobs"].values())


class RoundRobin:
    """One callback address in front of several receivers, like a load balancer: each POST goes to the next."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.sent = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> RoundRobin:
        async def forward(request: web.Request) -> web.Response:
            port = self.ports[self.sent % len(self.ports)]
            self.sent += 1
            headers = {k: v for k, v in request.headers.items() if k.lower().startswith(("x-", "content-type"))}
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    f"http://127.0.0.1:{port}{request.path}", content=await request.read(), headers=headers
                )
            return web.Response(status=answer.status_code, body=answer.content)

        app = web.Application()
        app.router.add_post("/{path:.*}", forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_three_instances_behind_one_address_route_each_hint_to_the_owner(
    pg_schema: tuple[Any, str], daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Callbacks land on any instance; the owner polls at once wherever the callback arrived."""
    _, schema = pg_schema
    sim.configure(callback_secret=SECRET, job_seconds=[0.5, 1.0])
    ports = [free_port() for _ in range(3)]
    routed = metrics.HINTS.labels(outcome="routed")._value.get()
    async with RoundRobin(ports) as lb:
        for i, port in enumerate(ports):
            await daemon(
                **_push(port, callback_public_url=f"http://127.0.0.1:{lb.port}/or"),
                ledger_url=f"{PG_URL}?schema={schema}",
                instance_id=f"cb-node-{i}",
            )
        await _run(observer, 12, "lb", timeout=30)
        assert lb.sent == 12
    assert all(job["polls"] == 1 for job in sim.stats()["jobs"].values()), sim.stats()["jobs"]
    assert metrics.HINTS.labels(outcome="routed")._value.get() - routed >= 4  # about 2 in 3 land elsewhere


async def test_an_unknown_submit_is_reconciled_by_its_callback(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """The provider took the job but the answer was lost: the callback names the job, and it completes, paid once."""
    sim.configure(callback_secret=SECRET, submit_reset_rate=1.0, job_seconds=[0.5, 1.0])
    await daemon(**_push(free_port()), submit_max_attempts=1)
    await _run(observer, 3, "unknown", timeout=30)
    stats = sim.stats()
    assert stats["submits"] == 3 and stats["resets"] == 3
    for i in range(3):
        (final,) = observer.reply_for(f"unknown-{i}")
        assert stats["jobs"][final["job_id"]]["body"]["prompt"] == f"push unknown {i}"
        assert observer.statuses(f"unknown-{i}")[0] == "video.submitted"  # nothing was announced before


async def test_an_unknown_submit_without_a_callback_is_reported_at_job_timeout(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    sim.configure(callback_secret=SECRET, submit_reset_rate=1.0, callback_loss=1.0, job_seconds=[0.3, 0.5])
    await daemon(**_push(free_port()), job_timeout=2.0)
    started = time.monotonic()
    await observer.publish({"id": "gone", "model": MODEL, "prompt": "never heard of again"})
    final = await observer.final("gone", timeout=20)
    assert final["status"] == "failed" and final["error"]["code"] == "submit_outcome_unknown", final
    assert time.monotonic() - started >= 2.0  # it waited for a callback first
    assert sim.stats()["submits"] == 1


async def test_an_unsigned_callback_never_names_the_job_of_an_unknown_submit(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Without a secret, callbacks only prompt polls: a forger must not attach a job to a request."""
    sim.configure(submit_reset_rate=1.0, job_seconds=[0.3, 0.5])
    await daemon(**_push(free_port(), openrouter_webhook_secret=None), job_timeout=2.0)
    await observer.publish({"id": "unsigned", "model": MODEL, "prompt": "unsigned callback"})
    final = await observer.final("unsigned", timeout=20)
    assert final["error"]["code"] == "submit_outcome_unknown", final
    assert Counter(c["status"] for c in sim.stats()["callbacks"]) == {204: 1}  # received, but only a hint
