"""ASGI and Function Compute types shared by every part of the bridge.

The scope and message shapes follow the ASGI 3 specification (HTTP spec version 2.4, lifespan
2.0). Applications are typed the way Starlette and FastAPI type themselves
(``MutableMapping[str, Any]`` scopes and messages), so any of their apps type-checks as an
:data:`ASGIApp`; the bridge builds its scopes with the precise TypedDicts below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import TracebackType
from typing import Any, Literal, Protocol, TypedDict

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Headers = list[tuple[bytes, bytes]]
LifespanMode = Literal["auto", "on", "off"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
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


class HTTPRequestEvent(TypedDict):
    type: Literal["http.request"]
    body: bytes
    more_body: bool


class HTTPDisconnectEvent(TypedDict):
    type: Literal["http.disconnect"]


class LifespanReceiveEvent(TypedDict):
    type: Literal["lifespan.startup", "lifespan.shutdown"]


class FCCredentials(Protocol):
    """Temporary credentials of the function's role (FC 2.0 only). Live secrets: never log them."""

    access_key_id: str
    access_key_secret: str
    security_token: str


class FCContext(Protocol):
    """The ``context`` FC hands to handlers and hooks.

    FC 2.0 and FC 3.0 contexts carry different fields (3.0 has no ``credentials`` and no
    ``service``), so the bridge reads every field with ``getattr`` and a default; the only one
    it relies on is ``request_id``, and even that may be missing from hand-made contexts.
    """

    @property
    def request_id(self) -> str: ...


class WSGIInput(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


BodyChunks = Iterable[bytes]
