"""One HTTP request through the app: the ASGI cycle and the response it leaves behind.

Every front end (FC 2.0 environ, FC 3.0 event, the local server) builds a scope and a body,
calls :func:`serve`, and converts the :class:`Response` it returns. FC buffers whole responses,
so the cycle collects the body chunks the app sends and returns them untouched, in order, once
the app has returned: by then everything the request started (background tasks included) has
finished, which matters because FC may freeze the instance as soon as it has the response.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from ._lifespan import Lifespan
from ._limits import Limits, Rejection
from ._loop import track_spawned_tasks

if TYPE_CHECKING:
    from ._types import ASGIApp, Headers, HTTPScope, Message

logger = logging.getLogger("fc_bridge.http")

# Headers a function may not set on FC: the platform owns them (FC_FACTS section 4).
RESERVED_RESPONSE_HEADERS = frozenset(
    {b"connection", b"content-length", b"date", b"keep-alive", b"server"}
)
_warned: set[bytes] = set()

INTERNAL_ERROR_BODY = b"Internal Server Error"


class ResponseTooLarge(OSError):
    """Raised inside the app's ``send`` once its body passes ``Limits.response_body``.

    An ``OSError``, because ASGI 2.4 apps treat a failing ``send`` as a client that went away
    and stop producing; the bridge answers FC's 502 in place of the response.
    """


class Response:
    """What a request produced: status, headers, body chunks, and the app's exception if any."""

    __slots__ = ("chunks", "error", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: Headers,
        chunks: list[bytes],
        error: BaseException | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.chunks = chunks
        self.error = error

    @classmethod
    def rejection(cls, rejection: Rejection, error: BaseException | None = None) -> Response:
        return cls(rejection.status, rejection.headers(), [rejection.body()], error)

    @classmethod
    def internal_error(cls, error: BaseException | None = None) -> Response:
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        return cls(500, headers, [INTERNAL_ERROR_BODY], error)


class HTTPCycle:
    """The receive and send callables of one request, and what the app sent through them."""

    __slots__ = (
        "_body",
        "_body_sent",
        "_gone",
        "_gone_event",
        "_limits",
        "chunks",
        "complete",
        "head",
        "headers",
        "overflow",
        "size",
        "status",
    )

    def __init__(self, body: bytes, *, head: bool, limits: Limits) -> None:
        self._body = body
        self._body_sent = False
        self._gone = False
        self._gone_event: asyncio.Event | None = None
        self.head = head
        self._limits = limits
        self.status = 0
        self.headers: Any = ()
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        self.overflow: Rejection | None = None

    async def receive(self) -> Message:
        # Once the response is complete the exchange is over: http.disconnect, even for a body
        # nobody read (uvicorn's rule). FC never reports a client going away earlier.
        if not self._body_sent and not self._gone:
            self._body_sent = True
            body, self._body = self._body, b""
            return {"type": "http.request", "body": body, "more_body": False}
        if not self._gone:
            if self._gone_event is None:
                self._gone_event = asyncio.Event()
            await self._gone_event.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body" and self.status and not self.complete:
            body = message.get("body", b"")
            if body and not self.head:
                self._add(body)
            if not message.get("more_body", False):
                self._finish()
        elif kind == "http.response.start" and not self.status:
            self.status = int(message["status"])
            self.headers = message.get("headers", ())
        elif kind == "http.response.pathsend" and self.status and not self.complete:
            if not self.head:
                self._add_file(message["path"])
            self._finish()
        elif not self.status:
            raise RuntimeError(f"Expected ASGI message 'http.response.start', but got {kind!r}.")
        elif self.complete:
            raise RuntimeError(
                f"Unexpected ASGI message {kind!r} sent after the response completed."
            )
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} sent while sending the body.")

    def _grow(self, length: int) -> None:
        self.size += length
        if self._limits.response_body is None:
            return
        rejection = self._limits.check_response_body(self.size)
        if rejection is not None:
            self.overflow = rejection
            self.chunks = []
            raise ResponseTooLarge(rejection.message)

    def _add(self, body: bytes) -> None:
        self._grow(len(body))
        self.chunks.append(body if type(body) is bytes else bytes(body))

    def _add_file(self, path: str) -> None:
        # FC buffers the response anyway: one read beats FileResponse's 64 KiB chunks, each a
        # round trip through a worker thread.
        with open(path, "rb") as file:
            self._grow(os.fstat(file.fileno()).st_size)  # checked before reading the file
            self.chunks.append(file.read())

    def _finish(self) -> None:
        self.complete = True
        self.hang_up()

    def hang_up(self) -> None:
        """The exchange is over: wake anyone waiting in receive() for the disconnect."""
        self._gone = True
        if self._gone_event is not None:
            self._gone_event.set()


