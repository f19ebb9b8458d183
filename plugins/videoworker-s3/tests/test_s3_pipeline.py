"""The plugin in the real pipeline, with videoworker's test fixtures: a daemon, the simulator, RabbitMQ, moto."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx


async def test_a_completed_job_is_in_the_bucket_with_a_working_presigned_url(
    videoworker_daemon: Any, videoworker_recorder: Any, moto_url: str, bucket: str, raw: Any
) -> None:
    """The event's primary location is the S3 object; its presigned URL serves the bytes the event describes."""
    section = {"bucket": bucket, "endpoint_url": moto_url, "prefix": "e2e/", "presign_seconds": 60}
    await videoworker_daemon(plugin_config={"s3": section})
    await videoworker_recorder.publish(
        {"id": "s3-e2e", "model": "google/veo-3.1", "prompt": "a red kite", "delivery": {"s3": {"prefix": "kites/"}}}
    )
    final = await videoworker_recorder.final("s3-e2e")
    (output,) = final["outputs"]
    assert output["location"] == f"s3://{bucket}/e2e/kites/s3-e2e/0.mp4"
    stored = raw.get_object(Bucket=bucket, Key="e2e/kites/s3-e2e/0.mp4")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == output["sha256"]
    assert httpx.get(output["url"], timeout=10).content == stored
