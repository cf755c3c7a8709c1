"""FC's ``context`` object: reading the one FC passes, and showing it to the app safely.

FC 2.0 passes an object with attributes, FC 3.0 another shape, tests and tools often a dict:
the bridge reads every field through :func:`field`, which takes either and never raises.
Credentials are live secrets. They come only from where FC itself puts them (the context, the
``ALIBABA_CLOUD_*`` environment variables, or a web function's ``x-fc-*`` request headers), are
never invented, and never appear in a repr, a log line or an error page: a dict context reaches
the app wrapped in ``_dictcontext.AppContext`` (imported for the first dict context: FC passes
objects), whose repr hides them. Contexts made where FC sends none (a web function's headers,
local tooling) are in ``_function``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def field(context: object, *path: str) -> Any:
    """``context.a.b`` for ``field(context, "a", "b")``, through attributes or dict keys;
    None where any step is missing."""
    value = context
    for name in path:
        if value is None:
            return None
        if isinstance(value, Mapping):
            value = value.get(name)
        else:
            value = getattr(value, name, None)
    return value


def request_id(context: object, fallback: object = None) -> str:
    """FC's request id for log lines: the context's, else ``fallback`` (a header), else ``"-"``."""
    value = getattr(context, "request_id", None)  # FC's own context: the common case first
    if type(value) is str and value:
        return value
    if value is None and context is not None and isinstance(context, Mapping):
        value = context.get("request_id")
    value = value or fallback
    return value if isinstance(value, str) and value else "-"


def function_timeout(context: object) -> float | None:
    """The function's timeout in seconds from the context (FC may give it as a string)."""
    value = field(context, "function", "timeout")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if type(value) in (int, float) and 0 < value < float("inf"):
        return float(value)
    return None


class RedactedContext:
    """An attribute context whose own repr would show its fields (a dataclass, say): the same
    attributes, and a repr that shows none of them."""

    __slots__ = ("_target",)
    _target: Any

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if value is None or isinstance(value, (str, int, float, bytes)):
            return value
        return for_app(value)

    def __repr__(self) -> str:
        return f"<{type(self._target).__name__} (fields hidden: they may hold credentials)>"

    __str__ = __repr__


# Context classes whose repr shows no field (FC's own: object's repr), by type; see for_app.
PLAIN_REPRS: dict[type, bool] = {}


def for_app(context: Any) -> Any:
    """The context to put in ``scope["fc.context"]``: FC's object as is (its repr is
    ``object``'s, which shows no field), anything whose repr may show fields wrapped."""
    if context is None:
        return None
    if isinstance(context, dict):
        from ._dictcontext import AppContext  # tests and tools pass dicts, FC never does

        return AppContext(context)
    cls = type(context)
    plain = PLAIN_REPRS.get(cls)
    if plain is None:
        plain = cls.__repr__ is object.__repr__ or getattr(cls, "_redacted_repr", False)  # type: ignore[comparison-overlap]
        if len(PLAIN_REPRS) < 64:
            PLAIN_REPRS[cls] = plain
    if plain:
        return context
    proxy = _new(RedactedContext)  # no __init__ call: this runs per request
    proxy._target = context
    return proxy


_new = object.__new__
