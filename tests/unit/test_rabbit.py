"""worker/rabbit.py: the test and demo commands say plainly what is missing when RabbitMQ is."""

from __future__ import annotations

import socket

import pytest

from videoworker_devtools import rabbit
from videoworker_devtools.ports import free_port


def test_reachable_broker_is_left_alone() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert rabbit.ensure_rabbitmq(f"amqp://g:g@127.0.0.1:{port}/") == f"RabbitMQ is up at 127.0.0.1:{port}"


def test_remote_broker_is_not_started_here() -> None:
    with pytest.raises(rabbit.BrokerMissing, match="another host"):
        rabbit.ensure_rabbitmq("amqp://g:g@broker.invalid:5672/")


def test_missing_install_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not running and not installed: the message says to install it or point the URL elsewhere."""
    monkeypatch.setattr(rabbit.shutil, "which", lambda name: None)
    monkeypatch.setattr(rabbit, "_SBIN", ("/nonexistent/rabbitmq-server",))
    with pytest.raises(rabbit.BrokerMissing, match=r"not installed.*apt-get install rabbitmq-server"):
        rabbit.ensure_rabbitmq(f"amqp://g:g@127.0.0.1:{free_port()}/")
