"""ASGI and Function Compute types shared by every part of the bridge.

The scope and message shapes follow the ASGI 3 specification (HTTP spec version 2.4, lifespan
2.0). Applications are typed the way Starlette and FastAPI type themselves
(``MutableMapping[str, Any]`` scopes and messages), so any of their apps type-checks as an
:data:`ASGIApp`; the bridge builds its scopes with the precise TypedDicts below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Literal, Protocol, TypedDict, Union

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Headers = list[tuple[bytes, bytes]]
TextHeaders = list[tuple[str, str]]
LifespanMode = Literal["auto", "on", "off"]
LifespanPhase = Literal[
    "idle", "starting", "running", "unsupported", "failed", "stopping", "stopped"
]
# A time bound in seconds, "auto" (from the function's timeout) or None (unbounded).
Timeout = float | Literal["auto"] | None

StartResponse = Callable[..., object]
WSGIEnviron = dict[str, Any]
EventHandler = Callable[[Any, Any], Any]
"""``on_event``: ``(event, context) -> result``, a plain or a coroutine function."""


class ASGIVersions(TypedDict):
    version: Literal["3.0"]
    spec_version: str


# Functional form: the FC keys ("fc.context", ...) are not identifiers. Every key is required:
# each front end builds the whole scope, "state" included.
HTTPScope = TypedDict(
    "HTTPScope",
    {
        "type": Literal["http"],
        "asgi": ASGIVersions,
        "http_version": str,
        "method": str,
        "scheme": str,
        "path": str,
        "raw_path": bytes,
        "query_string": bytes,
        "root_path": str,
        "headers": Headers,
        "client": Union["tuple[str, int]", None],
        "server": Union["tuple[str, int | None]", None],
        "state": dict[str, Any],
        "extensions": dict[str, dict[object, object]],
        "fc.context": "Context | None",
        "fc.request_uri": str,
    },
)

LifespanScope = TypedDict(
    "LifespanScope",
    {
        "type": Literal["lifespan"],
        "asgi": ASGIVersions,
        "state": dict[str, Any],
        "fc.context": "Context | None",
    },
)


class FCContext(Protocol):
    """The ``context`` FC hands to handlers and hooks, as the bridge reads it.

    FC 2.0's has ``request_id``, ``credentials`` (``access_key_id``, ``access_key_secret``,
    ``security_token``: live secrets, never log them), ``function`` (``name``, ``handler``,
    ``memory``, ``timeout``), ``service``, ``region``, ``account_id``, ``retry_count``; FC 3.0's
    has no ``credentials`` and no ``service``. Any field may be missing, and some are strings
    where numbers are expected (``function.timeout``), so the bridge reads every one through
    :mod:`fc_bridge._context`, never directly; a ``dict`` with the same keys is read the same way.
    """

    @property
    def request_id(self) -> str: ...


ContextLike = FCContext | Mapping[str, Any]
"""What FC may hand over as the context: an object with attributes, or a dict of the same keys."""


class Context(Protocol):
    """The context an app finds in ``scope["fc.context"]``: FC's own, wrapped so that its
    repr never shows the credentials (:class:`fc_bridge._dictcontext.AppContext`)."""

    def __getattr__(self, name: str) -> Any: ...


class WSGIInput(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...
