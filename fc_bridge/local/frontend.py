"""The local front end: an ASGI app, served by uvicorn, that plays FC's part for a bridge.

Each HTTP request is checked and buffered the way FC's gateway does it (the same ``Limits``
code), turned into exactly what FC would hand the function (a WSGI environ in ``fc2`` mode, an
FC 3.0 event in ``fc3`` mode), passed to the bridge in one of ``concurrency`` worker threads
(FC's instance concurrency), and its answer sent back as FC would send it. So the code path
exercised locally is the deployed one.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from .._function import Credentials, FunctionInfo, make_context
from .._limits import Rejection, bad_request, is_async_invocation, request_headers_size
from .._options import check_path_prefix
from .._web import WebFunction, read_body, send_rejection, server_lifespan, target_of
from .emulator import (
    Invocation,
    RuntimeResponse,
    call_event,
    call_wsgi,
    http_event,
    wsgi_environ,
)

if TYPE_CHECKING:
    from .._bridge import Bridge
    from .._types import Headers, Message, Receive, Scope, Send

MODES = ("fc2", "fc3", "web")
# x-fc-* request headers a client may send to FC; FC refuses the others, which it sets itself.
CLIENT_FC_HEADERS = frozenset(
    {b"x-fc-invocation-type", b"x-fc-log-type", b"x-fc-stateful-async-invocation-id"}
)


def check_concurrency(concurrency: object) -> int:
    if type(concurrency) is not int or not 1 <= concurrency <= 100:
        raise ConfigError(f"concurrency must be an int from 1 to 100, got {concurrency!r}.")
    return concurrency


def refused_fc_header(headers: Headers, hint: str = "") -> Rejection | None:
    """FC's 400 for a client that sends one of FC's own ``x-fc-*`` request headers."""
    for name, _ in headers:
        if name.startswith(b"x-fc-") and name not in CLIENT_FC_HEADERS:
            return bad_request(
                f"The request header {name.decode('latin-1')!r} is FC's own; "
                f"clients may not send it{hint}."
            )
    return None


# A deployed web function gets FC's x-fc-* headers from FC's gateway: say how to serve it so.
BEHIND_FC_HINT = " (if FC's own gateway is in front, serve with fc-bridge serve --behind-fc)"


async def send_accepted(send: Send, rid: tuple[bytes, bytes]) -> None:
    """FC's answer to an asynchronous invocation, at once: 202 and the request id."""
    headers = [rid, (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


# fc_bridge.testing's clients set a request's context through this header; only front ends
# made for them (``per_request=True``) read it, and it never reaches the app.
CONTEXT_HEADER = b"x-fc-bridge-testing-context"
CONTEXT_FIELDS = frozenset({"request_id", *(f.name for f in fields(FunctionInfo))})


def per_request(
    headers: Headers, function: FunctionInfo
) -> tuple[Headers, FunctionInfo, str | None]:
    """The request's headers without ``CONTEXT_HEADER``, and the function and request id it
    asks for (the defaults where it says nothing)."""
    asked: dict[str, Any] = {}
    kept: Headers = []
    for name, value in headers:
        if name == CONTEXT_HEADER:
            asked.update(json.loads(value))
        else:
            kept.append((name, value))
    request_id = asked.pop("request_id", None)
    return kept, replace(function, **asked) if asked else function, request_id


def _outside(path: str, prefix: str) -> Rejection | None:
    if prefix and not (path == prefix or path.startswith(prefix + "/")):
        message = f"The path {path!r} is not under the function's URL {prefix}/."
        return Rejection(404, "PathNotFound", message)
    return None


class EmulatedFC:
    """Serves a bridge the way FC calls it: ``mode`` is ``"fc2"`` or ``"fc3"``."""

    def __init__(
        self,
        bridge: Bridge,
        mode: str = "fc2",
        *,
        concurrency: int = 1,
        prefix: str | None = None,
        function: FunctionInfo | None = None,
        per_request: bool = False,
    ) -> None:
        self.bridge = bridge
        self.limits = bridge.limits
        self.mode = mode
        self.per_request = per_request  # the context may be set per request (fc_bridge.testing)
        self.concurrency = check_concurrency(concurrency)
        self.prefix = check_path_prefix(prefix, "prefix") or ""
        self.function = function or FunctionInfo.from_env()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"fc-{mode}")
        self._background: set[asyncio.Future[Any]] = set()

    def context(self, request_id: str | None = None, function: FunctionInfo | None = None) -> Any:
        generation = 3 if self.mode == "fc3" else 2
        return make_context(function or self.function, generation, request_id=request_id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:  # FC's built-in runtimes take no WebSocket connections
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Server start and stop: FC's initializer and pre_stop hooks, in a worker thread."""
        loop = asyncio.get_running_loop()
        await receive()
        try:
            await loop.run_in_executor(self._pool, self.bridge.initializer, self.context())
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        try:
            if self._background:
                await asyncio.wait(self._background)
            await loop.run_in_executor(self._pool, self.bridge.pre_stop, self.context())
        except Exception as exc:
            await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
            return
        finally:
            self._pool.shutdown(wait=False)
        await send({"type": "lifespan.shutdown.complete"})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: Headers = list(scope["headers"])
        target = target_of(scope)
        path = target.partition("?")[0]
        function, request_id = self.function, None
        if self.per_request:
            headers, function, request_id = per_request(headers, function)
        context = self.context(request_id, function)
        rid = (b"x-fc-request-id", context.request_id.encode())
        rejection = _outside(path, self.prefix) or refused_fc_header(headers)
        if rejection is not None:
            rejection.log(context.request_id)
            await send_rejection(send, rejection, [rid])
            return
        is_async = is_async_invocation(dict(headers))
        body = await read_body(
            receive, self.limits, len(target.encode()), request_headers_size(headers), is_async
        )
        if body is None:
            return
        if isinstance(body, Rejection):
            body.log(context.request_id)
            await send_rejection(send, body, [rid])
            return
        invocation = Invocation(
            scope["method"],
            target,
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
            body,
            (scope.get("client") or ("127.0.0.1", 0))[0],
        )
        call = partial(self.invoke, invocation, context)
        loop = asyncio.get_running_loop()
        if is_async:
            # FC answers an asynchronous invocation at once and runs the function after.
            future = loop.run_in_executor(self._pool, call)
            self._background.add(future)
            future.add_done_callback(self._background.discard)
            await send_accepted(send, rid)
            return
        response = await loop.run_in_executor(self._pool, call)
        await self._send(send, response, rid)

    def invoke(self, invocation: Invocation, context: Any) -> RuntimeResponse:
        """One invocation as FC makes it, in this thread; what FC would send back."""
        if self.mode == "fc2":
            return call_wsgi(self.bridge, wsgi_environ(invocation, context))
        event = http_event(invocation, request_id=context.request_id, account_id=context.account_id)
        return call_event(self.bridge, event, context)

    @staticmethod
    async def _send(send: Send, response: RuntimeResponse, rid: tuple[bytes, bytes]) -> None:
        headers = [
            (name.lower().encode("latin-1"), value.encode("utf-8"))
            for name, values in response.headers.items()
            if name.lower() not in ("content-length", "x-fc-request-id")
            for value in values
        ]
        headers += [rid, (b"content-length", b"%d" % len(response.body))]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


class LocalWeb:
    """A web function served the way FC's gateway serves it: FC's ``x-fc-*`` request headers
    added, clients' refused, asynchronous invocations answered 202 at once and run after."""

    def __init__(
        self,
        handler: Bridge,
        *,
        prefix: str | None = None,
        function: FunctionInfo | None = None,
        per_request: bool = False,
    ) -> None:
        self.bridge = handler
        self.function = function or FunctionInfo.from_env()
        self.per_request = per_request  # the context may be set per request (fc_bridge.testing)
        self.web = WebFunction(handler, function=self.function)
        self.prefix = check_path_prefix(prefix, "prefix") or ""
        self.limits = handler.limits
        self._background: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self.web(scope, receive, send)
            return
        headers: Headers = list(scope["headers"])
        function, asked_id = self.function, None
        if self.per_request:
            headers, function, asked_id = per_request(headers, function)
        request_id = asked_id or str(uuid.uuid4())
        rid = (b"x-fc-request-id", request_id.encode())
        path = target_of(scope).partition("?")[0]
        rejection = _outside(path, self.prefix) or refused_fc_header(headers, BEHIND_FC_HINT)
        if rejection is not None:
            rejection.log(request_id)
            await send_rejection(send, rejection, [rid])
            return
        fc_scope = {
            **scope,
            "headers": headers + fc_headers(function, request_id, self.prefix),
        }
        if not is_async_invocation(dict(headers)):
            await self.web(fc_scope, receive, _with_header(send, rid))
            return
        body = await read_body(
            receive,
            self.limits,
            len(target_of(scope).encode()),
            request_headers_size(headers),
            True,  # an asynchronous invocation: the others went to the web function above
        )
        if not isinstance(body, bytes):
            if body is not None:
                body.log(request_id)
                await send_rejection(send, body, [rid])
            return
        # FC answers an asynchronous invocation at once and runs the function after.
        task = asyncio.get_running_loop().create_task(self._later(fc_scope, body))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await send_accepted(send, rid)

    async def _later(self, scope: Scope, body: bytes) -> None:
        """Run an asynchronous invocation: FC's invoker is the client, and waits for the end."""
        sent = False
        complete = asyncio.Event()

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await complete.wait()
            return {"type": "http.disconnect"}

        async def discard(message: Message) -> None:
            if message["type"] != "http.response.start" and not message.get("more_body"):
                complete.set()

        await self.web(scope, receive, discard)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # The app's startup waits for POST /initialize or the first request, as on FC; this
        # only makes sure its shutdown runs when the server stops.
        await server_lifespan(receive, send, self.stop)

    async def stop(self) -> None:
        """The server is stopping: let asynchronous invocations finish, then shut down."""
        if self._background:
            await asyncio.wait(self._background)
        await self.web.shutdown()


def fc_headers(info: FunctionInfo, request_id: str, prefix: str) -> Headers:
    """The ``x-fc-*`` headers FC adds to a web function's request (FC_FACTS section 5)."""
    headers = [
        (b"x-fc-request-id", request_id.encode()),
        (b"x-fc-function-name", info.name.encode()),
        (b"x-fc-function-handler", info.handler.encode()),
        (b"x-fc-function-memory", str(info.memory).encode()),
        (b"x-fc-function-timeout", str(info.timeout).encode()),
        (b"x-fc-region", info.region.encode()),
        (b"x-fc-account-id", info.account_id.encode()),
        (b"x-fc-service-name", info.service.encode()),
        (b"x-fc-qualifier", info.qualifier.encode()),
    ]
    if prefix:
        headers.append((b"x-fc-base-path", prefix.encode()))
    credentials = Credentials.from_env()
    if credentials is not None:
        headers += [
            (b"x-fc-access-key-id", credentials.access_key_id.encode()),
            (b"x-fc-access-key-secret", credentials.access_key_secret.encode()),
            (b"x-fc-security-token", credentials.security_token.encode()),
        ]
    return headers


def _with_header(send: Send, header: tuple[bytes, bytes]) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return sender


async def asgi_request(
    app: Any, method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through an ASGI app in this process, without a server (fc-bridge invoke)."""
    path, _, query = target.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 9000),
        "state": {},
    }
    received = False
    status = 0
    out_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal received
        if received:
            await done.wait()
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status, out_headers = message["status"], list(message.get("headers", []))
        else:  # http.response.body: no other extension is offered
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    return status, out_headers, b"".join(chunks)
