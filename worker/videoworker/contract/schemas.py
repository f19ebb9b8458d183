"""JSON Schemas of both wire messages, for producers in other languages (``videoworker schema``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from videoworker.contract.request import VideoRequest


class ErrorInfo(BaseModel):
    code: str
    message: str
    retryable: bool


class Output(BaseModel):
    index: int
    location: str
    locations: dict[str, str]
    content_type: str
    bytes: int
    sha256: str


class ResultEvent(BaseModel):
    """Published to the events exchange (``video.<status>``) and, when final, to ``reply_to``."""

    model_config = ConfigDict(title="ResultEvent")

    id: str
    status: Literal["submitted", "in_progress", "completed", "failed"]
    job_id: str | None
    generation_id: str | None
    model: str | None
    outputs: list[Output]
    usage: dict[str, Any] | None
    error: ErrorInfo | None
    metadata: dict[str, Any]
    timestamps: dict[str, str]


def schemas() -> dict[str, dict[str, Any]]:
    return {"request": VideoRequest.model_json_schema(), "event": ResultEvent.model_json_schema()}
