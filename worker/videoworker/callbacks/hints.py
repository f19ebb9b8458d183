"""Getting a callback's hint to the instance that owns the job.

Behind a load balancer a callback reaches any instance. The one that holds the job polls
it at once; any other looks up the owner in the ledger and forwards the hint over the
direct exchange ``<request_queue>.hints``, keyed by instance id, where each instance
listens on a private queue. Forwarding is best effort and bounded: at most
``MAX_ROUTING`` lookups at once, no retries, nothing forwarded twice (only callbacks are
routed, never a hint that arrived from a peer). A hint that goes nowhere costs only
latency: the owner's reconciliation poll finds the job within ``reconcile_interval``.
"""

from __future__ import annotations

import asyncio
import json

import structlog

from videoworker import metrics
from videoworker.amqp.broker import Broker
from videoworker.callbacks.receiver import Hint
from videoworker.config import Settings
from videoworker.core.engine import Engine
from videoworker.core.states import JobState
from videoworker.ledger.base import Ledger

log = structlog.get_logger("videoworker.callbacks")

#: Ledger lookups for forwarding in flight at once; beyond it, hints are dropped (polls catch up).
MAX_ROUTING = 256
_MAX_HINT_BYTES = 1024


class HintRouter:
    """Turns each accepted callback into a poll here, a hint to the owner, or nothing."""

    def __init__(self, settings: Settings, ledger: Ledger, broker: Broker, engine: Engine) -> None:
        self.settings = settings
        self.ledger = ledger
        self.broker = broker
        self.engine = engine
        self.exchange = f"{settings.request_queue}.hints"
        self._routing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen for hints peers forward to this instance; call once the broker is connected."""
        await self.broker.listen(self.exchange, self.settings.instance_id, self._forwarded)

    def on_callback(self, hint: Hint) -> None:
        """A callback arrived here: poll now if the job is ours, else look for its owner (without blocking)."""
        if self.engine.hint(hint.request_id, hint.job_id, reconcile=hint.signed):
            metrics.HINTS.labels(outcome="poll").inc()
            return
        if len(self._routing) >= MAX_ROUTING:
            metrics.HINTS.labels(outcome="dropped").inc()
            return
        task = asyncio.create_task(self._route(hint))
        self._routing.add(task)
        task.add_done_callback(self._routing.discard)

    async def stop(self) -> None:
        for task in list(self._routing):
            task.cancel()
        await asyncio.gather(*self._routing, return_exceptions=True)

    async def _route(self, hint: Hint) -> None:
        try:
            record = await self.ledger.get(hint.request_id)
            unknown = record is not None and record.state is JobState.AWAITING_CALLBACK and hint.signed
            if (
                record is None
                or (record.job_id != hint.job_id and not unknown)
                or record.owner in (None, self.settings.instance_id)
            ):
                metrics.HINTS.labels(outcome="ignored").inc()  # unknown, another job, finished, or ours and not polling
                return
            fields = {"request_id": hint.request_id, "job_id": hint.job_id, "signed": hint.signed}
            body = json.dumps(fields).encode()
            await self.broker.publish(self.exchange, record.owner, body, message_id=f"hint:{hint.request_id}")
            metrics.HINTS.labels(outcome="routed").inc()
        except Exception as exc:  # noqa: BLE001 - best effort: the owner's polls find the job anyway
            metrics.HINTS.labels(outcome="dropped").inc()
            log.info("could not forward a callback hint", request_id=hint.request_id, error=type(exc).__name__)

    def _forwarded(self, body: bytes) -> None:
        """A peer forwarded a hint: poll now if the job is (still) ours. Never forwarded again."""
        data = _parse(body)
        if data is None:
            metrics.HINTS.labels(outcome="malformed").inc()  # anyone who may publish here can only cost a poll
            return
        request_id, job_id, signed = data
        # a peer checked the signature; an instance without a secret of its own trusts no peer's word on it
        trusted = signed and self.settings.openrouter_webhook_secret is not None
        acted = self.engine.hint(request_id, job_id, reconcile=trusted)
        metrics.HINTS.labels(outcome="poll" if acted else "ignored").inc()


def _parse(body: bytes) -> tuple[str, str, bool] | None:
    """(request id, job id, signed) of a forwarded hint, or None if it is not one."""
    if len(body) > _MAX_HINT_BYTES:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    request_id, job_id = data.get("request_id"), data.get("job_id")
    if isinstance(request_id, str) and isinstance(job_id, str):
        return request_id, job_id, data.get("signed") is True
    return None
