"""Every exception videoworker raises on purpose, classified by what the caller does next.

::

    WorkerError
    ├── ConfigError            a setting is wrong; refuse to start
    ├── PluginError            a plugin misbehaved at load time
    ├── InvalidRequest         a request message is bad; answer it, dead-letter it, never submit
    ├── ProviderError          OpenRouter answered with an error, or did not answer
    │   ├── RetryableError     nothing was created; try again after ``retry_after``
    │   ├── PermanentError     retrying cannot help; fail the job
    │   └── AmbiguousSubmit    a submit may or may not have been accepted (and charged)
    ├── DownloadError          a video download was cut, too big, or not an MP4
    ├── StorageError           a storage plugin could not keep an output
    ├── NotifyError            a notifier could not deliver; retried later unless it says not to
    ├── OverBudget             a reservation would pass the day's spending limit; the job is not submitted
    └── Unroutable             the broker returned a publish: no queue is bound to its routing key

Messages never carry the API key or an ``Authorization`` header: only status codes,
paths and the provider's own error text.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base class of every error videoworker raises on purpose."""


class ConfigError(WorkerError):
    """Raised at start when a setting is missing or wrong; the message names it."""


class PluginError(WorkerError):
    """Raised when a plugin cannot be loaded or registers something invalid."""


class InvalidRequest(WorkerError):
    """Raised when a request message cannot be accepted.

    ``code`` is the stable error code of the failed event (``invalid_request`` or
    ``model_unsupported``); ``field`` names the offending field when there is one.
    """

    def __init__(self, message: str, *, code: str = "invalid_request", field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


class ProviderError(WorkerError):
    """Raised when an OpenRouter call fails.

    ``status`` is the HTTP status (``None`` when no answer came), ``retry_after`` the
    provider's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        endpoint: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.endpoint = endpoint


class RetryableError(ProviderError):
    """Raised when the call certainly had no effect and may be repeated (429, 503, connect errors, GET failures)."""


class PermanentError(ProviderError):
    """Raised when repeating the call cannot help (400, 401, 402, 403, 404, 413, 422)."""


class AmbiguousSubmit(ProviderError):
    """Raised when a submit was sent but its outcome is unknown (timeout or reset after send, 500, 502, 504).

    The provider may have accepted and charged it; the job must not be resubmitted blindly.
    """


class DownloadError(WorkerError):
    """Raised when a download is truncated, too large, or not an MP4. ``retryable`` says whether to try again."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class StorageError(WorkerError):
    """Raised by or for a storage plugin that could not keep an output; the host retries with backoff."""


class NotifyError(WorkerError):
    """Raised by a notifier plugin when a delivery failed.

    ``retryable`` False (a receiver that is gone, a target that can never work) marks the
    delivery dead at once; otherwise it is retried with backoff, no sooner than
    ``retry_after`` seconds. Any other exception from a notifier counts as retryable.
    """

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class OverBudget(WorkerError):
    """Raised by the ledger when reserving ``amount`` would take ``day``'s spend past ``limit`` (nothing written)."""

    def __init__(self, day: str, amount: float, committed: float, limit: float):
        super().__init__(
            f"the estimate ${amount:.4f} would take {day}'s spend (${committed:.4f} spent or reserved) "
            f"past the daily limit of ${limit:.2f}"
        )
        self.day = day
        self.amount = amount
        self.committed = committed
        self.limit = limit


class Unroutable(WorkerError):
    """Raised when the broker returned a publish: no queue is bound to its routing key (e.g. a gone ``reply_to``)."""
