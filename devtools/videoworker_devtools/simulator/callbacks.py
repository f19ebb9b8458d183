"""The simulator's push path: a signed terminal-state POST to a job's ``callback_url``, as OpenRouter sends it.

The envelope is ``{type, created_at, data: {id, status, generation_id, model, unsigned_urls,
usage | error}}``, with ``X-OpenRouter-Idempotency-Key: <job id>-<status>`` and, when
``callback_secret`` is set, ``X-OpenRouter-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of
"<t>," + body>``. Knobs: ``callback_loss`` (share never sent), ``callback_delay`` (extra
seconds after the job ends), ``callback_duplicates`` (extra copies of each delivery) and
``callback_bad_signature`` (a wrong signature on purpose). Jobs that never finish never call back.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from videoworker_devtools.simulator.state import Job, SimState

_TIMEOUT = aiohttp.ClientTimeout(total=10)


def schedule(state: SimState, job: Job, url: str, base: str) -> None:
    """Arrange the callback of ``job`` for when it ends (plus ``callback_delay``), unless it is lost."""
    config = state.config
    if job.fate.value == "in_progress" or state.chance(config.callback_loss):
        state.counters["callbacks_lost"] += 1
        return
    delay = job.duration + state.rng.uniform(*config.callback_delay)
    task = asyncio.get_running_loop().create_task(_send(state, job, url, base, delay))
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)


def envelope(job: Job, base: str) -> dict[str, Any]:
    """The delivery body for ``job``'s terminal status."""
    status = job.fate.value
    data: dict[str, Any] = {
        "id": job.id,
        "status": status,
        "generation_id": job.generation_id,
        "model": job.body.get("model"),
    }
    if status == "completed":
        data["unsigned_urls"] = [f"{base}/videos/{job.id}/content?index={i}" for i in range(job.outputs)]
        data["usage"] = {"cost": job.cost, "is_byok": False}
    else:
        data["error"] = job.error
    created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"type": f"video.generation.{status}", "created_at": created, "data": data}


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"," + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


async def _send(state: SimState, job: Job, url: str, base: str, delay: float) -> None:
    await asyncio.sleep(delay)
    config = state.config
    body = json.dumps(envelope(job, base)).encode()
    headers = {"Content-Type": "application/json", "X-OpenRouter-Idempotency-Key": f"{job.id}-{job.fate.value}"}
    if config.callback_secret is not None:
        secret = config.callback_secret + ("-wrong" if config.callback_bad_signature else "")
        headers["X-OpenRouter-Signature"] = signature(secret, body, int(time.time()))
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
        for _ in range(1 + config.callback_duplicates):
            sent_at = time.time()  # so a bench can tell the simulator's own lag from the receiver's
            try:
                async with session.post(url, data=body, headers=headers) as answer:
                    entry = {"job_id": job.id, "url": url, "status": answer.status, "sent_at": sent_at}
                    state.callback_log.append(entry)
                    state.counters["callbacks_sent"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                state.callback_log.append({"job_id": job.id, "url": url, "status": 0, "error": type(exc).__name__})
                state.counters["callbacks_failed"] += 1
