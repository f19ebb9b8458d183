"""Deliveries to real HTTP receivers on 127.0.0.1: signatures, retries, 410, 429, timeouts and capped answers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

import pytest
import videoworker_webhooks as webhooks
from videoworker_webhooks.guard import PINNED
from videoworker_webhooks.send import parse_retry_after
from webhooks_support import OTHER_SECRET, REQUEST_URL_SECRET, SECRET, Receiver, Reply, notification

from videoworker import NotifyError, NotifyTarget, Settings

Daemon = Callable[..., Awaitable[Settings]]
Receivers = Callable[..., Awaitable[Receiver]]
OPS = NotifyTarget(key="endpoint:ops", data={"endpoint": "ops"})


def ops(receiver: Receiver, **more: Any) -> dict[str, Any]:
    return {"endpoints": [{"name": "ops", "url": receiver.url(), "secret": SECRET}], **more}


async def refused(settings: Settings, target: NotifyTarget = OPS, **kwargs: Any) -> NotifyError:
    with pytest.raises(NotifyError) as info:
        await webhooks.videoworker_notify(notification(target, **kwargs), settings)
    return info.value


async def test_a_delivery_is_the_published_event_signed_as_a_standard_webhook(
    daemon: Daemon, receivers: Receivers
) -> None:
    """The receiver verifies the signature with standardwebhooks and gets the event body, id and headers."""
    receiver = await receivers()
    settings = await daemon(ops(receiver))
    sent = notification(OPS, nid="vw-n-42")
    await webhooks.videoworker_notify(sent, settings)
    [got] = receiver.deliveries
    assert got.error is None and got.payload == sent.event.payload
    assert got.body == json.dumps(sent.event.payload, separators=(",", ":")).encode()
    assert got.headers["webhook-id"] == "vw-n-42"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith(f"videoworker-webhooks/{webhooks.__version__}")


async def test_a_retry_carries_the_same_webhook_id(daemon: Daemon, receivers: Receivers) -> None:
    """After a 500 the next attempt of the same notification has the same id, so receivers can drop repeats."""
    receiver = await receivers()
    receiver.replies = [Reply(500, body=b"database is down")]
    settings = await daemon(ops(receiver))
    error = await refused(settings, attempt=1)
    assert error.retryable and error.retry_after is None and "answered 500: database is down" in error.message
    await webhooks.videoworker_notify(notification(OPS, attempt=2), settings)
    assert [d.headers["webhook-id"] for d in receiver.verified] == ["n-1", "n-1"]


async def test_a_receiver_with_another_secret_cannot_verify(daemon: Daemon, receivers: Receivers) -> None:
    """Signatures are made with the endpoint's own secret: a receiver holding another one rejects them."""
    receiver = await receivers(secret=OTHER_SECRET)
    await webhooks.videoworker_notify(notification(OPS), await daemon(ops(receiver)))
    assert receiver.deliveries[0].error == "No matching signature found"


async def test_410_disables_an_operator_endpoint_for_the_life_of_the_daemon(
    daemon: Daemon, receivers: Receivers, caplog: pytest.LogCaptureFixture
) -> None:
    """A 410 marks the delivery dead and stops later ones to that endpoint without a request; others go on."""
    gone, alive = await receivers(), await receivers()
    gone.replies = [Reply(410)]
    settings = await daemon(
        {
            "endpoints": [
                {"name": "ops", "url": gone.url(), "secret": SECRET},
                {"name": "audit", "url": alive.url(), "secret": SECRET},
            ]
        }
    )
    first = await refused(settings)
    assert not first.retryable and "410 Gone" in first.message
    assert any("DISABLED" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    later = await refused(settings, nid="n-2")
    assert not later.retryable and "disabled" in later.message
    assert len(gone.deliveries) == 1
    await webhooks.videoworker_notify(notification(NotifyTarget("endpoint:audit", {"endpoint": "audit"})), settings)
    assert len(alive.verified) == 1


async def test_410_from_a_request_url_gives_up_on_that_delivery(daemon: Daemon, receivers: Receivers) -> None:
    """A request URL that answers 410 is not retried."""
    receiver = await receivers(secret=REQUEST_URL_SECRET)
    receiver.replies = [Reply(410)]
    settings = await daemon(
        {
            "allow_request_urls": True,
            "request_url_secret": REQUEST_URL_SECRET,
            "request_url_hosts": [f"127.0.0.1:{receiver.port}"],
        }
    )
    error = await refused(settings, NotifyTarget("url:x", {"url": receiver.url()}))
    assert not error.retryable and "410 Gone" in error.message and len(receiver.verified) == 1


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "7", 7.0), (503, "86400", 300.0), (429, None, None), (503, "soon", None)],
)
async def test_429_and_503_say_when_to_retry(
    daemon: Daemon, receivers: Receivers, status: int, retry_after: str | None, expected: float | None
) -> None:
    """Retry-After is passed on as NotifyError.retry_after, capped at 300 s; the error stays retryable."""
    receiver = await receivers()
    receiver.replies = [Reply(status, headers={"Retry-After": retry_after} if retry_after else {})]
    error = await refused(await daemon(ops(receiver)))
    assert error.retryable and error.retry_after == expected and f"answered {status}" in error.message


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Delays and HTTP dates are read, clamped to 0–300 s; junk, NaN and infinities give None."""
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 120, usegmt=True), now=now) == 120.0
    assert parse_retry_after(formatdate(now - 50, usegmt=True), now=now) == 0.0
    assert parse_retry_after("1.5") == 1.5 and parse_retry_after("-3") == 0.0 and parse_retry_after("301") == 300.0
    assert [parse_retry_after(v) for v in ("", "nan", "inf", "Tuesday", None)] == [None] * 5


async def test_a_slow_receiver_times_out_and_is_retried(daemon: Daemon, receivers: Receivers) -> None:
    """A receiver that does not answer within ``timeout`` gives a retryable NotifyError saying so."""
    receiver = await receivers()
    receiver.replies = [Reply(hold=asyncio.Event())]
    started = time.monotonic()
    error = await refused(await daemon(ops(receiver, timeout=0.3)))
    assert error.retryable and "no answer within 0.3 s" in error.message
    assert time.monotonic() - started < 5


async def test_a_closed_port_is_a_retryable_connection_error(daemon: Daemon) -> None:
    """Nobody listening is worth another try later."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    section = {"endpoints": [{"name": "ops", "url": f"http://127.0.0.1:{port}/", "secret": SECRET}]}
    error = await refused(await daemon(section))
    assert error.retryable and "ConnectError" in error.message


