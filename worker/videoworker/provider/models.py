"""Typed provider data: what OpenRouter's video API answers, parsed once at the client.

:class:`VideoModel` is one entry of ``GET /videos/models``, :class:`Job` a submit or poll
answer, :class:`Download` a video saved to disk by the client. The provider's enums are
open and new fields appear without notice, so every model keeps unknown fields
(``extra="allow"``), statuses and capability values stay plain strings, and a ``None``
capability list means "unknown, not restricted", never "nothing supported".

Answers are untrusted (:mod:`videoworker.provider.untrusted`), and what a job reports
flows into events and the ledger, so a job's fields are bounded here, where they are
parsed: a cost that is not a finite, non-negative number is unknown (``None``), the
error text is scrubbed (:func:`~videoworker.provider.scrub.scrub`), and an oversized
``generation_id`` or ``usage`` extra is dropped rather than carried into every event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from videoworker.provider.scrub import scrub
from videoworker.provider.untrusted import finite_cost

#: Job statuses after which the provider never changes the job again.
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired"})
#: Longest ``generation_id`` kept; OpenRouter's are ~40 characters.
_ID_LIMIT = 256
#: Largest ``usage`` report (as JSON) kept whole; past it only ``cost`` and ``is_byok`` remain.
_USAGE_LIMIT = 4096


class UpscaleFactor(BaseModel):
    """The upscale factor range an upscaling model accepts; either bound may be unknown."""

    model_config = ConfigDict(extra="allow")

    min: float | None = None
    max: float | None = None


class VideoModel(BaseModel):
    """One video model and what it supports, as listed by ``GET /videos/models``.

    Read by the capability check before any money is spent. Every list may be ``None``
    (the provider did not say): treat that as "not restricted".
    """

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    canonical_slug: str | None = None
    name: str | None = None
    created: int | None = None
    description: str | None = None
    supported_resolutions: list[str] | None = None
    supported_aspect_ratios: list[str] | None = None
    supported_sizes: list[str] | None = None
    supported_durations: list[int] | None = None
    supported_frame_images: list[str] | None = None
    generate_audio: bool | None = None
    seed: bool | None = None
    allowed_passthrough_parameters: list[str] | None = None
    pricing_skus: dict[str, str] | None = None
    creativity: list[int | float] | None = None
    upscale_factor: UpscaleFactor | None = None
    hugging_face_id: str | None = None

    @field_validator("pricing_skus", mode="before")
    @classmethod
    def _prices_as_strings(cls, value: Any) -> Any:
        # The API sends prices as strings ("0.50"); keep one type even if a number slips in.
        if isinstance(value, dict):
            return {k: str(v) if isinstance(v, int | float) else v for k, v in value.items()}
        return value


class Usage(BaseModel):
    """What a finished job cost (USD) and whether it ran on the caller's own provider key."""

    model_config = ConfigDict(extra="allow")

    cost: float | None = None
    is_byok: bool | None = None

    @field_validator("cost", mode="before")
    @classmethod
    def _known_cost(cls, value: Any) -> float | None:
        # NaN made the final event unserialisable and a negative cost broke the cost counter.
        return finite_cost(value)

    @field_validator("is_byok", mode="before")
    @classmethod
    def _flag_or_unknown(cls, value: Any) -> bool | None:
        return value if isinstance(value, bool) else None

    @model_validator(mode="after")
    def _bounded_extras(self) -> Usage:
        extra = self.__pydantic_extra__
        if extra and len(json.dumps(extra, default=str)) > _USAGE_LIMIT:
            extra.clear()
        return self


class Job(BaseModel):
    """A generation job as the provider reports it after a submit or a poll.

    ``status`` is an open enum (pending, in_progress, completed, failed, cancelled,
    expired, or something new); a missing one reads as ``pending`` so that a submit
    answer carrying only an id still yields the id. ``urls`` are signed storage links:
    treat them as secrets and never log them.
    """

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    status: str = "pending"
    polling_url: str | None = None
    generation_id: str | None = None
    error: str | None = None
    unsigned_urls: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    expires_at: float | None = None
    usage: Usage | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the provider will not change the job again (completed, failed, cancelled, expired)."""
        return self.status in TERMINAL_STATUSES

    @field_validator("unsigned_urls", "urls", mode="before")
    @classmethod
    def _null_list_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("error", mode="before")
    @classmethod
    def _error_as_text(cls, value: Any) -> Any:
        # The SDK says str, but a structured error must not make the whole poll unreadable.
        if value is None:
            return None
        if isinstance(value, dict) and isinstance(value.get("message"), str):
            value = value["message"]
        elif not isinstance(value, str):
            value = json.dumps(value, default=str)
        return scrub(value) or None  # provider text goes into the failed event

    @field_validator("generation_id", mode="before")
    @classmethod
    def _short_id(cls, value: Any) -> Any:
        return value if not isinstance(value, str) or len(value) <= _ID_LIMIT else None

    @field_validator("usage", mode="before")
    @classmethod
    def _usage_object(cls, value: Any) -> Any:
        # A usage that is not an object is unknown, not a reason to lose the whole answer.
        return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class Download:
    """A video the client saved and fsynced at ``path``: its size in bytes, sha256 (hex) and media type."""

    path: Path
    bytes: int
    sha256: str
    content_type: str
