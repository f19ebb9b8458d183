"""videoworker: a daemon that turns RabbitMQ requests into OpenRouter videos.

This module is the plugin author's API, and the only module a plugin needs to import:
the ``hookimpl`` marker, every object a hook receives or returns, and the errors a
plugin may raise. The hooks themselves are specified in :mod:`videoworker.hookspecs`.

    from videoworker import hookimpl, InvalidRequest, VideoRequest

    @hookimpl
    async def videoworker_validate_request(request: VideoRequest) -> None:
        if "forbidden" in (request.prompt or ""):
            raise InvalidRequest("the prompt asks for something we do not make", field="prompt")

Everything else in the package is internal and may change between releases.
"""

from __future__ import annotations

import pluggy

from videoworker.config import Settings
from videoworker.contract.request import VideoRequest
from videoworker.errors import ConfigError, InvalidRequest, NotifyError, PluginError, StorageError, WorkerError
from videoworker.plugins.settings import delivery_options, plugin_settings
from videoworker.plugins.threads import run_in_thread
from videoworker.plugins.types import (
    CostEstimate,
    JobEvent,
    Notification,
    NotifyTarget,
    OutputFile,
    StoredOutput,
)
from videoworker.provider.catalogue import Catalogue
from videoworker.provider.models import VideoModel

__version__ = "0.1.0"

#: Marks a function (or method) as the implementation of the hook of the same name.
hookimpl = pluggy.HookimplMarker("videoworker")

__all__ = [
    "Catalogue",
    "ConfigError",
    "CostEstimate",
    "InvalidRequest",
    "JobEvent",
    "Notification",
    "NotifyError",
    "NotifyTarget",
    "OutputFile",
    "PluginError",
    "Settings",
    "StorageError",
    "StoredOutput",
    "VideoModel",
    "VideoRequest",
    "WorkerError",
    "__version__",
    "delivery_options",
    "hookimpl",
    "plugin_settings",
    "run_in_thread",
]
