"""The deliver step (``completed``) and the finish step (``stored``, as earlier versions left it).

Deliver downloads every output into the job's temp folder (checked and hashed by the
client), then runs the storage plugins one output at a time, then moves the job to
``done``: the outputs and the final event are recorded in one transaction. Downloads that
succeeded are kept in memory across storage retries, so a flaky store does not fetch the
video again. Storage must be idempotent: after a crash the whole step runs again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import structlog

from videoworker import metrics
from videoworker.core.context import StepContext
from videoworker.core.crashpoints import crashpoint
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Again, Move, Outcome, fail
from videoworker.core.states import JobState
from videoworker.errors import DownloadError, PermanentError, RetryableError, StorageError
from videoworker.plugins.types import OutputFile

log = structlog.get_logger("videoworker.steps")


async def deliver(job: Job, ctx: StepContext) -> Outcome:
    """``completed``: download and store every output, then record ``done`` with their locations and the event."""
    try:
        files = job.downloads or await _download_all(job, ctx)
    except (RetryableError, DownloadError) as exc:
        return _download_failed(job, ctx, exc)
    except PermanentError as exc:
        return fail("download_failed", f"download refused ({exc.status}): {exc.message}")
    job.downloads = files
    crashpoint("after_download")
    try:
        outputs = [await _store(job, ctx, f) for f in files]
    except Exception as exc:  # noqa: BLE001 - any storage plugin failure is retried for a while
        return _storage_failed(job, ctx, exc)
    crashpoint("after_store")
    return Move(JobState.DONE, data={**job.record.data, "outputs": outputs})


async def finish(job: Job, ctx: StepContext) -> Outcome:
    """``stored`` (written by earlier versions): every output is kept; record the final completed event."""
    return Move(JobState.DONE)


async def _download_all(job: Job, ctx: StepContext) -> list[OutputFile]:
    assert job.record.job_id is not None
    files = []
    for index in range(int(job.record.data.get("output_count", 1))):
        part = ctx.workdir.part(job.id, index)
        got = await ctx.provider.download(job.record.job_id, index, part, max_bytes=ctx.settings.max_download_bytes)
        metrics.DOWNLOAD_BYTES.inc(got.bytes)
        files.append(OutputFile(job.id, index, Path(got.path), got.bytes, got.sha256, got.content_type or "video/mp4"))
    return files


async def _store(job: Job, ctx: StepContext, output: OutputFile) -> dict[str, Any]:
    stored = await ctx.hooks.store_output(job.request, output)
    if not stored:
        raise StorageError("no storage plugin kept the output")
    return {
        "index": output.index,
        "location": stored[0].location,
        "locations": {s.backend: s.location for s in stored},
        "content_type": output.content_type,
        "bytes": output.bytes,
        "sha256": output.sha256,
        "url": next((s.url for s in stored if s.url), None),
    }


def _download_failed(job: Job, ctx: StepContext, exc: RetryableError | DownloadError) -> Outcome:
    job.download_attempts += 1
    retryable = exc.retryable if isinstance(exc, DownloadError) else True
    message = f"download failed: {exc}"
    if not retryable or job.download_attempts >= ctx.settings.download_max_attempts:
        return fail("download_failed", message, retryable=retryable)
    wait = exc.retry_after if isinstance(exc, RetryableError) else None
    delay = max(wait or 0.0, ctx.retry_in(job.download_attempts, cap=30))
    log.warning("download failed; retrying", reason=message, attempt=job.download_attempts, retry_in=round(delay, 2))
    return Again(delay)


def _storage_failed(job: Job, ctx: StepContext, exc: Exception) -> Outcome:
    metrics.STORAGE_RETRIES.inc()
    now = time.monotonic()
    since = job.storage_failing_since = job.storage_failing_since or now
    job.storage_attempts += 1
    log.warning("storage failed; retrying", error=f"{type(exc).__name__}: {exc}", attempt=job.storage_attempts)
    if now - since > ctx.settings.storage_retry_seconds:
        return fail("storage_failed", f"storage failed for {now - since:.0f}s: {exc}", retryable=True)
    return Again(ctx.retry_in(job.storage_attempts, cap=30))
