"""``videoworker demo --sinks``: the sink plugins at work, on local stand-ins for S3, a webhook receiver and Slack.

Starts moto's S3 server with a bucket (credentials only in this process's environment),
a webhook receiver that verifies Standard Webhooks signatures, and a receiver standing
in for Slack's incoming webhook, and gives the daemon the ``[plugins.s3]``,
``[plugins.webhooks]`` and ``[plugins.slack]`` sections that point at them. After the
run it shows, per video: the file on disk, the object in S3 (fetched through its
presigned URL and compared), the verified webhook and the Slack message.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click
import httpx

from videoworker.testing.recorder import until
from videoworker_devtools.receivers import HttpReceiver

SECRET = "whsec_" + base64.b64encode(b"videoworker-demo-webhook-secret!").decode()
BUCKET = "demo-videos"


@dataclass
class Sinks:
    """The stand-ins, and the plugin sections that point the daemon at them."""

    s3_endpoint: str
    webhook: HttpReceiver
    slack: HttpReceiver

    def plugin_config(self) -> dict[str, Any]:
        return {
            "s3": {"bucket": BUCKET, "endpoint_url": self.s3_endpoint, "prefix": "demo/", "presign_seconds": 600},
            "webhooks": {
                "endpoints": [{"name": "demo", "url": self.webhook.url + "/hooks/videoworker", "secret": SECRET}]
            },
            "slack": {"webhook_url": self.slack.url + "/services/T0DEMO/B0DEMO/demo"},
        }

    async def report(self, results: list[dict[str, Any]]) -> bool:
        """Wait for each completed job's webhook and Slack message, then show where everything went."""
        done = [event for event in results if event["status"] == "completed"]
        ids = {event["id"] for event in done}

        def announced() -> bool:
            hooks = {r.json()["id"] for r in self.webhook.ok() if r.json()["status"] == "completed"}
            return hooks >= ids and len(self.slack.ok()) >= len(ids)

        try:
            await until(announced, 30, "the webhooks and Slack messages")
        except AssertionError as exc:
            click.echo(f"✘ {exc}")
            return False
        ok = True
        for event in done:
            ok &= self._show(event)
        return ok

    def _show(self, event: dict[str, Any]) -> bool:
        output = event["outputs"][0]
        local = urlsplit(output["locations"]["local"]).path
        fetched = httpx.get(output["url"], timeout=10)
        same = fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == output["sha256"]
        hook = next(r for r in self.webhook.ok() if r.json()["id"] == event["id"] and r.json()["status"] == "completed")
        from standardwebhooks import Webhook

        signed = Webhook(SECRET).verify(hook.body, hook.headers) == event
        slack = next((r.json() for r in self.slack.ok() if event["id"] in str(r.json())), None)
        click.echo(f"  {event['id']}:")
        click.echo(f"    disk     {local}")
        click.echo(
            f"    S3       {output['locations']['s3']}  (presigned URL {'serves the same bytes' if same else 'FAILED'})"
        )
        click.echo(f"    webhook  {hook.headers['webhook-id']}  (signature {'verified' if signed else 'INVALID'})")
        click.echo(f"    Slack    {slack['text'] if slack else 'MISSING'}")
        return bool(same and signed and slack)


@contextlib.contextmanager
def sinks() -> Iterator[Sinks]:
    """Run the stand-ins for as long as the demo runs."""
    from moto.server import ThreadedMotoServer

    os.environ.update(
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3  # type: ignore[import-untyped]

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        with HttpReceiver() as webhook, HttpReceiver() as slack:
            click.echo(
                f"S3 (moto) at {endpoint}, bucket {BUCKET}; webhook receiver {webhook.url}; Slack at {slack.url}"
            )
            yield Sinks(endpoint, webhook, slack)
    finally:
        server.stop()
