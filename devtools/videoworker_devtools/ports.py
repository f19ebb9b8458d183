"""Free TCP ports on 127.0.0.1 for the stand-ins and daemons that tests, benches and the demo start,
and waiting for what was started on one to answer."""

from __future__ import annotations

import socket
import time

import httpx


def free_port() -> int:
    """A port nothing listens on right now (bound, then released): free to listen on, refused to connect to."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answers(url: str, seconds: float, what: str, *, status: int | None = None) -> None:
    """Return once a GET of ``url`` gets an answer (with ``status``, when given); TimeoutError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if status in (None, httpx.get(url, timeout=1).status_code):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer within {seconds:g} s")
        time.sleep(0.1)
