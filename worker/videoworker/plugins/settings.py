"""A plugin's own settings and delivery options, validated by the models it declares.

A plugin declares a pydantic model for its ``[plugins.<name>]`` section (hook
``videoworker_settings_model``) and may declare one for the ``delivery.<name>`` object of
a request (hook ``videoworker_delivery_model``). The host validates the section at start
and each request's options at intake, with messages that name the key; fields typed
``SecretStr`` are redacted by ``videoworker config``. Plugins read their parsed section
with :func:`plugin_settings`.
"""

from __future__ import annotations

import typing
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError

from videoworker.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    from videoworker.config import Settings

M = TypeVar("M", bound=BaseModel)

# parsed sections per settings object (by id: settings are not hashable), dropped with the settings
_PARSED: dict[int, dict[tuple[str, type[BaseModel]], BaseModel]] = {}


def plugin_settings(settings: Settings, name: str, model: type[M]) -> M:
    """The ``[plugins.<name>]`` section parsed by ``model``; a :class:`~videoworker.ConfigError` names a wrong key.

    Cheap to call in every hook: each settings object is validated once per plugin.
    """
    parsed = _PARSED.get(id(settings))
    if parsed is None:
        parsed = _PARSED[id(settings)] = {}
        weakref.finalize(settings, _PARSED.pop, id(settings), None)
    found = parsed.get((name, model))
    if found is None:
        found = parsed[(name, model)] = _validate(model, settings.plugins.get(name, {}), f"[plugins.{name}]")
    assert isinstance(found, model)
    return found


def delivery_options(request_delivery: dict[str, Any] | None, name: str, model: type[M]) -> M:
    """A request's ``delivery.<name>`` object parsed by ``model``; an :class:`~videoworker.InvalidRequest` names it."""
    raw = (request_delivery or {}).get(name, {})
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        where, message = _first_error(exc, f"delivery.{name}")
        raise InvalidRequest(f"{where}: {message}", field=where) from None


def secret_fields(model: type[BaseModel]) -> set[str]:
    """Names of the fields that hold secrets: typed ``SecretStr`` (optional too) in ``model`` or any model nested in it.

    A nested model's field (``endpoints: list[Endpoint]`` whose ``Endpoint.secret`` is a
    ``SecretStr``) counts, so ``videoworker config`` and the logs hide it wherever it sits.
    """
    found: set[str] = set()
    seen: set[type[BaseModel]] = set()

    def walk(current: type[BaseModel]) -> None:
        seen.add(current)
        for name, info in current.model_fields.items():
            for kind in _kinds(info.annotation):
                if kind is SecretStr:
                    found.add(name)
                elif isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in seen:
                    walk(kind)

    walk(model)
    return found


def _kinds(annotation: Any) -> list[Any]:
    """``annotation`` and every type inside it (``X | None``, ``tuple[X, ...]``, ``dict[str, X]``, ``Annotated``)."""
    kinds = [annotation]
    for arg in typing.get_args(annotation):
        kinds += _kinds(arg)
    return kinds


def _validate(model: type[M], raw: Any, where: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        key, message = _first_error(exc, where)
        raise ConfigError(f"{key}: {message}") from None


def _first_error(exc: ValidationError, where: str) -> tuple[str, str]:
    # the input may be a secret: name the key and the rule, never echo the value
    first = exc.errors()[0]
    path = ".".join(str(part) for part in first["loc"])
    joiner = " " if where.startswith("[") else "."
    return (f"{where}{joiner}{path}" if path else where), first["msg"]
