"""Turning S3 and botocore failures into StorageErrors an operator can act on, and never a secret.

A message names the bucket, the key, the operation and S3's error code. It never carries
an access key id, a signature, the string S3 signed or any header: those live in the
error response's body, which is read here only for its ``Code``. botocore's own texts
name the endpoint: a URL in them keeps its scheme, host and path, and loses any
``user:password@`` and every query value (:func:`without_url_secrets`).
"""

from __future__ import annotations

import asyncio
import re

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from videoworker import StorageError

#: Codes that mean the credentials themselves are wrong, not their permissions.
BAD_CREDENTIALS = {
    "InvalidAccessKeyId": "the access key id is not known to this endpoint",
    "SignatureDoesNotMatch": "the secret access key does not belong to the access key id (or the clock is off)",
    "InvalidToken": "the session token is malformed or not valid",
    "ExpiredToken": "the session token has expired",
}
#: Codes whose message S3 writes for people and which carry nothing secret.
_PLAIN = frozenset({"EntityTooLarge", "EntityTooSmall", "InvalidPart", "InvalidRequest", "KMS.NotFoundException"})
#: Codes with which S3 refuses bytes that do not match the checksum sent with them.
BAD_DIGEST = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@`'\"]*@")
_URL_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#`'\"<>]*)\?[^\s#`'\"<>]*")


def without_url_secrets(text: str) -> str:
    """``text`` with each URL's user part and query replaced by ``***`` (an endpoint may carry a token there)."""
    if "://" not in text:
        return text
    return _URL_QUERY.sub(r"\1?***", _URL_USERINFO.sub(r"\1***@", text))


def code_of(exc: ClientError) -> str:
    """S3's error code; a HEAD answer has no body, so its code is the HTTP status ("404", "403")."""
    return str(exc.response.get("Error", {}).get("Code", "")) or str(status_of(exc))


def status_of(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def storage_error(exc: BaseException, *, operation: str, bucket: str, key: str) -> StorageError:
    """A StorageError that says what failed where and why, without anything secret."""
    where = f"s3://{bucket}/{key}"
    if isinstance(exc, ClientError):
        return StorageError(_client_error(exc, operation, bucket, where))
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(
            f"S3 {operation} on {where} failed: the AWS credentials are missing or incomplete ({type(exc).__name__}); "
            "set them in the environment, with AWS_PROFILE, or through an instance role"
        )
    if isinstance(exc, BotoCoreError):
        # botocore's own messages name endpoints (whose URL may carry a token), files and parameters
        return StorageError(f"S3 {operation} on {where} failed: {type(exc).__name__}: {without_url_secrets(str(exc))}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return StorageError(f"S3 {operation} on {where} timed out")
    return StorageError(f"S3 {operation} on {where} failed: {type(exc).__name__}: {without_url_secrets(str(exc))}")


def _client_error(exc: ClientError, operation: str, bucket: str, where: str) -> str:
    code = code_of(exc)
    status = status_of(exc)
    if code == "NoSuchBucket":
        return f"S3 bucket {bucket!r} does not exist (NoSuchBucket, {operation} on {where})"
    if code in BAD_CREDENTIALS:
        return (
            f"S3 refused the credentials for bucket {bucket!r} ({code}, {operation} on {where}): "
            f"{BAD_CREDENTIALS[code]}; fix the AWS credentials in the environment, profile or instance role"
        )
    if code in ("AccessDenied", "AllAccessDisabled") or (code == "403" and status == 403):
        return (
            f"S3 denied access to bucket {bucket!r} ({code}, {operation} on {where}): the credentials lack a "
            "permission (s3:GetObject, s3:PutObject, s3:ListBucket, s3:AbortMultipartUpload, s3:DeleteObject, "
            "or kms:GenerateDataKey for SSE-KMS), or a bucket policy refuses them"
        )
    if code in BAD_DIGEST:
        return (
            f"S3 refused the bytes of {where} ({code}, {operation}): they do not match the SHA-256 sent with them, "
            "so the file changed or was corrupted on the way; nothing was stored"
        )
    detail = f": {str(exc.response.get('Error', {}).get('Message', ''))[:200]}" if code in _PLAIN else ""
    return f"S3 {operation} on {where} failed with {code} (HTTP {status}){detail}"
