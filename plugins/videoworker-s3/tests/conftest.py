"""Fixtures: a real S3 API (moto in server mode, over HTTP on 127.0.0.1), daemons with the plugin started, outputs.

moto's backends live in this process, so a test can count what reached the server and
inject faults into it; each test gets its own bucket, so the one server is shared.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import videoworker_s3 as s3
from moto.s3.models import S3Backend
from moto.server import ThreadedMotoServer
from s3_testing import MakeOutput, ServerLog, StartDaemon

from videoworker import OutputFile, Settings

_names = itertools.count()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """The endpoint of a moto S3 server on a free port of 127.0.0.1, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # returns once the socket is bound
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials in the environment, and nothing else of the AWS chain (no files, no instance role)."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def raw(moto_url: str) -> Any:
    """A plain boto3 client on the same server, to set up and inspect buckets behind the plugin's back."""
    return boto3.client(
        "s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
    )


@pytest.fixture
def bucket(raw: Any) -> str:
    """A new, empty bucket of this test's own."""
    name = f"videos-{os.getpid()}-{next(_names)}"
    raw.create_bucket(Bucket=name)
    return name


@pytest.fixture
async def start_daemon(tmp_path: Path, moto_url: str, bucket: str) -> AsyncIterator[StartDaemon]:
    """Start the plugin as a daemon would (its own Settings object); every daemon is shut down at the end."""
    started: list[Settings] = []

    async def start(**section: Any) -> Settings:
        section = {"bucket": bucket, "endpoint_url": moto_url, **section}
        settings = Settings(data_dir=tmp_path, openrouter_api_key="k", plugins={"s3": section})
        await s3.videoworker_startup(settings)
        started.append(settings)
        return settings

    yield start
    for settings in started:
        await s3.videoworker_shutdown(settings)


@pytest.fixture
def make_output(tmp_path: Path) -> MakeOutput:
    """Write a video-sized file of random bytes and describe it as the daemon's verified download."""

    def make(size: int, *, index: int = 0, request_id: str = "req-1") -> OutputFile:
        path = tmp_path / f"{request_id}-{index}-{next(_names)}.mp4"
        data = b"\x00\x00\x00\x18ftypmp42" + os.urandom(max(size - 12, 0))
        path.write_bytes(data[:size])
        return OutputFile(request_id, index, path, size, hashlib.sha256(data[:size]).hexdigest())

    return make


@pytest.fixture
def server_log(monkeypatch: pytest.MonkeyPatch) -> ServerLog:
    """Count the S3 operations moto carries out, and let a test inject a failure or corrupt a part."""
    from moto.s3.exceptions import S3ClientError

    log = ServerLog()

    def counted(operation: str) -> None:
        original = getattr(S3Backend, operation)

        def wrapper(self: S3Backend, *args: Any, **kwargs: Any) -> Any:
            log.calls[operation] += 1
            if operation == "upload_part":
                log.parts.append(args[2])
                if args[2] == log.corrupt_part:
                    data = bytes(args[3])  # flip every bit: a first byte that was 0xff must change too
                    args = (*args[:3], bytes([data[0] ^ 0xFF]) + data[1:])
            if log.fail(operation, args):
                raise S3ClientError("SlowDown", "Please reduce your request rate (injected by the test).")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(S3Backend, operation, wrapper)

    for operation in ("put_object", "create_multipart_upload", "upload_part", "complete_multipart_upload"):
        counted(operation)
    original_get = S3Backend.get_object

    def get_object(self: S3Backend, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        if key_name in log.hide_once:
            log.hide_once.discard(key_name)
            return None
        return original_get(self, bucket_name, key_name, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "get_object", get_object)
    return log