class HTTPHandler:
    """Serves requests to one app: lifespan first, then the cycle, then FC's response checks."""

    def __init__(
        self, app: ASGIApp, lifespan: Lifespan, limits: Limits, task_timeout: float
    ) -> None:
        self.app = app
        self.lifespan = lifespan
        self.limits = limits
        self.task_timeout = task_timeout

    async def __call__(self, scope: HTTPScope, body: bytes, request_id: str) -> Response:
        """Run one request through the app and return the response FC should give."""
        lifespan = self.lifespan
        if not lifespan.ready and not await lifespan.wait_started(
            scope.get("fc.context"), request_id
        ):
            return Response.internal_error()
        scope["state"] = lifespan.state.copy()
        head = scope["method"] == "HEAD"
        cycle = HTTPCycle(body, head=head, limits=self.limits)
        spawned = track_spawned_tasks()
        error: BaseException | None = None
        try:
            await self.app(scope, cycle.receive, cycle.send)  # type: ignore[arg-type]
        except (Exception, asyncio.CancelledError) as exc:
            error = exc
        cycle.hang_up()
        if spawned:
            await self._wait_for(spawned, request_id)
        return _response(cycle, error, self.limits, request_id)

    async def _wait_for(self, spawned: list[asyncio.Task[Any]], request_id: str) -> None:
        """Let the tasks the request started finish: FC may freeze the instance right after.

        Bounded by ``task_timeout``; tasks still running then are named in a warning and left
        to progress whenever later requests run the loop.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.task_timeout
        while pending := [task for task in spawned if not task.done()]:
            remaining = deadline - loop.time()
            if remaining <= 0:
                names = ", ".join(sorted(task.get_name() for task in pending))
                logger.warning(
                    "%d task(s) the request started still run after %gs and will be frozen "
                    "with the instance [request_id=%s]: %s",
                    len(pending),
                    self.task_timeout,
                    request_id,
                    names,
                )
                break
            await asyncio.wait(pending, timeout=remaining)
        for task in spawned:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error(
                    "Exception in a task the request started [request_id=%s]",
                    request_id,
                    exc_info=task.exception(),
                )


def _response(
    cycle: HTTPCycle, error: BaseException | None, limits: Limits, request_id: str
) -> Response:
    if cycle.overflow is not None:
        cycle.overflow.log(request_id)
        return Response.rejection(cycle.overflow, error)
    if error is not None:
        logger.error("Exception in ASGI application [request_id=%s]", request_id, exc_info=error)
        if not cycle.complete:
            return Response.internal_error(error)
    elif not cycle.status:
        logger.error("ASGI app returned without starting a response [request_id=%s]", request_id)
        return Response.internal_error()
    elif not cycle.complete:
        logger.error(
            "ASGI app returned without completing the response [request_id=%s]", request_id
        )
        return Response.internal_error()
    headers = checked_headers(cycle.headers, cycle.size, cycle.head, limits)
    if isinstance(headers, Rejection):
        headers.log(request_id)
        return Response.rejection(headers, error)
    return Response(cycle.status, headers, cycle.chunks, error)


def checked_headers(
    raw: Any,
    body_size: int,
    head: bool,
    limits: Limits,
    *,
    reserved: frozenset[bytes] = RESERVED_RESPONSE_HEADERS,
) -> Headers | Rejection:
    """The response headers FC sends, or its 502 when they are over the limit."""
    headers, size = allowed_headers(raw, body_size, head, reserved=reserved)
    rejection = limits.check_response_headers(size)
    return headers if rejection is None else rejection


def allowed_headers(
    raw: Any, body_size: int, head: bool, *, reserved: frozenset[bytes] = RESERVED_RESPONSE_HEADERS
) -> tuple[Headers, int]:
    """The app's headers minus those FC reserves, and their size in bytes as FC counts it.

    ``reserved`` are the names FC keeps for itself besides ``x-fc-*``: on a web function the
    HTTP server owns the framing headers, so there only ``x-fc-*`` is dropped.
    """
    headers: Headers = []
    size = 0
    for name, value in raw:
        key = name.lower()
        if key in reserved or key.startswith(b"x-fc-"):
            # FC sets Content-Length from the body it gets: a correct one is just redundant.
            if key != b"content-length" or not (head or value.strip() == b"%d" % body_size):
                _warn_reserved(key)
        else:
            headers.append((name, value))
            size += len(name) + len(value)
    return headers, size


def _warn_reserved(key: bytes) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(
            "Dropped response header %r: FC does not let functions set it "
            "(warned once per process).",
            key.decode("latin-1"),
        )
