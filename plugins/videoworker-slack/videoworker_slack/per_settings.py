"""A small map from a daemon's ``Settings`` object to what this plugin keeps for that daemon.

Several daemons may run in one process (tests do this), each with its own ``Settings``,
and the plugin module is shared by all of them, so per-daemon state is keyed by the
settings object itself rather than kept in module globals.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from videoworker import Settings

T = TypeVar("T")


class PerSettings(Generic[T]):
    """Values kept per ``Settings`` object (by identity), forgotten when that object is collected.

    ``Settings`` is a pydantic model without ``__hash__``, so it cannot key a
    ``WeakKeyDictionary``; this keys by ``id()`` and uses a weak reference to tell a live
    object from a later one that reuses its id.
    """

    def __init__(self) -> None:
        self._items: dict[int, tuple[weakref.ref[Settings], T]] = {}

    def get(self, settings: Settings) -> T | None:
        """The value kept for ``settings``, or None."""
        item = self._items.get(id(settings))
        return item[1] if item is not None and item[0]() is settings else None

    def setdefault(self, settings: Settings, make: Callable[[], T]) -> T:
        """The value kept for ``settings``, made and kept first if there is none (not kept if ``make`` raises)."""
        found = self.get(settings)
        if found is None:
            found = make()
            key = id(settings)

            def forget(ref: weakref.ref[Settings]) -> None:
                if self._items.get(key, (None,))[0] is ref:
                    del self._items[key]

            self._items[key] = (weakref.ref(settings, forget), found)
        return found
