"""Credentials: moto checking signatures and IAM policies, and the plugin's errors naming the cause, not the secret."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
import videoworker_s3 as s3
from s3_testing import MakeOutput, StartDaemon, request

from videoworker import ConfigError, Settings, StorageError

ALLOW_S3 = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'


@dataclass(frozen=True)
class Keys:
    """Access keys moto's IAM knows: one user allowed everything in S3, one allowed nothing."""

    allowed: tuple[str, str]
    denied: tuple[str, str]


def _user(iam: Any, name: str, policy: str | None) -> tuple[str, str]:
    iam.create_user(UserName=name)
    if policy:
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture
def iam_keys(moto_url: str, bucket: str) -> Iterator[Keys]:
    """Create two IAM users, then make moto authenticate every request (signature and policy) until the test ends."""
    iam = boto3.client(
        "iam", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    suffix = bucket.rsplit("-", 2)[-2:]
    keys = Keys(_user(iam, f"writer-{'-'.join(suffix)}", ALLOW_S3), _user(iam, f"nobody-{'-'.join(suffix)}", None))
    # moto's switch: after this many unauthenticated requests (here: none), every request is checked
    httpx.post(f"{moto_url}/moto-api/reset-auth", content=b"0").raise_for_status()
    try:
        yield keys
    finally:
        httpx.post(f"{moto_url}/moto-api/reset-auth", content=b"inf").raise_for_status()


async def _daemon_as(monkeypatch: pytest.MonkeyPatch, start_daemon: StartDaemon, key_id: str, secret: str) -> Settings:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    return await start_daemon()


async def test_moto_checks_credentials_and_good_ones_store(
    iam_keys: Keys, monkeypatch: pytest.MonkeyPatch, start_daemon: StartDaemon, make_output: MakeOutput
) -> None:
    """With IAM authentication on, a known key with s3:* stores the output (so the refusals below are real)."""
    settings = await _daemon_as(monkeypatch, start_daemon, *iam_keys.allowed)
    stored = await s3.videoworker_store_output(request(), make_output(3000), settings)
    assert stored is not None and stored.location.endswith("/req-1/0.mp4")


@pytest.mark.parametrize(
    ("which", "code"),
    [("wrong-secret", "SignatureDoesNotMatch"), ("unknown-key", "InvalidAccessKeyId"), ("no-policy", "AccessDenied")],
)
async def test_bad_credentials_are_named_without_the_secret(
    iam_keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    start_daemon: StartDaemon,
    make_output: MakeOutput,
    bucket: str,
    which: str,
    code: str,
) -> None:
    """A wrong secret, an unknown key id or a key without permission fails with S3's code and the bucket, no secret."""
    key_id, secret = {
        "wrong-secret": (iam_keys.allowed[0], "not-the-secret-0123456789abcdefghijklmn"),
        "unknown-key": ("AKIAUNKNOWN000000000", "some-secret-0123456789abcdefghijklmnopq"),
        "no-policy": iam_keys.denied,
    }[which]
    settings = await _daemon_as(monkeypatch, start_daemon, key_id, secret)
    with pytest.raises(StorageError) as info:
        await s3.videoworker_store_output(request(), make_output(3000), settings)
    message = str(info.value)
    assert f"bucket {bucket!r} ({code}" in message
    assert secret not in message and key_id not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_without_credentials_the_daemon_does_not_start(
    monkeypatch: pytest.MonkeyPatch, start_daemon: StartDaemon
) -> None:
    """No key in the environment, no profile and no instance role: startup refuses, naming the ways to give one."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match=r"\[plugins\.s3\] bucket: no AWS credentials found .*AWS_PROFILE"):
        await start_daemon()


async def test_an_unknown_profile_stops_the_start(monkeypatch: pytest.MonkeyPatch, start_daemon: StartDaemon) -> None:
    """AWS_PROFILE naming a profile that does not exist is a configuration error at start."""
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(ConfigError, match=r"\[plugins\.s3\] cannot open an S3 client: ProfileNotFound"):
        await start_daemon()


async def test_credentials_from_a_profile_are_used(
    monkeypatch: pytest.MonkeyPatch, start_daemon: StartDaemon, make_output: MakeOutput, tmp_path: Any
) -> None:
    """A profile in the shared credentials file (chosen with AWS_PROFILE) is part of the standard chain."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = tmp_path / "credentials"
    credentials.write_text("[videos]\naws_access_key_id = from-profile\naws_secret_access_key = profile-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "videos")
    settings = await start_daemon()
    assert await s3.videoworker_store_output(request(), make_output(2000), settings) is not None
