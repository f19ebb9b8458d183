"""Real HTTP receivers for the demo and tests: a webhook endpoint, a Slack stand-in, a sentinel that hears nothing.

A thread-backed stdlib server, so it serves in-process daemons and daemon processes
alike. It records every request, answers with a status (and body) the test sets, can
hold each request for a while, and tracks how many requests per ``webhook-id`` are in
flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """``with HttpReceiver() as rx: … rx.url …``; set ``status``/``body``/``hold`` at any time."""

    status: int = 200
    body: bytes = b"ok"
    hold: float = 0.0
    received: list[Received] = field(default_factory=list)
    peak_in_flight: Counter[str] = field(default_factory=Counter)
    _in_flight: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def __enter__(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                key = self.headers.get("webhook-id", "")
                with receiver._lock:
                    receiver._in_flight[key] += 1
                    receiver.peak_in_flight[key] = max(receiver.peak_in_flight[key], receiver._in_flight[key])
                try:
                    if receiver.hold:
                        time.sleep(receiver.hold)
                    with receiver._lock:
                        receiver.received.append(Received(self.path, dict(self.headers), body, time.time()))
                        status, answer = receiver.status, receiver.body
                    self.send_response(status)
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                finally:
                    with receiver._lock:
                        receiver._in_flight[key] -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def ok(self) -> list[Received]:
        """Requests answered 2xx so far (those the sender counts as delivered)."""
        with self._lock:
            return list(self.received)

    def by_id(self) -> Counter[str]:
        """How many times each ``webhook-id`` arrived."""
        return Counter(r.headers.get("webhook-id", "") for r in self.ok())
