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
NOTIFICATIONS = Counter(
    "videoworker_notifications_total", "Notification delivery attempts by how they ended", ["plugin", "outcome"]
)
NOTIFICATIONS_PENDING = Gauge(
    "videoworker_notifications_pending", "Notifications owed and not yet delivered", ["plugin"]
)
NOTIFY_LATENCY = Histogram(
    "videoworker_notification_latency_seconds",
    "From the status change to the notification's delivery",
    ["plugin"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 21600, 86400),
)
SPEND = Counter(
    "videoworker_spend_usd_total", "Spend settled against the budget (reported cost, else estimate)", ["model"]
)
BUDGET_RESERVED = Gauge("videoworker_budget_reserved_usd", "Today's (UTC) reservations of jobs not yet settled")
BUDGET_REMAINING = Gauge("videoworker_budget_remaining_usd", "Today's (UTC) daily limit minus spend and reservations")
BUDGET_UNKNOWN_PRICE = Counter(
    "videoworker_budget_unknown_price_total", "Requests submitted whose price could not be estimated", ["model"]
)
