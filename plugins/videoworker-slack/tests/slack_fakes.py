"""A local stand-in for hooks.slack.com, and builders for the events and notifications the hooks receive."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from videoworker import JobEvent, Notification, NotifyTarget, Settings

#: The secret part of every test webhook URL: it must never show up in a log line or an exception.
SECRET = "XoXbSeCrEtToKeN0123456789"


@dataclass
class Answer:
    """What the receiver answers to one post; ``hang`` never answers (until the receiver stops)."""

    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Post:
    """One request the receiver got: the parsed JSON, its path, content type and the client's port."""

    json: dict[str, Any]
    path: str
    content_type: str
    peer_port: int


class Receiver:
    """An aiohttp server on 127.0.0.1 (random port) that records posted JSON and answers as told."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.answers: deque[Answer] = deque()
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self._changed = asyncio.Condition()
        self.port = 0

    @property
    def url(self) -> str:
        """The webhook URL pointing here, with :data:`SECRET` in its path as a real one has."""
        return f"http://127.0.0.1:{self.port}/services/T0000/B0000/{SECRET}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def answer(self, *answers: Answer) -> None:
        """Queue answers for the next posts; after them every post gets 200 ``ok``."""
        self.answers.extend(answers)

    async def wait_for_posts(self, count: int, timeout: float = 5.0) -> list[Post]:
        """Wait until ``count`` posts arrived (a condition, not a sleep), and return them all."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.posts) >= count)
        return self.posts

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        post = Post(await request.json(), request.path, request.content_type, peer[1] if peer else 0)
        async with self._changed:
            self.posts.append(post)
            self._changed.notify_all()
        answer = self.answers.popleft() if self.answers else Answer()
        if answer.hang:
            await self._release.wait()
        return web.Response(status=answer.status, text=answer.body, headers=answer.headers)


def make_settings(tmp_path: Path, **section: Any) -> Settings:
    """Daemon settings with ``section`` as ``[plugins.slack]`` (none when empty), ignoring the shell's environment."""
    plugins = {"slack": section} if section else {}
    return Settings.model_validate({"data_dir": tmp_path, "openrouter_api_key": "k", "plugins": plugins})


def closed_port() -> int:
    """A local port nothing listens on (bound, then released), for connection failures."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def body(status: str = "completed", **changes: Any) -> dict[str, Any]:
    """A published event body as the contract shapes it, with ``changes`` applied."""
    completed = status == "completed"
    event: dict[str, Any] = {
        "id": "req-1",
        "status": status,
        "job_id": "job-abc",
        "generation_id": "gen-1" if completed else None,
        "model": "acme/video-1",
        "outputs": [output(0, "https://cdn.example.com/videos/req-1/0.mp4")] if completed else [],
        "usage": {"cost": 0.42} if completed else None,
        "error": None if status != "failed" else {"code": "provider_failed", "message": "it broke", "retryable": True},
        "metadata": {},
        "timestamps": {
            "received": "2026-11-25T19:00:00.000Z",
            "submitted": "2026-11-25T19:00:01.000Z",
            **({"completed": "2026-11-25T19:03:08.000Z"} if status in ("completed", "failed") else {}),
        },
    }
    event.update(changes)
    return event


def output(index: int, location: str, url: str | None = None) -> dict[str, Any]:
    """One ``outputs[i]`` entry; ``url`` is the presigned link a storage plugin may add."""
    found: dict[str, Any] = {
        "index": index,
        "location": location,
        "locations": {"store": location},
        "content_type": "video/mp4",
        "bytes": 1234,
        "sha256": "0" * 64,
    }
    if url is not None:
        found["url"] = url
    return found


def job_event(status: str = "completed", *, prompt: str | None = None, **changes: Any) -> JobEvent:
    """A :class:`JobEvent` for :func:`body`, with the request's prompt."""
    payload = body(status, **changes)
    return JobEvent(status, payload["id"], payload, {}, prompt)


def notification(event: JobEvent | None = None, *, attempt: int = 1) -> Notification:
    """An owed delivery of ``event`` to the plugin's one target, as the host's queue hands it over."""
    event = event if event is not None else job_event()
    return Notification(
        id=f"{event.request_id}:{event.status}:slack:webhook",
        event=event,
        target=NotifyTarget(key="webhook", data={}),
        attempt=attempt,
        created_at=0.0,
    )


def texts(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """Every text object in a payload's blocks, as (type, text), plus the fallback as ("fallback", text)."""
    found: list[tuple[str, str]] = [("fallback", payload["text"])]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("plain_text", "mrkdwn") and isinstance(node.get("text"), str):
                found.append((node["type"], node["text"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(payload["blocks"])
    return found


def dump(payload: dict[str, Any]) -> str:
    """The payload as JSON text, for 'appears nowhere' checks."""
    return json.dumps(payload, ensure_ascii=False)
