"""What is already at a key, so a repeat skips the upload and a different object is never overwritten."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from videoworker import OutputFile, StorageError
from videoworker_s3.errors import code_of

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


@dataclass(frozen=True)
class Existing:
    """An object found at the key: its size, and its SHA-256 in hex when it can be known without reading it."""

    bytes: int
    sha256: str | None


async def find(client: S3Client, bucket: str, key: str) -> Existing | None:
    """The object at ``key``, or None; other failures propagate as botocore errors.

    A one-byte ranged GET rather than a HEAD: a HEAD answer has no body, so a missing
    bucket, a bad key id and a denied request would all look alike ("404"/"403"); a GET
    error carries S3's code. It needs s3:GetObject, and s3:ListBucket for a missing key
    to read as NoSuchKey rather than AccessDenied.
    """
    try:
        found = await client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")
    except ClientError as exc:
        code = code_of(exc)
        if code in ("NoSuchKey", "404"):
            return None
        if code == "InvalidRange":
            return Existing(0, None)  # an empty object: a range of it does not exist
        raise
    async with found["Body"] as body:
        await body.read()
    size = _total(found.get("ContentRange", ""), found.get("ContentLength", 0))
    sha256 = found.get("Metadata", {}).get("sha256")
    if sha256 is None:
        sha256 = await _full_object_checksum(client, bucket, key)
    return Existing(size, sha256.lower() if sha256 else None)


def check_same(existing: Existing, output: OutputFile, bucket: str, key: str) -> None:
    """Return if the object at the key is this output's bytes; else refuse to overwrite it."""
    if existing.sha256 == output.sha256.lower() and existing.bytes == output.bytes:
        return
    theirs = f"sha256 {existing.sha256[:16]}…" if existing.sha256 else "no recorded sha256"
    raise StorageError(
        f"a different object is already at s3://{bucket}/{key} ({existing.bytes} bytes, {theirs}; this output is "
        f"{output.bytes} bytes, sha256 {output.sha256[:16]}…): refusing to overwrite it; remove it or change "
        "the prefix, key_template or the request's delivery.s3 options"
    )


async def _full_object_checksum(client: S3Client, bucket: str, key: str) -> str | None:
    # an object another tool wrote: its S3 checksum says what it is if it covers the whole object
    head = await client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    value = head.get("ChecksumSHA256")
    if not value or "-" in value or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None  # absent, or composite (a checksum of part checksums)
    return base64.b64decode(value).hex()


def _total(content_range: str, fallback: int) -> int:
    # "bytes 0-0/12345"
    _, _, total = content_range.rpartition("/")
    return int(total) if total.isdigit() else fallback
