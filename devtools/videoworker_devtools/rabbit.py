"""Make sure a local RabbitMQ is up, for the demo and the tests (never used by ``run``).

If nothing listens on the AMQP port of a localhost URL and ``rabbitmq-server`` is
installed, start it (``rabbitmq-server -detached``) and wait for it. Otherwise say
plainly what is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from urllib.parse import urlsplit

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_SBIN = ("/usr/sbin/rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server")


class BrokerMissing(RuntimeError):
    """Raised when RabbitMQ is neither reachable nor startable here."""


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_rabbitmq(url: str, *, wait: float = 90.0) -> str:
    """Return a line saying what was done; raise :class:`BrokerMissing` saying what is missing."""
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 5672
    if reachable(host, port):
        return f"RabbitMQ is up at {host}:{port}"
    if host not in LOCAL_HOSTS:
        raise BrokerMissing(f"RabbitMQ at {host}:{port} is not reachable (amqp_url points to another host)")
    server = shutil.which("rabbitmq-server") or next((p for p in _SBIN if os.path.exists(p)), None)
    if server is None:
        raise BrokerMissing(
            f"RabbitMQ is not running on {host}:{port} and is not installed. "
            "Install it (Debian/Ubuntu: apt-get install rabbitmq-server) or set VIDEOWORKER_AMQP_URL to a broker."
        )
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if os.path.exists(ctl):
        # a node that is up with its app stopped (rabbitmqctl stop_app) only needs start_app
        subprocess.run([ctl, "start_app"], check=False, capture_output=True, timeout=60)
        if reachable(host, port):
            return f"started the RabbitMQ app ({ctl} start_app); up at {host}:{port}"
    subprocess.run([server, "-detached"], check=False, capture_output=True, timeout=60)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if reachable(host, port):
            subprocess.run([ctl, "await_startup"], check=False, capture_output=True, timeout=wait)
            return f"started RabbitMQ ({server} -detached); up at {host}:{port}"
        time.sleep(0.5)
    raise BrokerMissing(f"started {server} -detached but nothing listens on {host}:{port} after {wait:.0f}s")


if __name__ == "__main__":  # `python -m worker.rabbit [URL]`: used by `make test` and `make demo`
    import sys

    target = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get("VIDEOWORKER_AMQP_URL", "amqp://guest:guest@localhost:5672/")
    )
    try:
        print(ensure_rabbitmq(target))
    except BrokerMissing as exc:
        print(f"videoworker: {exc}", file=sys.stderr)
        sys.exit(3)
