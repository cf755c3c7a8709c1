"""FC's custom runtime ("web function"): the app behind a web server FC forwards requests to.

FC forwards each HTTP request to the server (port ``FC_CUSTOM_LISTEN_PORT``, default 9000) with
``x-fc-*`` headers describing the invocation (FC_FACTS section 5), and calls the lifecycle hooks
as ``POST /initialize``, ``GET /pre-freeze`` and ``GET /pre-stop``; event invocations arrive as
``POST /invoke``. :class:`WebFunction` is the ASGI app that server runs: it reads the request
the way FC's gateway does (the same limits), builds the context from FC's headers, and passes
the request through the bridge's one HTTP cycle, streaming the response. This module is
deployed: it imports nothing from ``fc_bridge.local``.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ._function import FunctionInfo, HeaderContext, context_from_headers, header_context
from ._limits import (
    FC_HEADER_PREFIX,
    Limits,
    Rejection,
    is_async_invocation,
    request_headers_size,
)
from ._scope import CREDENTIAL_HEADERS, NO_STATE, resolve
from ._scope import client as choose_client
from ._scope import scheme as choose_scheme

if TYPE_CHECKING:
    from ._bridge import Bridge
    from ._types import Headers, HTTPScope, Message, Receive, Scope, Send

    Getter = Callable[[Headers], Sequence[tuple[bytes, bytes]]]
    HeaderPlan = tuple[Getter | None, Getter | None, int, int, int, int, int]

logger = logging.getLogger("fc_bridge.web")

# FC's calls that are not requests, by path: (method, the bridge's hook); POST /invoke carries
# an event for on_event.
HOOKS = {
    "/initialize": ("POST", "initializer"),
    "/pre-stop": ("GET", "pre_stop"),
    "/pre-freeze": ("GET", "pre_freeze"),
    "/invoke": ("POST", None),
}
OWN_ERROR = (b"x-fc-status", b"404")  # FC reads it: the function failed, not the app's answer


class WebFunction:
    """The ASGI app a custom runtime's server runs: a bridge's app behind FC's rules."""

    def __init__(self, handler: Bridge, *, function: FunctionInfo | None = None) -> None:
        self.handler = handler
        self.app = handler.app
        self.options = handler.options
        self.limits = handler.options.limits
        self.function = function or FunctionInfo.from_env()
        self._http_handler = handler._http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._server_lifespan(receive, send)
            else:
                await self.app(scope, receive, send)  # WebSockets: FC 3.0 web functions pass them
            return
        special = HOOKS.get(scope["path"])
        if special is not None and scope["method"] == special[0]:
            if special[1] is not None:
                await self._hook(special[1], scope, send)
                return
            if self.options.on_event is not None:
                await self._invoke(scope, receive, send)
                return
        # A request for the app, served right here (not in a coroutine of its own: every
        # request comes this way). The scope needs nothing awaited: made before the body is
        # read (and dropped if the request is refused or the client goes away).
        app_scope, context, size, is_async, bodiless = self._app_scope(scope)
        rid = context.request_id
        target = len(app_scope["fc.request_uri"])  # latin-1: as many characters as bytes
        if bodiless:  # nothing to read: only FC's limits on the request line and headers
            rejection = self.limits.check_request(target, size, 0, is_async=is_async)
            body: bytes | Rejection | None = b"" if rejection is None else rejection
            receive = _body_unread(receive)
        else:
            body = await read_body(receive, self.limits, target, size, is_async)
        if body is None:  # the client went away first
            return
        if isinstance(body, Rejection):
            body.log(rid)
            await send_rejection(send, body, [OWN_ERROR])
            return
        await self._http_handler.streamed(app_scope, body, rid, context, receive, send)

    async def _server_lifespan(self, receive: Receive, send: Send) -> None:
        # The server's own start and stop. The app's startup waits for POST /initialize (or the
        # first request), as on FC; shutdown runs when the server stops unless GET /pre-stop
        # already ran it. (fc-bridge serve runs the server without this: see local.cli.)
        await server_lifespan(receive, send, self.shutdown)

    async def shutdown(self) -> None:
        """The app's lifespan shutdown, bounded as FC's pre_stop hook is."""
        await self.handler.run_hook("pre_stop")

    async def _hook(self, hook: str, scope: Scope, send: Send) -> None:
        context = context_from_headers(dict(scope["headers"]), self.function)
        failure = await self.handler.run_hook(hook, context)
        body = f"ASGI {failure}".encode() if failure is not None else b""
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        if failure is not None:
            headers.append(OWN_ERROR)
        status = 500 if failure is not None else 200
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An event invocation (``POST /invoke``): the body is the event, for ``on_event``."""
        headers = scope["headers"]
        raw = dict(headers)
        context = context_from_headers(raw, self.function)
        body = await read_body(
            receive, self.limits, 0, request_headers_size(headers), is_async_invocation(raw)
        )
        if not isinstance(body, bytes):
            if body is not None:
                body.log(context.request_id)
                await send_rejection(send, body, [OWN_ERROR])
            return
        handler = self.options.on_event
        assert handler is not None
        try:
            result: Any = handler(body, context)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, str):
                payload = result.encode()
            elif isinstance(result, (bytes, bytearray)):
                payload = bytes(result)
            else:
                payload = json.dumps(result).encode()
        except Exception as exc:
            logger.error("Exception in on_event [request_id=%s]", context.request_id, exc_info=exc)
            headers = [(b"content-type", b"text/plain; charset=utf-8"), OWN_ERROR]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": b"Internal Server Error"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload})

    def _app_scope(self, scope: Scope) -> tuple[HTTPScope, HeaderContext, int, bool, bool]:
        """The app's scope for a request, its context, its headers' size as FC's limit counts
        it, whether it is an asynchronous invocation, and whether it has no body."""
        sent: Headers = scope["headers"]
        keep, counted, size, rid_at, async_at, base_at, length_at = header_plan(sent)
        headers = sent if keep is None else list(keep(sent))
        if counted is not None:
            size += sum(map(len, map(_value, counted(sent))))
        context = header_context(sent[rid_at][1] if rid_at >= 0 else None, sent, self.function)
        options = self.options
        root_path = options.root_path or None  # "" too: none given
        if root_path is None and base_at >= 0:
            root_path = sent[base_at][1].decode("latin-1").rstrip("/") or None
        root, path, raw_path = resolve(scope.get("raw_path") or scope["path"].encode(), root_path)
        forwarded = options.forwarded
        scheme = scope.get("scheme", "http")
        client = scope.get("client")
        if forwarded or options.scheme != "auto":
            scheme = choose_scheme(headers, options.scheme, scheme, forwarded)
            client = choose_client(headers, client, forwarded)
        app_scope: HTTPScope = {
            **scope,  # type: ignore[typeddict-item]
            "root_path": root,
            "path": path,
            "raw_path": raw_path,
            "headers": headers,
            "scheme": scheme,
            "client": client,
            "state": NO_STATE,
            "fc.context": context,
            "fc.request_uri": target_of(scope),
        }
        # What the server offers, the app's own copy; none when it offers none (as uvicorn
        # does), which also keeps the scope small enough for the keys frameworks add.
        extensions = scope.get("extensions")
        if extensions is not None:
            app_scope["extensions"] = dict(extensions)
        is_async = async_at >= 0 and sent[async_at][1].lower() == b"async"
        # HTTP/1 frames a request's body with one of these headers: without them (or with a
        # length of 0) there is none, and nothing to wait for (HTTP/2 needs neither).
        bodiless = (
            length_at == UNFRAMED or (length_at >= 0 and sent[length_at][1] == b"0")
        ) and scope.get("http_version") in HTTP_1
        return app_scope, context, size, is_async, bodiless


async def server_lifespan(
    receive: Receive, send: Send, stop: Callable[[], Awaitable[None]]
) -> None:
    """A server's lifespan for a web function: started at once (the app's own startup waits
    for FC), and ``stop`` run when the server stops."""
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await stop()
    await send({"type": "lifespan.shutdown.complete"})


def header_plan(headers: Headers) -> HeaderPlan:
    """What a web function does with a request's headers, by their names in order (FC's dozen
    ``x-fc-*`` headers and the client's: the same few sets every time, so a plan is made once
    and then applied in C): the getter of the headers the app sees (None: all of them; FC's
    credentials headers are left out, so an app that logs its headers leaks no secret), the
    getter of the headers FC's limit counts (:func:`request_headers_size`) and their names'
    length, and where the request id, the invocation type and the base path are (-1: absent;
    the last one when a name comes twice, as in a dict of the headers), then where the
    Content-Length is (UNFRAMED: no body's framing at all; CHUNKED: a Transfer-Encoding).
    """
    names = tuple(map(_name, headers))
    plan = _header_plans.get(names)
    if plan is None:
        plan = _header_plan(names)
        if len(_header_plans) < MAX_HEADER_PLANS:
            _header_plans[names] = plan
    return plan


_header_plans: dict[tuple[bytes, ...], HeaderPlan] = {}
UNFRAMED, CHUNKED = -1, -2  # a plan's Content-Length index when there is none
MAX_HEADER_PLANS = 64
_name = itemgetter(0)
_value = itemgetter(1)


def _header_plan(names: tuple[bytes, ...]) -> HeaderPlan:
    keep = [i for i, name in enumerate(names) if name not in CREDENTIAL_HEADERS]
    counted = [i for i, name in enumerate(names) if name[:5] != FC_HEADER_PREFIX]
    where = {name: i for i, name in enumerate(names)}  # the last of a repeated name
    # A body's framing is found whatever the case: a server that does not lowercase header
    # names (ASGI asks it to) must not have a body go unread.
    framing = {name.lower(): i for i, name in enumerate(names)}
    length_at = framing.get(b"content-length", UNFRAMED)
    return (
        None if len(keep) == len(names) else _getter(keep),
        _getter(counted) if counted else None,
        sum(len(names[i]) for i in counted),
        where.get(b"x-fc-request-id", -1),
        where.get(b"x-fc-invocation-type", -1),
        where.get(b"x-fc-base-path", -1),
        CHUNKED if b"transfer-encoding" in framing else length_at,
    )


def _getter(indices: list[int]) -> Callable[[Headers], Sequence[tuple[bytes, bytes]]]:
    """The items at ``indices`` of a list, in C."""
    if len(indices) > 1:
        return itemgetter(*indices)
    # itemgetter of one index gives the item, not a tuple of it; of none, it refuses
    return itemgetter(slice(indices[0], indices[0] + 1) if indices else slice(0, 0))


HTTP_1 = ("1.1", "1.0")


def _body_unread(receive: Receive) -> Receive:
    """The server's ``receive`` for a request whose empty body was never asked for: the
    ``http.request`` the server still holds is skipped (nothing else can follow a request
    without a body but the disconnect), so an app reading on after the body waits for
    ``http.disconnect`` as it would have."""

    async def after_the_body() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            message = await receive()
        return message

    return after_the_body


async def read_body(
    receive: Receive, limits: Limits, target: int, headers: int, is_async: bool
) -> bytes | Rejection | None:
    """The whole request body, FC's 400 as soon as the request is over a limit, or None if
    the client went away first (FC's gateway then never invokes the function).

    ``target`` and ``headers`` are the sizes FC's limits count; ``is_async``: the request is an
    asynchronous invocation. Reading stops at the limit, so an oversized upload is never held
    in memory.
    """
    limit = limits.async_request_body if is_async else limits.request_body
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")  # the whole body at once: the common case
        rejection = limits.check_request(target, headers, len(body), is_async=is_async)
        return rejection if rejection is not None else body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] != "http.request":  # http.disconnect
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            break
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    rejection = limits.check_request(target, headers, size, is_async=is_async)
    return rejection if rejection is not None else b"".join(chunks)


async def send_rejection(send: Send, rejection: Rejection, extra: Headers | None = None) -> None:
    """FC's own answer (a 4xx or 5xx in FC's error shape) in place of the app's."""
    body = rejection.body()
    headers = [*rejection.headers(), (b"content-length", b"%d" % len(body)), *(extra or [])]
    await send({"type": "http.response.start", "status": rejection.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def target_of(scope: Scope) -> str:
    """The request target as the client sent it: raw path, then ``?`` and the query."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (raw + (b"?" + query if query else b"")).decode("latin-1")
