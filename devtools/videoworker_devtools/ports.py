"""A free TCP port on 127.0.0.1, for the stand-ins and daemons that tests, benches and the demo start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (bound, then released): free to listen on, refused to connect to."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
