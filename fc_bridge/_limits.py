"""Function Compute's request and response limits, and the errors FC answers with.

One implementation serves every path (the FC 2.0 WSGI handler, the FC 3.0 event handler and the
local front end), so a request rejected locally is rejected the same way on FC, at the same byte.
It works on ASGI-shaped values only (header byte pairs, lengths), never on WSGI or event objects.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._types import Headers

logger = logging.getLogger("fc_bridge.limits")

KiB = 1024
MiB = 1024 * KiB


class Rejection:
    """An answer FC itself would give instead of the function's: status, error code, reason."""

    __slots__ = ("code", "message", "status")

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"Rejection({self.status}, {self.code!r}, {self.message!r})"

    def body(self) -> bytes:
        return json.dumps({"ErrorCode": self.code, "ErrorMessage": self.message}).encode()

    def log(self, request_id: str) -> None:
        """Log this answer: an error for a 5xx (the function's doing), info for a 4xx."""
        level = logging.ERROR if self.status >= 500 else logging.INFO
        logger.log(level, "Answering %d [request_id=%s]: %s", self.status, request_id, self.message)

    def headers(self) -> Headers:
        return [(b"content-type", b"application/json"), (b"x-fc-error-type", b"FcCommonError")]


FIELDS = (
    "request_headers",
    "request_target",
    "request_body",
    "async_request_body",
    "response_headers",
    "response_body",
)


class Limits:
    """FC's size limits, in bytes; ``None`` switches a check off. Immutable.

    Header sizes are the sum of every name's and value's length. The request target is the path
    as sent (percent-encoded, FC's URL prefix included) plus ``?`` and the query string.
    FC documents no response body limit, so that check is off unless you set one.
    """

    __slots__ = FIELDS

    request_headers: int | None
    request_target: int | None
    request_body: int | None
    async_request_body: int | None
    response_headers: int | None
    response_body: int | None

    def __init__(
        self,
        *,
        request_headers: int | None = 8 * KiB,
        request_target: int | None = 4 * KiB,
        request_body: int | None = 32 * MiB,
        async_request_body: int | None = 128 * KiB,
        response_headers: int | None = 8 * KiB,
        response_body: int | None = None,
    ) -> None:
        values = (
            request_headers,
            request_target,
            request_body,
            async_request_body,
            response_headers,
            response_body,
        )
        for name, value in zip(FIELDS, values, strict=True):
            if value is not None and (type(value) is not int or value < 0):
                from ._errors import ConfigError  # imported when raised (see _options)

                raise ConfigError(
                    f"Limits.{name} must be a non-negative int or None, got {value!r}."
                )
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Limits are immutable: make a new one to change {name!r}.")

    def __repr__(self) -> str:
        return "Limits(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in FIELDS) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Limits):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in FIELDS))

    def check_request(
        self, target: int, headers: int, body: int, *, is_async: bool
    ) -> Rejection | None:
        """The 400 FC answers for a request over a limit, or None if the request is within them.

        Each argument is a length: ``headers`` is the size of the request's headers as
        :func:`request_headers_size` counts it.
        """
        if self.request_target is not None and target > self.request_target:
            return _too_large("request path and query", target, self.request_target, 400)
        if self.request_headers is not None and headers > self.request_headers:
            return _too_large("request headers", headers, self.request_headers, 400)
        limit = self.async_request_body if is_async else self.request_body
        if limit is not None and body > limit:
            kind = "asynchronous request body" if is_async else "request body"
            return _too_large(kind, body, limit, 400)
        return None

    def check_response_headers(self, size: int) -> Rejection | None:
        """The 502 FC answers when response headers of ``size`` bytes (every name's and value's
        length added up) are over the limit, or None."""
        if self.response_headers is not None and size > self.response_headers:
            return _too_large("response headers", size, self.response_headers, 502)
        return None

    def check_response_body(self, size: int) -> Rejection | None:
        """The 502 FC answers when a response body of ``size`` bytes is over the limit, or None."""
        if self.response_body is not None and size > self.response_body:
            return _too_large("response body", size, self.response_body, 502)
        return None

    def describe(self) -> str:
        """One line naming every limit in force, for startup banners."""
        return ", ".join(
            f"{name}={'off' if value is None else _human(value)}"
            for name, value in ((n, getattr(self, n)) for n in FIELDS)
        )


def is_async_invocation(headers: Mapping[bytes, bytes]) -> bool:
    """Whether the request is an asynchronous invocation (``X-Fc-Invocation-Type: Async``),
    which FC answers at once and holds to a smaller body limit. ``headers`` by name (the web
    function has them as a dict already: no pass over the list per request)."""
    return headers.get(b"x-fc-invocation-type", b"").lower() == b"async"


# Headers FC adds itself (x-fc-*, which clients may not send) do not count toward its limit.
FC_HEADER_PREFIX = b"x-fc-"


def request_headers_size(headers: Headers) -> int:
    """The size of request headers as FC's limit counts it: every name's and value's length
    (lower-case names, as a scope carries them), except FC's own (``FC_HEADER_PREFIX``).
    Paths that build their header list count as they go, by the same rule."""
    size = 0
    for name, value in headers:
        if name[:5] != FC_HEADER_PREFIX:
            size += len(name) + len(value)
    return size


def _too_large(what: str, size: int, limit: int, status: int) -> Rejection:
    code = "InvalidArgument" if status == 400 else "BadResponse"
    return Rejection(
        status, code, f"The size of the {what} is {size} bytes, over FC's limit of {limit} bytes."
    )


def _human(size: int) -> str:
    if size >= MiB and size % MiB == 0:
        return f"{size // MiB} MiB"
    if size >= KiB and size % KiB == 0:
        return f"{size // KiB} KiB"
    return f"{size} B"


def bad_request(message: str) -> Rejection:
    """The 400 for a request the bridge cannot make sense of (bad length, bad event)."""
    return Rejection(400, "InvalidArgument", message)


def bad_response(message: str) -> Rejection:
    """The 502 for a response FC could not pass on (a bad header or status)."""
    return Rejection(502, "BadResponse", message)


def timed_out(seconds: float) -> Rejection:
    """The 504 for a request the app did not answer before the function's timeout."""
    return Rejection(
        504,
        "FunctionTimeout",
        f"The app did not answer within {seconds:g}s, the bridge's timeout for the request.",
    )
