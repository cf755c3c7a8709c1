"""The local front end: an ASGI app, served by uvicorn, that plays FC's part for a bridge.

Each HTTP request is checked and buffered the way FC's gateway does it (the same ``Limits``
code), turned into exactly what FC would hand the function (a WSGI environ in ``fc2`` mode, an
FC 3.0 event in ``fc3`` mode), passed to the bridge in one of ``concurrency`` worker threads
(FC's instance concurrency), and its answer sent back as FC would send it. So the code path
exercised locally is the deployed one.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from ._emulator import (
    Invocation,
    RuntimeResponse,
    call_event,
    call_wsgi,
    http_event,
    wsgi_environ,
)
from ._errors import ConfigError
from ._limits import Limits, Rejection, is_async_invocation
from ._local_context import FunctionInfo, make_context

if TYPE_CHECKING:
    from ._bridge import Bridge
    from ._types import Headers, Message, Receive, Scope, Send

MODES = ("fc2", "fc3", "web")


async def read_body(
    receive: Receive, headers: Headers, limits: Limits, target: int
) -> bytes | Rejection | None:
    """The whole request body, FC's 400 as soon as the request is over a limit, or None if
    the client went away first (FC's gateway then never invokes the function).

    Reading stops at the limit, so an oversized upload is never held in memory.
    """
    is_async = is_async_invocation(headers)
    limit = limits.async_request_body if is_async else limits.request_body
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            break
        chunks.append(chunk)
        more = message.get("more_body", False)
    rejection = limits.check_request(target, headers, size, is_async=is_async)
    return rejection if rejection is not None else b"".join(chunks)


async def send_rejection(send: Send, rejection: Rejection, extra: Headers | None = None) -> None:
    body = rejection.body()
    headers = [*rejection.headers(), (b"content-length", b"%d" % len(body)), *(extra or [])]
    await send({"type": "http.response.start", "status": rejection.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def target_of(scope: Scope) -> str:
    """The request target as the client sent it: raw path, then ``?`` and the query."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


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
    ) -> None:
        if type(concurrency) is not int or not 1 <= concurrency <= 100:
            raise ConfigError(f"concurrency must be an int from 1 to 100, got {concurrency!r}.")
        if prefix is not None and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ConfigError(f'prefix {prefix!r} must start with "/" and not end with one.')
        self.bridge = bridge
        self.mode = mode
        self.concurrency = concurrency
        self.prefix = prefix or ""
        self.function = function or FunctionInfo.from_env()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"fc-{mode}")
        self._background: set[asyncio.Future[Any]] = set()

    def context(self, request_id: str | None = None) -> Any:
        return make_context(self.function, 3 if self.mode == "fc3" else 2, request_id=request_id)

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
        context = self.context()
        rid = (b"x-fc-request-id", context.request_id.encode())
        if self.prefix and not (path == self.prefix or path.startswith(self.prefix + "/")):
            message = f"The path {path!r} is not under the function's URL {self.prefix}/."
            await send_rejection(send, Rejection(404, "PathNotFound", message), [rid])
            return
        body = await read_body(receive, headers, self.bridge.limits, len(target.encode()))
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
        if is_async_invocation(headers):
            # FC answers an asynchronous invocation at once and runs the function after.
            future = loop.run_in_executor(self._pool, call)
            self._background.add(future)
            future.add_done_callback(self._background.discard)
            headers_out = [rid, (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 202, "headers": headers_out})
            await send({"type": "http.response.body", "body": b""})
            return
        response = await loop.run_in_executor(self._pool, call)
        await self._send(send, response, rid)

    def invoke(self, invocation: Invocation, context: Any) -> RuntimeResponse:
        """One invocation as FC makes it, in this thread; what FC would send back."""
        if self.mode == "fc2":
            return call_wsgi(self.bridge, wsgi_environ(invocation, context))
        event = http_event(
            invocation, request_id=context.request_id, account_id=self.function.account_id
        )
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
