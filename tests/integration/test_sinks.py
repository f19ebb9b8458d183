"""The sink distributions through a real daemon: S3 (moto over HTTP), Slack and webhooks (local receivers).

Each plugin has its own tests in plugins/; these prove they plug into the pipeline with
nothing but settings: the video lands on disk and in S3 (with a presigned URL that
serves its bytes), the Slack receiver gets a Block Kit message, a signed webhook comes
with it, and a request URL pointing at a private address never reaches its listener.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from standardwebhooks import Webhook

from tests.conftest import Observer
from videoworker.testing.recorder import until
from videoworker_devtools.receivers import HttpReceiver
from videoworker_devtools.simulator import SimulatorThread

SECRET = "whsec_" + base64.b64encode(b"videoworker-sinks-webhook-secret").decode()
MODEL = "google/veo-3.1"


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A moto S3 server over HTTP with an empty bucket; AWS credentials only in the environment."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }.items():
        monkeypatch.setenv(name, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="videos")
    yield endpoint, "videos"
    server.stop()


async def test_one_video_reaches_disk_s3_a_webhook_and_slack(
    daemon: Any, observer: Observer, sim: SimulatorThread, s3_bucket: tuple[str, str]
) -> None:
    """With the three sink plugins configured, a completed job is on disk and in S3, announced to both receivers."""
    endpoint, bucket = s3_bucket
    with HttpReceiver() as hooks_rx, HttpReceiver() as slack_rx:
        config = {
            "s3": {"bucket": bucket, "endpoint_url": endpoint, "prefix": "out/", "presign_seconds": 300},
            "webhooks": {"endpoints": [{"name": "ops", "url": hooks_rx.url, "secret": SECRET}]},
            "slack": {"webhook_url": slack_rx.url + "/services/T000/B000/XXXX"},
        }
        await daemon(plugin_config=config)
        await observer.publish({"id": "sink-1", "model": MODEL, "prompt": "a <!channel> boat *bold*", "duration": 4})
        final = await observer.final("sink-1")
        assert final["status"] == "completed", final
        (output,) = final["outputs"]
        assert output["location"] == f"s3://{bucket}/out/sink-1/0.mp4"  # the installed store is the primary one
        assert set(output["locations"]) == {"s3", "local"}
        fetched = httpx.get(output["url"], timeout=10)
        assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == output["sha256"]
        on_disk = Path(urlsplit(output["locations"]["local"]).path).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == output["sha256"]

        await until(lambda: any(r.json()["status"] == "completed" for r in hooks_rx.ok()), 30, "the signed webhook")
        (hook,) = [r for r in hooks_rx.ok() if r.json()["status"] == "completed"]
        assert Webhook(SECRET).verify(hook.body, hook.headers) == final

        await until(lambda: slack_rx.ok(), 30, "the Slack message")
        (message,) = [r.json() for r in slack_rx.ok()]
        assert message["blocks"] and "sink-1" in str(message)
        assert "<!channel>" not in message["text"]  # the prompt cannot ping anyone


async def test_a_request_url_to_a_private_address_never_reaches_it(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """The SSRF guard: a producer's webhook URL on 127.0.0.1 is refused at intake, and the sentinel hears nothing."""
    with HttpReceiver() as sentinel:
        section = {"webhooks": {"allow_request_urls": True, "request_url_secret": SECRET}}
        await daemon(plugin_config=section)
        for i, url in enumerate(
            [f"http://127.0.0.1:{sentinel.port}/", f"https://127.0.0.1:{sentinel.port}/", "https://169.254.169.254/x"]
        ):
            delivery = {"webhooks": {"url": url}}
            await observer.publish({"id": f"ssrf-{i}", "model": MODEL, "prompt": "a boat", "delivery": delivery})
        await observer.wait(lambda: len(observer.replies) == 3, 30, "three refusals")
        for body, _ in observer.replies:
            assert body["status"] == "failed" and body["error"]["code"] == "invalid_request", body
            assert "delivery.webhooks.url" in body["error"]["message"]
        assert sentinel.ok() == []
        assert sim.stats()["submits"] == 0
