"""Settings, key rules and delivery options: everything decided before a byte is sent, and the plugin's listing."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import videoworker_s3 as s3
from s3_testing import MakeOutput, MiB, StartDaemon, request

from videoworker import ConfigError, InvalidRequest, Settings, delivery_options


def settings(tmp_path: Path, **section: Any) -> Settings:
    return Settings(data_dir=tmp_path, openrouter_api_key="k", plugins={"s3": section} if section else {})


@pytest.mark.parametrize(
    ("section", "where", "reason"),
    [
        ({"bucket": "b-1", "colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"bucket": "b-1", "part_size": 4 * MiB}, "part_size", "greater than or equal to 5242880"),
        ({"bucket": "b-1", "multipart_threshold": 1024}, "multipart_threshold", "greater than or equal"),
        ({"bucket": "b-1", "presign_seconds": 8 * 86400}, "presign_seconds", "less than or equal to 604800"),
        ({"bucket": "b-1", "key_template": "{prefix}{id}/{name}.mp4"}, "key_template", "unknown placeholder"),
        ({"bucket": "b-1", "key_template": "{prefix}{id}.mp4"}, "key_template", "must contain {index}"),
        ({"bucket": "b-1", "key_template": "{id}/{index}.mp4"}, "key_template", "must start with {prefix}"),
        ({"bucket": "b-1", "key_template": "{prefix}{id.upper}/{index}"}, "key_template", "unknown placeholder"),
        ({"bucket": "b-1", "key_template": "{prefix}{id}/{index"}, "key_template", "not a valid template"),
        ({"bucket": "b-1", "key_template": "{prefix}/../{id}/{index}"}, "key_template", "invalid key"),
        ({"bucket": "b-1", "prefix": "/videos"}, "prefix", "may not start with '/'"),
        ({"bucket": "b-1", "prefix": "a/../b"}, "prefix", "'..'"),
        ({"bucket": "b-1", "sse": "rot13"}, "sse", "Input should be"),
        ({"bucket": "b-1", "sse_kms_key_id": "alias/videos"}, "sse_kms_key_id", "needs sse = 'aws:kms'"),
        ({"bucket": "s3://b-1/videos"}, "bucket", "not an s3:// URI"),
        ({"prefix": "videos/"}, "bucket", "required when the section sets anything else (prefix)"),
    ],
)
async def test_a_wrong_setting_is_named(tmp_path: Path, section: dict[str, Any], where: str, reason: str) -> None:
    """Startup refuses a wrong value with a message naming `[plugins.s3] <key>` and the rule."""
    with pytest.raises(ConfigError) as info:
        await s3.videoworker_startup(settings(tmp_path, **section))
    assert str(info.value).startswith(f"[plugins.s3] {where}: "), str(info.value)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "key", ["aws_access_key_id", "aws_secret_access_key", "aws_session_token", "secret_key", "AWS_PROFILE"]
)
async def test_credentials_in_the_settings_are_refused_without_echoing_them(tmp_path: Path, key: str) -> None:
    """A credential in the section stops the start, pointing to the environment or a profile, and never repeats it."""
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(ConfigError) as info:
        await s3.videoworker_startup(settings(tmp_path, bucket="b-1", **{key: secret}))
    message = str(info.value)
    assert message.startswith(f"[plugins.s3] {key}: credentials are never read from the settings file")
    assert "AWS_ACCESS_KEY_ID" in message and "AWS_PROFILE" in message and secret not in message


async def test_an_endpoint_with_a_password_in_it_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """`endpoint_url` may not carry user:password@; the message names the key, not the value."""
    with pytest.raises(ConfigError, match=r"^\[plugins\.s3\] endpoint_url: ") as info:
        await s3.videoworker_startup(settings(tmp_path, bucket="b-1", endpoint_url="https://me:hunter2@minio:9000"))
    assert "hunter2" not in str(info.value)


async def test_without_a_bucket_the_plugin_is_inactive(tmp_path: Path, make_output: MakeOutput) -> None:
    """No section (the shared test environment's daemons): startup opens nothing and every store passes with None."""
    for daemon in (settings(tmp_path), Settings(data_dir=tmp_path, openrouter_api_key="k", plugins={"s3": {}})):
        await s3.videoworker_startup(daemon)
        assert await s3.videoworker_store_output(request(), make_output(1000), daemon) is None
        await s3.videoworker_shutdown(daemon)


def test_the_plugin_declares_its_models() -> None:
    """The host gets the settings and delivery models from the declaration hooks."""
    assert s3.videoworker_settings_model() is s3.S3Settings
    assert s3.videoworker_delivery_model() is s3.S3Delivery
    assert s3.S3Settings.model_config.get("extra") == "forbid" and s3.S3Delivery.model_config.get("extra") == "forbid"


@pytest.mark.parametrize(
    ("section", "delivery", "index", "key"),
    [
        ({}, {}, 0, "req-1/0.mp4"),
        ({"prefix": "videos"}, {}, 2, "videos/req-1/2.mp4"),
        ({"prefix": "videos/"}, {"prefix": "customer-a"}, 0, "videos/customer-a/req-1/0.mp4"),
        ({"prefix": "videos/", "key_template": "{prefix}{id}-{index:03d}.mp4"}, {}, 7, "videos/req-1-007.mp4"),
        ({"prefix": "videos/"}, {"key": "clips/cat.mp4"}, 0, "videos/clips/cat.mp4"),
        ({"prefix": "videos/"}, {"key": "clips/cat.mp4"}, 1, "videos/clips/cat-1.mp4"),
        ({}, {"key": "cat"}, 2, "cat-2"),
    ],
)
async def test_keys_follow_the_template_and_stay_inside_the_prefix(
    start_daemon: StartDaemon,
    make_output: MakeOutput,
    bucket: str,
    section: dict[str, Any],
    delivery: dict[str, str],
    index: int,
    key: str,
) -> None:
    """The template, the configured prefix and the request's key or prefix give the documented key."""
    daemon = await start_daemon(**section)
    stored = await s3.videoworker_store_output(request(**delivery), make_output(1000, index=index), daemon)
    assert stored is not None and stored.location == f"s3://{bucket}/{key}"


@pytest.mark.parametrize(
    ("options", "field", "reason"),
    [
        ({"key": "../other/cat.mp4"}, "delivery.s3.key", "'..'"),
        ({"key": "a/../../cat.mp4"}, "delivery.s3.key", "'..'"),
        ({"key": "/etc/passwd"}, "delivery.s3.key", "may not start with '/'"),
        ({"key": "s3://other-bucket/cat.mp4"}, "delivery.s3.key", "not a URL"),
        ({"key": "clips//cat.mp4"}, "delivery.s3.key", "empty segment"),
        ({"key": "C:\\videos\\cat.mp4"}, "delivery.s3.key", "'\\'"),
        ({"key": "clips/"}, "delivery.s3.key", "empty segment"),
        ({"key": ""}, "delivery.s3.key", "at least 1 character"),
        ({"prefix": "../up"}, "delivery.s3.prefix", "'..'"),
        ({"prefix": "/abs/"}, "delivery.s3.prefix", "may not start with '/'"),
        ({"prefix": "a", "key": "b.mp4"}, "delivery.s3.prefix", "not both"),
        ({"bucket": "other-bucket"}, "delivery.s3.bucket", "Extra inputs are not permitted"),
        ({"key": "a\nb"}, "delivery.s3.key", "control characters"),
    ],
)
async def test_delivery_options_that_leave_the_prefix_are_refused(
    start_daemon: StartDaemon, make_output: MakeOutput, options: dict[str, str], field: str, reason: str
) -> None:
    """At intake (the host, with the model) and at store time alike, an escaping key or prefix names its field."""
    with pytest.raises(InvalidRequest) as info:
        delivery_options({"s3": options}, "s3", s3.S3Delivery)
    assert info.value.field == field and reason in info.value.message, info.value.message
    daemon = await start_daemon(prefix="videos/")
    with pytest.raises(InvalidRequest) as again:
        await s3.videoworker_store_output(request(**options), make_output(1000), daemon)
    assert again.value.field == field


def test_the_plugin_imports_only_public_videoworker_names() -> None:
    """The plugin and its tests use the promised API: ``from videoworker import …`` and nothing deeper."""
    files = [*Path(s3.__file__).parent.glob("*.py"), *Path(__file__).parent.glob("*.py")]
    for path in files:
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        ours = {m for m in modules if m and m.split(".")[0] == "videoworker"}
        assert ours <= {"videoworker"}, (path.name, ours)


def test_videoworker_lists_the_installed_plugin() -> None:
    """`videoworker plugins --json` shows `s3` from its distribution, with its version and hooks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOWORKER_")}
    found = subprocess.run(
        [sys.executable, "-m", "videoworker", "plugins", "--json"], capture_output=True, text=True, env=env, check=True
    )
    row = {row["name"]: row for row in json.loads(found.stdout)}["s3"]
    assert row["distribution"] == "videoworker-s3" and row["version"] == s3.__version__
    assert row["entry_point"] == "s3 = videoworker_s3" and not row["builtin"]
    assert row["hooks"] == [
        "videoworker_delivery_model",
        "videoworker_settings_model",
        "videoworker_shutdown",
        "videoworker_startup",
        "videoworker_store_output",
    ]
