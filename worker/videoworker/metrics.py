"""Prometheus metrics: one registry per process, named per Prometheus conventions.

Labels stay low-cardinality (model, outcome, step): never a request id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("videoworker_requests_received_total", "Request deliveries taken off the queue", ["outcome"])
DUPLICATES = Counter("videoworker_duplicate_deliveries_total", "Deliveries of an id the ledger already had")
SUBMITS = Counter("videoworker_provider_submits_total", "POST /videos attempts", ["model", "outcome"])
SUBMIT_UNKNOWN = Counter(
    "videoworker_submit_unknown_total", "Submits whose outcome is unknown (maybe charged, not resubmitted)"
)
JOBS_FINISHED = Counter(
    "videoworker_jobs_finished_total", "Jobs that reached a final event", ["model", "status", "code"]
)
JOBS_INFLIGHT = Gauge("videoworker_jobs_inflight", "Jobs this instance holds")
POLLS = Counter("videoworker_polls_total", "GET /videos/{id} answers", ["outcome"])
JOB_DURATION = Histogram(
    "videoworker_job_duration_seconds",
    "Submit to provider completion",
    ["model"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600),
)
DOWNLOAD_BYTES = Counter("videoworker_download_bytes_total", "Video bytes downloaded")
DEAD_LETTERS = Counter("videoworker_dlq_published_total", "Requests dead-lettered by the daemon", ["code"])
EVENTS_PUBLISHED = Counter("videoworker_events_published_total", "Outbox messages confirmed by the broker")
PLUGIN_ERRORS = Counter("videoworker_plugin_errors_total", "Plugin hook calls that raised", ["plugin", "hook"])
STORAGE_RETRIES = Counter("videoworker_storage_retries_total", "Storage attempts that failed and were retried")
BROKER_CONNECTED = Gauge("videoworker_broker_connected", "1 while the broker connection is up")
COST = Counter("videoworker_cost_dollars_total", "Provider-reported cost of completed jobs", ["model"])
