"""One aiobotocore session and S3 client per daemon, opened at startup and closed at shutdown.

Several daemons may run in one process (tests do), each with its own Settings object, so
clients are kept per Settings object. Settings is not hashable, so the key is its ``id``,
and the entry holds the object itself: while a client is open its settings cannot be
freed, so the id cannot be reused by another daemon's settings.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError

from videoworker import ConfigError, Settings, StorageError
from videoworker_s3.errors import without_url_secrets
from videoworker_s3.settings import NAME, S3Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

#: Attempts per S3 call (botocore's standard mode: throttling, 5xx and resets, with backoff);
#: the daemon retries the whole store after that.
ATTEMPTS = 3


@dataclass
class _Open:
    settings: Settings
    config: S3Settings
    client: S3Client
    stack: AsyncExitStack
    uploads: asyncio.Semaphore  # max_concurrent_uploads


_OPEN: dict[int, _Open] = {}


async def open_client(settings: Settings, config: S3Settings) -> None:
    """Open the daemon's client, once; a missing credential or profile refuses the start.

    Credentials come from the standard AWS chain only (environment, AWS_PROFILE and the
    shared files, container or instance role), resolved now so a daemon without them
    does not start.
    """
    found = _OPEN.get(id(settings))
    if found is not None and found.settings is settings:
        return
    stack = AsyncExitStack()
    try:
        session = get_session()
        credentials = await session.get_credentials()
        if credentials is None:
            raise ConfigError(
                f"[plugins.{NAME}] bucket: no AWS credentials found for s3://{config.bucket}: set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY, choose a profile with AWS_PROFILE, or use an instance role"
            )
        client = await stack.enter_async_context(
            session.create_client(
                "s3", endpoint_url=config.endpoint_url, region_name=config.region, config=_client_config(config)
            )
        )
    except BotoCoreError as exc:
        await stack.aclose()
        # e.g. ProfileNotFound or a malformed config file; botocore's messages name files and profiles, not secrets
        reason = without_url_secrets(str(exc))
        raise ConfigError(f"[plugins.{NAME}] cannot open an S3 client: {type(exc).__name__}: {reason}") from None
    except BaseException:
        await stack.aclose()
        raise
    _OPEN[id(settings)] = _Open(settings, config, client, stack, asyncio.Semaphore(config.max_concurrent_uploads))


async def close_client(settings: Settings) -> None:
    """Close the daemon's client if one is open; a second call does nothing."""
    found = _OPEN.get(id(settings))
    if found is not None and found.settings is settings:
        del _OPEN[id(settings)]
        await found.stack.aclose()


def client_for(settings: Settings) -> S3Client:
    """The open client of the daemon these settings belong to (for the store, and for tests and diagnostics)."""
    return _opened(settings).client


def upload_slots(settings: Settings) -> asyncio.Semaphore:
    """The daemon's ``max_concurrent_uploads`` slots: a store holds one while its bytes are in memory."""
    return _opened(settings).uploads


def _opened(settings: Settings) -> _Open:
    found = _OPEN.get(id(settings))
    if found is None or found.settings is not settings:
        raise StorageError(f"plugin {NAME!r} has no open S3 client: videoworker_startup did not run for these settings")
    return found


def _client_config(config: S3Settings) -> AioConfig:
    addressing = config.addressing_style or ("path" if config.endpoint_url else "virtual")
    return AioConfig(
        signature_version="s3v4",
        s3={"addressing_style": addressing},
        retries={"mode": "standard", "max_attempts": ATTEMPTS},
        connect_timeout=10,
        read_timeout=120,
        # checksums only where we ask for them (ChecksumAlgorithm, ChecksumMode): we send SHA-256 ourselves
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
