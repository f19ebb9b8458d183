"""Uploading one verified output: a checksummed PUT below the threshold, a multipart upload above it.

Memory stays flat: a multipart upload reads, hashes and sends one part at a time, so a
1 GiB video costs about one part (``part_size``) in memory, never the whole file. The
bytes are hashed as they are read, and an upload whose bytes do not match
``output.sha256`` is never completed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import math
from collections.abc import Awaitable
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

from botocore.exceptions import ClientError

from videoworker import OutputFile, StorageError
from videoworker_s3 import existing
from videoworker_s3.body import PartBody
from videoworker_s3.errors import code_of, storage_error

if TYPE_CHECKING:
    from hashlib import _Hash

    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

    from videoworker_s3.settings import S3Settings

log = logging.getLogger("videoworker_s3")

#: S3's most parts per upload: a larger file gets larger parts.
MAX_PARTS = 10_000
_MiB = 1024 * 1024
#: What a conditional write (If-None-Match: *) answers when an object appeared at the key.
_PRECONDITION = ("PreconditionFailed", "412")
T = TypeVar("T")


async def store(client: S3Client, config: S3Settings, output: OutputFile, key: str) -> bool:
    """Put ``output`` at ``key`` unless it is already there; True if it was uploaded, False if skipped.

    :raises videoworker.StorageError: a different object is at the key, the file does not
        match its sha256, or S3 failed (after botocore's own retries).
    """
    bucket = str(config.bucket)
    found = await _call("GetObject", bucket, key, existing.find(client, bucket, key))
    if found is not None:
        existing.check_same(found, output, bucket, key)
        log.info("s3: s3://%s/%s already holds this output; not uploading again", bucket, key)
        return False
    if output.bytes < config.multipart_threshold:
        await _put(client, config, output, key)
    else:
        await _multipart(client, config, output, key)
    return True


async def _put(client: S3Client, config: S3Settings, output: OutputFile, key: str) -> None:
    bucket = str(config.bucket)
    # allocated here, on the loop's thread: a buffer malloc'd in a worker thread lands in that
    # thread's arena, which keeps the freed memory (RSS) long after the upload
    buffer = bytearray(output.bytes)
    await asyncio.to_thread(_read_verified, output, buffer)
    args = _object_args(config, output)
    if config.conditional_writes:
        args["IfNoneMatch"] = "*"
    try:
        # S3 recomputes the SHA-256 of what it received and refuses it (BadDigest) if it differs
        await client.put_object(
            Bucket=bucket,
            Key=key,
            Body=_body(buffer),
            ContentLength=len(buffer),
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_b64(bytes.fromhex(output.sha256)),
            **args,
        )
    except ClientError as exc:
        if code_of(exc) in _PRECONDITION:
            await _raced(client, output, bucket, key)
            return
        raise storage_error(exc, operation="PutObject", bucket=bucket, key=key) from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes a StorageError naming the call
        raise storage_error(exc, operation="PutObject", bucket=bucket, key=key) from None


async def _multipart(client: S3Client, config: S3Settings, output: OutputFile, key: str) -> None:
    bucket = str(config.bucket)
    part_size = max(config.part_size, math.ceil(output.bytes / MAX_PARTS / _MiB) * _MiB)
    created = await _call(
        "CreateMultipartUpload",
        bucket,
        key,
        client.create_multipart_upload(
            Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256", **_object_args(config, output)
        ),
    )
    upload_id = created["UploadId"]
    try:
        parts, digests = await _send_parts(client, output, bucket, key, upload_id, part_size)
        complete: dict[str, Any] = {"IfNoneMatch": "*"} if config.conditional_writes else {}
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **complete
        )
    except BaseException as exc:
        # failed, refused or cancelled: never leave an incomplete upload (and its stored parts) behind
        aborted = await _abort(client, bucket, key, upload_id)
        if isinstance(exc, ClientError) and code_of(exc) in _PRECONDITION:
            await _raced(client, output, bucket, key)
            return
        if isinstance(exc, StorageError) or not isinstance(exc, Exception):
            raise
        error = storage_error(exc, operation="multipart upload", bucket=bucket, key=key)
        if not aborted:
            error = StorageError(f"{error}; the incomplete upload could not be aborted (a lifecycle rule will)")
        raise error from None
    await _verify_completed(client, output, bucket, key, digests)


async def _send_parts(
    client: S3Client, output: OutputFile, bucket: str, key: str, upload_id: str, part_size: int
) -> tuple[list[CompletedPartTypeDef], list[bytes]]:
    """Read, hash and send one part at a time; refuse to go on if the file is not the verified output."""
    whole = hashlib.sha256()
    parts: list[CompletedPartTypeDef] = []
    digests: list[bytes] = []
    sent = 0
    # one buffer for every part, allocated on the loop's thread (see _put): memory stays at one part
    buffer = memoryview(bytearray(min(part_size, output.bytes)))
    handle = await asyncio.to_thread(open, output.path, "rb")
    try:
        while count := await asyncio.to_thread(_fill, handle, buffer):
            chunk = buffer[:count]
            digest = await asyncio.to_thread(_hash_part, chunk, whole)
            number = len(parts) + 1
            answer = await client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=_body(chunk),
                ContentLength=count,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64(digest),
            )
            sent += count
            parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": _b64(digest)})
            digests.append(digest)
    finally:
        await asyncio.to_thread(handle.close)
    _check_file(output, sent, whole.hexdigest())
    return parts, digests


async def _verify_completed(client: S3Client, output: OutputFile, bucket: str, key: str, digests: list[bytes]) -> None:
    """Check S3's checksum of the completed object against the parts we sent; remove it if they differ.

    S3 builds a multipart object's SHA-256 from its parts' checksums (``<b64>-<parts>``),
    so this catches a server that stored other bytes than it was sent. One that keeps no
    checksums is only checked for size.
    """
    head = await _call("HeadObject", bucket, key, client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
    expected = _b64(hashlib.sha256(b"".join(digests)).digest())
    stored = head.get("ChecksumSHA256")
    if head["ContentLength"] == output.bytes and (not stored or stored.split("-")[0] == expected):
        return
    await _call("DeleteObject", bucket, key, client.delete_object(Bucket=bucket, Key=key))
    raise StorageError(
        f"S3 stored other bytes at s3://{bucket}/{key} than were sent ({head['ContentLength']} bytes, "
        f"checksum {stored}; expected {output.bytes} bytes, checksum {expected}): removed it, to be uploaded again"
    )


async def _raced(client: S3Client, output: OutputFile, bucket: str, key: str) -> None:
    # the conditional write lost: another writer put an object there since we looked
    found = await _call("GetObject", bucket, key, existing.find(client, bucket, key))
    if found is None:
        raise StorageError(f"s3://{bucket}/{key} changed during the upload (PreconditionFailed); retrying")
    existing.check_same(found, output, bucket, key)


async def _abort(client: S3Client, bucket: str, key: str, upload_id: str) -> bool:
    try:
        await asyncio.shield(client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id))
    except BaseException as exc:  # noqa: BLE001 - the original failure is what the caller reports
        log.warning("s3: could not abort the multipart upload of s3://%s/%s: %s", bucket, key, type(exc).__name__)
        return False
    return True


async def _call(operation: str, bucket: str, key: str, awaitable: Awaitable[T]) -> T:
    """Await one S3 call, turning its failure into a StorageError that names it."""
    try:
        return await awaitable
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes a StorageError naming the call
        raise storage_error(exc, operation=operation, bucket=bucket, key=key) from None


def _object_args(config: S3Settings, output: OutputFile) -> dict[str, Any]:
    args: dict[str, Any] = {"ContentType": output.content_type, "Metadata": {"sha256": output.sha256.lower()}}
    if config.storage_class:
        args["StorageClass"] = config.storage_class
    if config.sse:
        args["ServerSideEncryption"] = config.sse
    if config.sse_kms_key_id:
        args["SSEKMSKeyId"] = config.sse_kms_key_id
    return args


def _read_verified(output: OutputFile, buffer: bytearray) -> None:
    try:
        with output.path.open("rb") as handle:
            count = _fill(handle, memoryview(buffer))
            extra = len(handle.read(1))
    except OSError as exc:
        raise StorageError(f"cannot read output {output.path}: {exc.strerror}") from None
    _check_file(output, count + extra, hashlib.sha256(buffer).hexdigest())


def _fill(handle: io.BufferedIOBase, buffer: memoryview) -> int:
    """Read into ``buffer`` until it is full or the file ends; the number of bytes read."""
    filled = 0
    while filled < len(buffer):
        count = handle.readinto(buffer[filled:])
        if not count:
            break
        filled += count
    return filled


def _hash_part(chunk: memoryview, whole: _Hash) -> bytes:
    whole.update(chunk)
    return hashlib.sha256(chunk).digest()


def _check_file(output: OutputFile, size: int, sha256: str) -> None:
    if size != output.bytes or sha256 != output.sha256.lower():
        raise StorageError(
            f"output {output.path.name} of request {output.request_id} no longer matches its verified sha256 "
            f"({size} bytes read, {output.bytes} expected): refusing to upload it"
        )


def _body(data: bytearray | memoryview) -> IO[bytes]:
    # a PartBody is a binary file; typeshed's IO is a class that io's classes do not inherit from
    return cast("IO[bytes]", PartBody(data))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
