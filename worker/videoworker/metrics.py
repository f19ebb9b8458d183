"""Prometheus metrics: one registry per process, named per Prometheus conventions.

Labels stay low-cardinality (model, outcome, step): never a request id. Two labels take
values from outside (a producer's ``model``, the provider's job status), so the metrics
that carry them bound the values themselves, in ``labels()``, and no caller can forget
to: a ``model`` goes through :func:`model_label`, a poll ``outcome`` through
:func:`poll_outcome_label`. Unbounded label values would grow the process's memory and
every scrape without limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ClassVar, Self

from prometheus_client import Counter, Gauge, Histogram

#: The label a value becomes when it may not have one of its own.
OTHER = "other"
#: Longest model label kept, in characters.
MODEL_LABEL_CHARS = 64
#: Distinct model labels while no models list is known; later names become :data:`OTHER`.
MAX_UNLISTED_MODELS = 50
#: Distinct model labels at all, even with a models list (a hostile list may be long).
MAX_MODEL_LABELS = 500
#: Poll outcomes that keep their own label: the provider's documented statuses, and retry.
POLL_OUTCOMES = frozenset({"retry", "pending", "queued", "in_progress", "completed", "failed", "cancelled", "expired"})


class ModelLabels:
    """Maps model names to a bounded set of label values.

    With a models list (:meth:`known`), a name it does not list becomes ``other``;
    without one, the first :data:`MAX_UNLISTED_MODELS` distinct names are kept and the
    rest become ``other``. Labels are cut to :data:`MODEL_LABEL_CHARS`.
    """

    def __init__(self, max_unlisted: int = MAX_UNLISTED_MODELS, max_labels: int = MAX_MODEL_LABELS) -> None:
        self._max_unlisted = max_unlisted
        self._max_labels = max_labels
        self._listed: frozenset[str] | None = None
        self._seen: set[str] = set()

    def known(self, names: Iterable[str]) -> None:
        """The provider's models list changed (or arrived): only names in it get labels of their own."""
        self._listed = frozenset(names)

    def label(self, name: str) -> str:
        """The label value for ``name``; the same name always gets the same value until the list changes."""
        if self._listed is not None and name not in self._listed:
            return OTHER
        label = name[:MODEL_LABEL_CHARS]
        if label in self._seen:
            return label
        if len(self._seen) >= (self._max_unlisted if self._listed is None else self._max_labels):
            return OTHER
        self._seen.add(label)
        return label


_MODEL_LABELS = ModelLabels()


def model_label(name: str) -> str:
    """The ``model`` label value for a model name (see :class:`ModelLabels`)."""
    return _MODEL_LABELS.label(name)


def known_models(names: Iterable[str]) -> None:
    """Called with each models list fetched from the provider, so unlisted names stop getting labels."""
    _MODEL_LABELS.known(names)


def poll_outcome_label(status: str) -> str:
    """The provider's job status as a poll ``outcome`` label: a documented status, else ``other``."""
    return status if status in POLL_OUTCOMES else OTHER


_Guards = Mapping[str, Callable[[str], str]]


def _guard(
    guards: _Guards, names: Sequence[str], values: tuple[object, ...], named: dict[str, object]
) -> tuple[tuple[object, ...], dict[str, object]]:
    """The label values with each guarded label passed through its guard."""
    if named:
        return values, {k: guards[k](str(v)) if k in guards else v for k, v in named.items()}
    if len(values) != len(names):
        return values, named  # prometheus_client names the mistake
    return tuple(guards[n](str(v)) if n in guards else v for n, v in zip(names, values, strict=True)), named


class _GuardedCounter(Counter):
    """A counter whose ``model`` label is bounded by :func:`model_label`."""

    guards: ClassVar[_Guards] = {"model": model_label}

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Self:
        values, named = _guard(self.guards, self._labelnames, labelvalues, labelkwargs)
        return super().labels(*values, **named)


class _PollCounter(_GuardedCounter):
    """A counter whose ``outcome`` label is the provider's status, bounded by :func:`poll_outcome_label`."""

    guards: ClassVar[_Guards] = {"outcome": poll_outcome_label}


class _GuardedHistogram(Histogram):
    """A histogram whose ``model`` label is bounded by :func:`model_label`."""

    guards: ClassVar[_Guards] = {"model": model_label}

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Self:
        values, named = _guard(self.guards, self._labelnames, labelvalues, labelkwargs)
        return super().labels(*values, **named)


REQUESTS = Counter("videoworker_requests_received_total", "Request deliveries taken off the queue", ["outcome"])
DUPLICATES = Counter("videoworker_duplicate_deliveries_total", "Deliveries of an id the ledger already had")
SUBMITS = _GuardedCounter("videoworker_provider_submits_total", "POST /videos attempts", ["model", "outcome"])
SUBMIT_UNKNOWN = Counter(
    "videoworker_submit_unknown_total", "Submits whose outcome is unknown (maybe charged, not resubmitted)"
)
JOBS_FINISHED = _GuardedCounter(
    "videoworker_jobs_finished_total", "Jobs that reached a final event", ["model", "status", "code"]
)
JOBS_INFLIGHT = Gauge("videoworker_jobs_inflight", "Jobs this instance holds")
STEPS_WAITING = Gauge("videoworker_steps_waiting", "Jobs due for a step, waiting for one of its workers", ["step"])
POLLS = _PollCounter("videoworker_polls_total", "GET /videos/{id} answers", ["outcome"])
JOB_DURATION = _GuardedHistogram(
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
COST = _GuardedCounter("videoworker_cost_dollars_total", "Provider-reported cost of completed jobs", ["model"])
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
SPEND = _GuardedCounter(
    "videoworker_spend_usd_total", "Spend settled against the budget (reported cost, else estimate)", ["model"]
)
BUDGET_RESERVED = Gauge("videoworker_budget_reserved_usd", "Today's (UTC) reservations of jobs not yet settled")
BUDGET_REMAINING = Gauge("videoworker_budget_remaining_usd", "Today's (UTC) daily limit minus spend and reservations")
BUDGET_UNKNOWN_PRICE = _GuardedCounter(
    "videoworker_budget_unknown_price_total", "Requests submitted whose price could not be estimated", ["model"]
)
LEDGER_STATEMENTS = Counter(
    "videoworker_ledger_statements_total", "Statements sent to a PostgreSQL ledger, by first word", ["kind"]
)
LEDGER_PRUNED = Counter("videoworker_ledger_pruned_total", "Ledger rows removed or trimmed by retention", ["kind"])
REPLIES_REFUSED = Counter(
    "videoworker_replies_refused_total", "Requests whose reply_to was not used, by reason", ["reason"]
)
CALLBACKS = Counter(
    "videoworker_callbacks_total",
    "OpenRouter callbacks received, by outcome"
    " (accepted, repeat, bad_signature, malformed, too_large, too_slow, incomplete, unknown)",
    ["outcome"],
)
HINTS = Counter(
    "videoworker_callback_hints_total",
    "Callback hints acted on, by what they led to (poll, routed, stale, reconciled, ignored)",
    ["outcome"],
)
SUBMITS_RECONCILED = Counter(
    "videoworker_submits_reconciled_total",
    "Submits whose outcome was unknown until their callback named the provider's job",
)
