"""videoworker-s3: keep every finished video in an S3 bucket (AWS, MinIO, R2, Ceph…), checksummed and idempotent.

Each output goes to ``s3://<bucket>/<key>``, the key from ``key_template`` (default
``{prefix}{id}/{index}.mp4``) or from the request's ``delivery.s3`` options, always inside
the configured prefix. Small files go up in one checksummed PUT, large ones part by part
(one part in memory at a time). A repeat finds the same bytes at the key and skips the
upload; a different object at the key is never overwritten.

Settings live in ``[plugins.s3]`` (see :class:`~videoworker_s3.settings.S3Settings` and the
README); without a ``bucket`` the plugin is inactive and stores nothing. Credentials come
only from the standard AWS chain, never from the settings file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from videoworker import OutputFile, Settings, StorageError, StoredOutput, VideoRequest, delivery_options, hookimpl
from videoworker_s3 import keys
from videoworker_s3.client import client_for, close_client, open_client, upload_slots
from videoworker_s3.errors import storage_error
from videoworker_s3.settings import NAME, S3Delivery, S3Settings, load_settings
from videoworker_s3.upload import store

if TYPE_CHECKING:
    from pydantic import BaseModel

__version__ = "0.1.0"

__all__ = ["NAME", "S3Delivery", "S3Settings", "__version__", "client_for", "object_key"]


@hookimpl
def videoworker_settings_model() -> type[BaseModel]:
    """Declare the ``[plugins.s3]`` model, so the host refuses a wrong key before any plugin starts."""
    return S3Settings


@hookimpl
def videoworker_delivery_model() -> type[BaseModel]:
    """Declare the ``delivery.s3`` model, so a request that would leave the prefix is refused at intake."""
    return S3Delivery


@hookimpl
async def videoworker_startup(settings: Settings) -> None:
    """Check the section and open this daemon's S3 client; an unconfigured plugin opens nothing."""
    config = load_settings(settings)
    if config.active:
        await open_client(settings, config)


@hookimpl
async def videoworker_shutdown(settings: Settings) -> None:
    """Close the client startup opened."""
    await close_client(settings)


@hookimpl
async def videoworker_store_output(
    request: VideoRequest, output: OutputFile, settings: Settings
) -> StoredOutput | None:
    """Upload the output (or find it already there) and say where it is; None when no bucket is configured.

    :raises videoworker.InvalidRequest: the request's ``delivery.s3`` options are invalid.
    :raises videoworker.StorageError: anything that kept the output from being stored.
    """
    config = load_settings(settings)
    if not config.active:
        return None
    options = delivery_options(request.delivery, NAME, S3Delivery)
    key = object_key(config, options, output)
    client = client_for(settings)
    async with upload_slots(settings):  # bounds the plugin's buffers, whatever the daemon's concurrency
        await store(client, config, output, key)
    bucket = str(config.bucket)
    url = None
    if config.presign_seconds:
        try:
            url = await client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=config.presign_seconds
            )
        except (BotoCoreError, ClientError) as exc:
            raise storage_error(exc, operation="presign", bucket=bucket, key=key) from None
    return StoredOutput(NAME, f"s3://{bucket}/{key}", url=url)


def object_key(config: S3Settings, options: S3Delivery, output: OutputFile) -> str:
    """The key of one output: the request's ``key`` or ``prefix`` inside the configured prefix, else the template.

    :raises videoworker.StorageError: the key would be invalid or outside the prefix (a last
        guard: the settings and the options were already validated).
    """
    root = config.folder
    if options.key is not None:
        key = keys.explicit_key(root, options.key, output.index)
    else:
        prefix = root + keys.as_folder(options.prefix or "")
        key = keys.template_key(config.key_template, prefix=prefix, request_id=output.request_id, index=output.index)
    try:
        return keys.final_check(key, root)
    except ValueError as exc:
        raise StorageError(f"the key {key!r} for output {output.index} of request {output.request_id} {exc}") from None
