"""ASGI and Function Compute types shared by every part of the bridge.

The scope and message shapes follow the ASGI 3 specification (HTTP spec version 2.4, lifespan
2.0). Applications are typed the way Starlette and FastAPI type themselves
(``MutableMapping[str, Any]`` scopes and messages), so any of their apps type-checks as an
:data:`ASGIApp`; the bridge builds its scopes with the precise TypedDicts below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal, Protocol, TypedDict

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Headers = list[tuple[bytes, bytes]]
LifespanMode = Literal["auto", "on", "off"]

StartResponse = Callable[..., object]
WSGIEnviron = dict[str, Any]


class ASGIVersions(TypedDict):
    version: Literal["3.0"]
    spec_version: str


# Functional form: the FC keys ("fc.context", ...) are not identifiers.
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
        "client": "tuple[str, int] | None",
        "server": "tuple[str, int | None] | None",
        "state": dict[str, Any],
        "extensions": dict[str, dict[object, object]],
        "fc.context": Any,
        "fc.request_uri": str,
    },
    total=False,
)

LifespanScope = TypedDict(
    "LifespanScope",
    {
        "type": Literal["lifespan"],
        "asgi": ASGIVersions,
        "state": dict[str, Any],
        "fc.context": Any,
    },
)


class FCContext(Protocol):
    """The ``context`` FC hands to handlers and hooks.

    FC 2.0's has ``request_id``, ``credentials`` (``access_key_id``, ``access_key_secret``,
    ``security_token``: live secrets, never log them), ``function``, ``service``, ``region``,
    ``account_id``, ``retry_count``; FC 3.0's has no ``credentials`` and no ``service``. So
    the bridge reads every field with ``getattr`` and a default, ``request_id`` included.
    """

    @property
    def request_id(self) -> str: ...


class WSGIInput(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...
