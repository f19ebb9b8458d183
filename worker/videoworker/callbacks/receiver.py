"""The callback endpoint: ``POST <callback_public_url>/<request id>``, answered within milliseconds.

Everything in a delivery is untrusted. The receiver caps the body (64 KiB; a real one is
about 400 bytes), checks the signature over the raw bytes when a secret is configured,
reads only the provider's job id and status, drops repeats by the idempotency key, and
answers 204 before anything else happens: the hint goes to ``on_hint``, which must not
block. A refused delivery gets a 4xx with a one-line reason and a log line, never more.

The port faces OpenRouter, so it is guarded like the health port: a capped number of
connections, each with a deadline to send its request head, and the body its own
deadline, the same length, once the head is in.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import ClientPayloadError
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response, StreamResponse, json_response

from videoworker import metrics
from videoworker.callbacks.signature import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, BadSignature, verify
from videoworker.contract.request import ID_PATTERN
from videoworker.serving import REQUEST_TIMEOUT, BodyTooLarge, ConnectionGuard, GuardedServer

log = structlog.get_logger("videoworker.callbacks")

MAX_BODY = 64 * 1024
#: Idempotency keys remembered per instance; older repeats cost one poll each, nothing more.
SEEN_KEYS = 65_536
_ID = re.compile(ID_PATTERN)
_JOB_ID = re.compile(r"^[A-Za-z0-9._:-]{1,256}$")
_STATUSES = frozenset({"completed", "failed", "cancelled", "expired"})


@dataclass(frozen=True, slots=True)
class Hint:
    """A callback's claim that the provider's job ``job_id`` for ``request_id`` reached ``status``."""

    request_id: str
    job_id: str
    status: str
    signed: bool = False  # its signature was checked: only then may it name the job of an unknown submit


class CallbackReceiver:
    """Serves the endpoint; each accepted, new delivery becomes one :class:`Hint` passed to ``on_hint``."""

    def __init__(
        self,
        on_hint: Callable[[Hint], None],
        *,
        secret: str | None,
        max_connections: int = 256,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.on_hint = on_hint
        self.secret = secret
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._server = GuardedServer(self._deliver, max_connections=max_connections, request_timeout=request_timeout)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (``0`` picks a port) and return the bound port."""
        if self.secret is None:
            log.warning(
                "ALERT: callbacks are on without openrouter_webhook_secret: unsigned deliveries are accepted. "
                "They can only cause polls, never a wrong result; set the secret to refuse them",
                alert="callbacks_unsigned",
            )
        bound = await self._server.start(host, port)
        log.info("callback receiver listening", host=host, port=bound, signed=self.secret is not None)
        return bound

    async def stop(self) -> None:
        await self._server.close()

    @property
    def port(self) -> int | None:
        """The bound port once started."""
        return self._server.port

    @property
    def guard(self) -> ConnectionGuard:
        """The port's connection guard: how many connections it holds, and why it cut some."""
        return self._server.guard

    async def _deliver(self, request: BaseRequest) -> StreamResponse:
        if request.method != "POST":
            return Response(status=405, text="405: Method Not Allowed", headers={"Allow": "POST"})
        try:
            hint, key = await self._read(request)
        except _Refused as refused:
            metrics.CALLBACKS.labels(outcome=refused.outcome).inc()
            log.warning("callback refused", reason=refused.reason, status=refused.status)
            return json_response({"error": refused.reason}, status=refused.status)
        if key in self._seen:
            metrics.CALLBACKS.labels(outcome="repeat").inc()
            return Response(status=204)
        self._seen[key] = None
        if len(self._seen) > SEEN_KEYS:
            self._seen.popitem(last=False)
        metrics.CALLBACKS.labels(outcome="accepted").inc()
        self.on_hint(hint)
        return Response(status=204)

    async def _read(self, request: BaseRequest) -> tuple[Hint, str]:
        """The hint and its idempotency key, or :class:`_Refused` saying why not."""
        request_id = request.path.rstrip("/").rpartition("/")[2]
        if not _ID.fullmatch(request_id) or not request_id.strip("."):
            raise _Refused(404, "unknown", "no request id at the end of the path")
        try:
            body = await self._server.read_body(request, MAX_BODY)
        except BodyTooLarge:
            raise _Refused(413, "too_large", f"body over {MAX_BODY} bytes") from None
        except TimeoutError:
            raise _Refused(408, "too_slow", f"body not sent within {self.guard.request_timeout:g} s") from None
        except (ConnectionError, ClientPayloadError, HttpProcessingError) as exc:
            # the sender went away or was cut, or the chunked framing is broken: a line, not a traceback
            raise _Refused(400, "incomplete", f"the body did not arrive whole ({type(exc).__name__})") from None
        if self.secret is not None:
            try:
                verify(self.secret, body, request.headers.get(SIGNATURE_HEADER))
            except BadSignature as exc:
                raise _Refused(401, "bad_signature", str(exc)) from None
        data = _data_of(body)
        job_id, status = data.get("id"), data.get("status")
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise _Refused(400, "malformed", "data.id is missing or not a job id")
        if status not in _STATUSES:
            raise _Refused(400, "malformed", "data.status is not a terminal status")
        key = request.headers.get(IDEMPOTENCY_HEADER) or f"{job_id}-{status}"
        return Hint(request_id, job_id, str(status), self.secret is not None), f"{request_id}/{key[:300]}"


def _data_of(body: bytes) -> dict[str, object]:
    """The envelope's ``data`` object. The body is at most 64 KiB, so parsing it whole is bounded."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        raise _Refused(400, "malformed", "body is not JSON") from None
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, dict):
        raise _Refused(400, "malformed", "no data object")
    return data


class _Refused(Exception):
    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.outcome, self.reason = status, outcome, reason
