"""videoworker: a daemon that turns RabbitMQ requests into OpenRouter videos.

This module is the plugin author's API: the ``hookimpl`` marker, the objects hooks
receive and return, and the errors a plugin may raise. See ``worker/hookspecs.py``.
"""

from __future__ import annotations

import pluggy

from videoworker.errors import ConfigError, InvalidRequest, StorageError, WorkerError
from videoworker.plugins.types import JobEvent, OutputFile, StoredOutput

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("videoworker")

__all__ = [
    "ConfigError",
    "InvalidRequest",
    "JobEvent",
    "OutputFile",
    "StorageError",
    "StoredOutput",
    "WorkerError",
    "__version__",
    "hookimpl",
]
