"""The ``[plugins.s3]`` section and the ``delivery.s3`` options a request may give, as pydantic models.

The host validates both with these models (the section at start, the options at intake),
so every rule that can be checked without S3 lives here, and an error names the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from videoworker import ConfigError, Settings, plugin_settings
from videoworker_s3.keys import as_folder, check_path, check_template

NAME = "s3"
MiB = 1024 * 1024
GiB = 1024 * MiB
#: S3's smallest part (all but the last) and largest single PUT.
MIN_PART = 5 * MiB
MAX_PUT = 5 * GiB
#: SigV4 presigned URLs live at most seven days.
MAX_PRESIGN = 7 * 24 * 3600

_CREDENTIALS_HINT = (
    "credentials are never read from the settings file: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(and AWS_SESSION_TOKEN) in the environment, choose a profile with AWS_PROFILE, or use an instance role"
)


#: A key containing one of these is a credential, and credentials never belong in the file.
_SECRET_WORDS = ("secret", "access_key", "token", "password", "credential", "profile")
_KMS = ("aws:kms", "aws:kms:dsse")
_ENDPOINT = re.compile(r"^https?://[^/@\s]+(/\S*)?$")


def _plain(check: Callable[..., str], value: str, **options: bool) -> str:
    # a rule's own words, without pydantic's "Value error, " in front
    try:
        return check(value, **options)
    except ValueError as exc:
        raise PydanticCustomError("key_rule", str(exc)) from None


def _refuse(key: str, kind: str, message: str) -> None:
    # a ValidationError raised here keeps `key` as the error's location; the input is never echoed
    detail = InitErrorDetails(type=PydanticCustomError(kind, message), loc=(key,), input=None)
    raise ValidationError.from_exception_data(S3Settings.__name__, [detail])


class S3Settings(BaseModel):
    """The ``[plugins.s3]`` section. Without a ``bucket`` the plugin is inactive and stores nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str | None = Field(None, min_length=3, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    prefix: str = ""
    key_template: str = "{prefix}{id}/{index}.mp4"
    endpoint_url: str | None = None
    region: str | None = Field(None, pattern=r"^[a-z0-9-]{1,64}$")
    addressing_style: Literal["path", "virtual"] | None = None
    storage_class: str | None = Field(None, pattern=r"^[A-Z_]{1,64}$")
    sse: Literal["AES256", "aws:kms", "aws:kms:dsse"] | None = None
    sse_kms_key_id: str | None = Field(None, min_length=1, max_length=2048)
    presign_seconds: int = Field(0, ge=0, le=MAX_PRESIGN)
    multipart_threshold: int = Field(64 * MiB, ge=MIN_PART, le=MAX_PUT)
    part_size: int = Field(16 * MiB, ge=MIN_PART, le=MAX_PUT)
    conditional_writes: bool = True
    #: Uploads in flight at once in this daemon, across all jobs. Each holds one part in memory,
    #: or the whole file below ``multipart_threshold``: this bounds the plugin's memory, not the
    #: daemon's download concurrency (``max_concurrent_downloads``).
    max_concurrent_uploads: int = Field(8, ge=1, le=1024)

    @property
    def active(self) -> bool:
        return self.bucket is not None

    @property
    def folder(self) -> str:
        """The configured prefix with one trailing ``/``: every key this daemon writes starts with it."""
        return as_folder(self.prefix)

    @model_validator(mode="before")
    @classmethod
    def _section_rules(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key in data:
            if isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS):
                _refuse(key, "credentials", _CREDENTIALS_HINT)
        if data.get("bucket") is None and any(value is not None for value in data.values()):
            keys = ", ".join(sorted(str(key) for key, value in data.items() if value is not None))
            _refuse("bucket", "missing", f"required when the section sets anything else ({keys})")
        if data.get("sse_kms_key_id") is not None and data.get("sse") not in _KMS:
            _refuse("sse_kms_key_id", "kms", "needs sse = 'aws:kms' (or 'aws:kms:dsse')")
        return data

    @field_validator("bucket", mode="before")
    @classmethod
    def _not_a_url(cls, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("s3://"):
            raise PydanticCustomError("bucket", "is a bucket name, not an s3:// URI (put the path in `prefix`)")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not _ENDPOINT.match(value):
            # the value may hold a password (user:password@host): it is never repeated
            raise PydanticCustomError("endpoint", "must be http(s)://host[:port][/path], without user:password@")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _plain(check_path, value, folder=True) if value else value

    @field_validator("key_template")
    @classmethod
    def _template(cls, value: str) -> str:
        return _plain(check_template, value)


class S3Delivery(BaseModel):
    """The ``delivery.s3`` options of one request: where inside the configured prefix its videos go.

    ``key`` names the object (below the configured prefix; later outputs get ``-<index>``
    before the extension); ``prefix`` keeps the key template but adds a folder below the
    configured prefix. Neither can leave the configured prefix, and the bucket is never
    the request's to choose.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = Field(None, min_length=1)
    prefix: str | None = Field(None, min_length=1)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else _plain(check_path, value, folder=False)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("key") is not None:
            raise PydanticCustomError("conflict", "give `key` or `prefix`, not both")
        return None if value is None else _plain(check_path, value, folder=True)


def load_settings(settings: Settings) -> S3Settings:
    """This plugin's section, parsed; a :class:`~videoworker.ConfigError` names ``[plugins.s3] <key>``."""
    try:
        return plugin_settings(settings, NAME, S3Settings)
    except TypeError:
        # videoworker 0.1.0's plugin_settings caches per Settings object in a WeakKeyDictionary, and
        # Settings is unhashable; validate here with the same message shape until the core is fixed
        return _validate(settings.plugins.get(NAME, {}))


def _validate(raw: Any) -> S3Settings:
    try:
        return S3Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        where = f"[plugins.{NAME}] {key}" if key else f"[plugins.{NAME}]"
        raise ConfigError(f"{where}: {first['msg']}") from None
