"""FC's custom runtime ("web function"): the app served directly by a web server on port 9000.

FC forwards each HTTP request to the server with ``x-fc-*`` headers describing the invocation
(FC_FACTS section 5) and calls the lifecycle hooks as ``POST /initialize`` and
``GET /pre-stop``. This front end runs the app on the server's own loop, streaming responses,
with the same lifespan rules, limits, reserved-header policy and error answers as the bridge.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._frontend import read_body, send_rejection, target_of
from ._http import INTERNAL_ERROR_BODY, ResponseTooLarge, checked_headers
from ._lifespan import Lifespan
from ._limits import Limits, Rejection
from ._local_context import CREDENTIAL_HEADERS, FunctionInfo, context_from_headers
from ._urls import resolve

if TYPE_CHECKING:
    from ._types import ASGIApp, LifespanMode, Message, Receive, Scope, Send

logger = logging.getLogger("fc_bridge.web")

HOOKS = {("POST", "/initialize"): "initializer", ("GET", "/pre-stop"): "pre_stop"}


class WebFunction:
    """The ASGI app a custom runtime's server runs: ``app`` behind FC's rules."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: LifespanMode = "auto",
        limits: Limits | None = None,
        root_path: str | None = None,
        function: FunctionInfo | None = None,
    ) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.root_path = root_path
        self.function = function or FunctionInfo.from_env()
        self.lifespan = Lifespan(app, lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._server_lifespan(receive, send)
        elif scope["type"] == "http":
            hook = HOOKS.get((scope["method"], scope["path"]))
            if hook is not None:
                await self._hook(hook, scope, send)
            else:
                await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)  # WebSockets: FC 3.0 web functions pass them

    async def _server_lifespan(self, receive: Receive, send: Send) -> None:
        # Startup waits for POST /initialize (or the first request), as on FC; when the
        # server stops (SIGTERM), shutdown runs unless GET /pre-stop already ran it.
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await self.lifespan.shutdown()
        await send({"type": "lifespan.shutdown.complete"})

    async def _hook(self, hook: str, scope: Scope, send: Send) -> None:
        context = context_from_headers(dict(scope["headers"]), self.function)
        before = self.lifespan.failure
        if hook == "initializer":
            await self.lifespan.startup(context)
        else:
            await self.lifespan.shutdown()
        failure = self.lifespan.failure
        failed = failure is not None and (hook == "initializer" or failure != before)
        body = f"ASGI {failure}".encode() if failed else b""
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send(
            {"type": "http.response.start", "status": 500 if failed else 200, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = dict(scope["headers"])
        context = context_from_headers(raw, self.function)
        rid = context.request_id
        target = target_of(scope)
        body = await read_body(receive, scope["headers"], self.limits, len(target.encode()))
        if body is None:
            return
        if isinstance(body, Rejection):
            body.log(rid)
            await send_rejection(send, body)
            return
        if not self.lifespan.ready and not await self.lifespan.wait_started(context, rid):
            await _internal_error(send)
            return
        base = raw.get(b"x-fc-base-path", b"").decode("latin-1").rstrip("/") or None
        root, path, raw_path = resolve(
            scope.get("raw_path") or scope["path"].encode(), self.root_path or base
        )
        app_scope = {
            **scope,
            "root_path": root,
            "path": path,
            "raw_path": raw_path,
            # The secrets live in fc.context only: an app that logs its headers leaks none.
            "headers": [h for h in scope["headers"] if h[0] not in CREDENTIAL_HEADERS],
            "state": self.lifespan.state.copy(),
            "fc.context": context,
            "fc.request_uri": target,
        }
        sender = _Sender(send, self.limits, rid, scope["method"] == "HEAD")
        body_sent = False

        async def replay() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(app_scope, replay, sender)
        except Exception as exc:
            logger.error("Exception in ASGI application [request_id=%s]", rid, exc_info=exc)
            if not sender.started:
                await _internal_error(send)
        else:
            await sender.finish()


async def _internal_error(send: Send) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": INTERNAL_ERROR_BODY})


class _Sender:
    """The app's send: FC's response header rules at the start, then the body streams through.

    With a response body limit set the response is held back until it is complete, so FC's
    502 can still replace it, as on FC; without one (the default) nothing is held back.
    """

    def __init__(self, send: Send, limits: Limits, request_id: str, head: bool) -> None:
        self._send = send
        self._limits = limits
        self._request_id = request_id
        self._head = head
        self._held: list[Message] = []
        self._size = 0
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            # Only x-fc-* is FC's here: the server owns the framing headers of its responses.
            raw = message.get("headers", ())
            headers = checked_headers(raw, 0, self._head, self._limits, reserved=frozenset())
            if isinstance(headers, Rejection):
                await self._reject(headers)
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and self._limits.response_body is not None:
            self._size += len(message.get("body", b""))
            rejection = self._limits.check_response_body(self._size)
            if rejection is not None:
                self._held = []
                await self._reject(rejection)
        if self._limits.response_body is not None:
            self._held.append(message)
            return
        self.started = True
        await self._send(message)

    async def _reject(self, rejection: Rejection) -> None:
        """Answer FC's 502 in place of the response, and stop the app (OSError, ASGI 2.4)."""
        rejection.log(self._request_id)
        self.started = True
        await send_rejection(self._send, rejection)
        raise ResponseTooLarge(rejection.message)

    async def finish(self) -> None:
        """Send what was held back, once the app has returned."""
        held, self._held = self._held, []
        for message in held:
            self.started = True
            await self._send(message)