async def test_only_max_response_bytes_of_an_answer_are_read(daemon: Daemon, receivers: Receivers) -> None:
    """An error answer is quoted from its first max_response_bytes only, and the quote is short."""
    receiver = await receivers()
    receiver.replies = [Reply(500, body=b"A" * 64 + b"B" * 100_000), Reply(500, body=b"C" * 100_000)]
    settings = await daemon(ops(receiver, max_response_bytes=64))
    error = await refused(settings)
    assert error.message.endswith("A" * 64) and "B" not in error.message
    settings = await daemon(ops(receiver))
    error = await refused(settings, nid="n-2")
    assert len(error.message) < 300 and error.message.endswith("…")


@pytest.mark.parametrize("status", [200, 500])
async def test_an_endless_answer_is_cut_off_at_the_cap(daemon: Daemon, receivers: Receivers, status: int) -> None:
    """A body that never ends is read up to the cap and the connection hung up, instead of waiting for its end."""
    receiver = await receivers()
    receiver.replies = [Reply(status, endless=True)]
    settings = await daemon(ops(receiver, timeout=60))
    started = time.monotonic()
    if status == 200:
        await webhooks.videoworker_notify(notification(OPS), settings)
    else:
        error = await refused(settings)
        assert error.retryable and "answered 500: " + "x" * 20 in error.message
    await asyncio.wait_for(receiver.stream_ended.wait(), 30)
    assert time.monotonic() - started < 30


async def test_redirects_are_not_followed(daemon: Daemon, receivers: Receivers) -> None:
    """A 3xx is an answer like any other: the Location is never visited."""
    receiver, elsewhere = await receivers(), await receivers()
    receiver.replies = [Reply(307, headers={"Location": elsewhere.url()})]
    error = await refused(await daemon(ops(receiver)))
    assert error.retryable and "answered 307" in error.message and elsewhere.deliveries == []


async def test_an_allowlisted_host_is_delivered_over_plain_http(daemon: Daemon, receivers: Receivers) -> None:
    """A request URL on an allowlisted 127.0.0.1:<port> is delivered over http, signed with request_url_secret."""
    receiver = await receivers(secret=REQUEST_URL_SECRET)
    settings = await daemon(
        {
            "allow_request_urls": True,
            "request_url_secret": REQUEST_URL_SECRET,
            "request_url_hosts": [f"127.0.0.1:{receiver.port}"],
        }
    )
    url = receiver.url("/callback?token=t0k")
    await webhooks.videoworker_notify(notification(NotifyTarget("url:x", {"url": url})), settings)
    [got] = receiver.verified
    assert got.path_qs == "/callback?token=t0k"


async def test_a_request_url_fails_dead_once_the_operator_stops_allowing_them(
    daemon: Daemon, receivers: Receivers
) -> None:
    """A request URL owed from before a restart without allow_request_urls is given up, not retried for hours."""
    receiver = await receivers()
    settings = await daemon(ops(receiver))
    error = await refused(settings, NotifyTarget("url:x", {"url": "https://hooks.example.com/"}))
    assert not error.retryable and "does not deliver to request URLs" in error.message


async def test_an_endpoint_no_longer_configured_is_given_up(daemon: Daemon, receivers: Receivers) -> None:
    """A target for an endpoint removed from the config is marked dead at once."""
    settings = await daemon(ops(await receivers()))
    error = await refused(settings, NotifyTarget("endpoint:old", {"endpoint": "old"}))
    assert not error.retryable and "no longer configured" in error.message


async def test_operator_connections_are_reused_but_pinned_ones_never(daemon: Daemon, receivers: Receivers) -> None:
    """The daemon's client keeps operator connections alive, and opens a fresh one for every pinned request."""
    receiver = await receivers()
    runtime = webhooks.runtime.find(await daemon(ops(receiver)))
    assert runtime is not None
    for extensions in ({}, {}, {PINNED: True}, {PINNED: True}):
        response = await runtime.client.post(receiver.url(), content=b"{}", extensions=extensions)
        assert response.status_code == 200
    peers = [d.peer for d in receiver.deliveries]
    assert peers[0] == peers[1] and len({peers[1], peers[2], peers[3]}) == 3
