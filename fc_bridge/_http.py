"""One HTTP request through the app: the one ASGI cycle every serving path shares.

Every path (FC 2.0's environ, FC 3.0's event, the web function, the local front ends through
them) builds a scope and reads the request body its own way, then hands both to
:class:`HTTPHandler`. What happens next is the same everywhere: wait for the lifespan, run the
app with this module's ``receive`` and ``send``, check what it sends (status, headers, message
order, limits), bound the request in time, and turn every failure into FC's answer with one log
record naming the request. Only the last step differs: FC's built-in runtimes get the whole
response at once (``buffered``), a web function's server gets it as it comes (``streamed``).

Time bounds (README, "Timeouts"): a request still running at its timeout is cancelled, with its
tasks, and answered 504, after one log record showing where it was waiting. If the app swallows
the cancellation, the caller is released with the 504 ``grace`` seconds later and the app left
to finish on its own. A response that is complete while the app goes on (a Starlette background
task) is returned after ``task_timeout``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import time
import weakref
from typing import TYPE_CHECKING, Any, NoReturn

from ._headers import WEB_FUNCTION, Policy, bad_status, checked
from ._lifespan import Lifespan
from ._limits import Rejection, timed_out
from ._loop import Call, SharedLoop, task_factory, track_spawned_tasks
from ._options import Options, grace

if TYPE_CHECKING:
    from ._types import ASGIApp, Headers, HTTPScope, Message, Receive, Send

logger = logging.getLogger("fc_bridge.http")

INTERNAL_ERROR_BODY = b"Internal Server Error"
TEXT = (b"content-type", b"text/plain; charset=utf-8")

NEW, STARTED, COMPLETE = 0, 1, 2


class ResponseRefused(OSError):
    """Raised inside the app's ``send`` when the bridge refuses its response (a bad header, a
    body over the limit). An ``OSError``, because ASGI 2.4 apps treat a failing ``send`` as a
    client that went away and stop producing; the bridge answers FC's 502 instead."""


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
        return cls(500, [TEXT], [INTERNAL_ERROR_BODY], error)


class Exchange(Call):
    """One request: the app's ``receive`` and ``send``, and what it sent through them.

    Fields that keep their default in a request that goes well are class attributes, so the
    common request stores only what it uses.
    """

    state = NEW
    status = 0
    headers: Headers = []  # noqa: RUF012  # replaced, never changed, by the start message
    size = 0
    buffered = True
    _server_receive: Receive | None = None
    _server_send: Send | None = None
    _held: list[Message] | None = None
    refused: Rejection | None = None
    expired = False
    unready = False  # lifespan startup failed: answered 500 without running the app
    returned = False  # the app has returned (or raised)
    error: BaseException | None = None
    spawned: list[asyncio.Task[Any]] | None = None
    _gone = False
    _gone_event: asyncio.Event | None = None
    _timers: list[asyncio.TimerHandle] | None = None  # set once the request waits: armed

    def __init__(
        self,
        handler: HTTPHandler,
        scope: HTTPScope,
        body: bytes,
        request_id: str,
        context: object,
        policy: Policy,
        *,
        server_receive: Receive | None = None,
        server_send: Send | None = None,
    ) -> None:
        self.handler = handler
        self.policy = policy
        self.scope = scope
        self._body: bytes | None = body
        self.request_id = request_id
        self.head = scope["method"] == "HEAD"
        self.chunks: list[bytes] = []
        options = handler.options
        timeout = options.timeout
        if timeout == "auto":
            timeout = options.auto_timeout or options.request_timeout(context)
        self.timeout: float | None = timeout
        self.started = time.monotonic()
        self.limit = handler.limits.response_body
        if server_send is not None:
            self._server_receive = server_receive
            self._server_send = server_send
            self.buffered = False
            # With a body limit the response is held back until complete, so FC's 502 can
            # still replace it.
            self._held = [] if self.limit is not None else None

    # The app's side.

    async def receive(self) -> Message:
        body = self._body
        if body is not None and not self._gone:
            self._body = None
            return {"type": "http.request", "body": body, "more_body": False}
        if self._server_receive is not None:
            return await self._server_receive()
        # Once the response is complete the exchange is over: http.disconnect, even for a body
        # nobody read (uvicorn's rule). FC never reports a client going away earlier.
        if not self._gone:
            if self._gone_event is None:
                self._gone_event = asyncio.Event()
            await self._gone_event.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        state = self.state
        if kind == "http.response.body" and state == STARTED:
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = _as_bytes(body)
            if body and not self.head:
                self.size += len(body)
                if self.limit is not None:
                    self._check_size()
                if self.buffered:
                    self.chunks.append(body)
            if not message.get("more_body", False):
                self.state = COMPLETE
                self.hang_up()
                if self._timers is not None:  # armed: the request already waited once
                    self._arm_background(asyncio.get_running_loop())
            if not self.buffered:
                await self._forward(message)
        elif kind == "http.response.start" and state == NEW:
            status = message.get("status")
            if not (type(status) is int and 100 <= status <= 599):
                self._refuse(bad_status(status))
            headers = checked(message.get("headers", ()), self.handler.limits, self.policy)
            if isinstance(headers, Rejection):
                self._refuse(headers)
            self.headers = headers
            self.status = status
            self.state = STARTED
            if not self.buffered:
                await self._forward({"type": kind, "status": status, "headers": headers})
        elif kind == "http.response.pathsend" and state == STARTED:
            await self._send_file(message)
        elif state == NEW:
            raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
        elif state == STARTED:
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}' sent, after response already completed."
            )

    def _refuse(self, rejection: Rejection) -> NoReturn:
        rejection.log(self.request_id)
        self.refused = rejection
        self.chunks = []
        self._held = []
        raise ResponseRefused(rejection.message)

    def _check_size(self) -> None:
        rejection = self.handler.limits.check_response_body(self.size)
        if rejection is not None:
            self._refuse(rejection)

    def _grow(self, length: int) -> None:
        self.size += length
        if self.limit is not None:
            self._check_size()

    async def _send_file(self, message: Message) -> None:
        path = message.get("path")
        if not isinstance(path, str):
            raise TypeError(f"Expected a str 'path' in 'http.response.pathsend', got {path!r}.")
        loop = asyncio.get_running_loop()
        if not self.buffered:  # the server offered pathsend: it reads the file
            if self.limit is not None and not self.head:
                self._grow(await loop.run_in_executor(None, os.path.getsize, path))
            self.state = COMPLETE
            await self._forward(message)
            return
        if not self.head:
            # Off the loop: a large file would stall every request in flight.
            room = None if self.limit is None else self.limit - self.size
            size, data = await loop.run_in_executor(None, _read_file, path, room)
            self._grow(size)
            self.chunks.append(data)
        self.state = COMPLETE
        self.hang_up()

    async def _forward(self, message: Message) -> None:
        held = self._held
        if held is None:
            await self._server_send(message)  # type: ignore[misc]
            return
        held.append(message)
        if self.state == COMPLETE:
            self._held = None
            for one in held:
                await self._server_send(one)  # type: ignore[misc]

    def hang_up(self) -> None:
        """The exchange is over: wake anyone waiting in receive() for the disconnect."""
        self._gone = True
        if self._gone_event is not None:
            self._gone_event.set()

    # Time bounds: armed only once the request has to wait (Call.suspended).

    def suspended(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.task = task
        self._timers = []
        if self.timeout is not None:
            self._timers.append(loop.call_at(self.started + self.timeout, self._expire))
        task.add_done_callback(self._disarm)
        if self.state == COMPLETE:
            self._arm_background(loop)

    def _disarm(self, task: asyncio.Task[Any]) -> None:
        for timer in self._timers or ():
            timer.cancel()

    def _arm_background(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.buffered and self.owner is not None:
            self._timers.append(loop.call_later(self.handler.task_timeout, self._overran))  # type: ignore[union-attr]

    def _expire(self) -> None:
        task = self.task
        if task is None or task.done() or self.state == COMPLETE:
            return
        self.expired = True
        logger.error(
            "Answering 504 [request_id=%s]: the request did not finish within %gs; "
            "the app was waiting at:\n%s",
            self.request_id,
            self.timeout,
            _stack().await_stack(task),
        )
        task.cancel()
        for spawned in self.spawned or ():
            spawned.cancel()
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(grace(self.timeout or 0.0), self._settle_late))  # type: ignore[union-attr]

    def _settle_late(self) -> None:
        task = self.task
        if task is not None and not task.done():
            logger.error(
                "The app ignored the cancellation of its timed-out request and still runs "
                "[request_id=%s]; answering 504 without it.",
                self.request_id,
            )
            self.settle(Response.rejection(self._timed_out()))

    def _overran(self) -> None:
        task = self.task
        if task is not None and not task.done() and not self.returned:
            logger.warning(
                "The app still runs %gs after completing its response (a background task?) "
                "[request_id=%s]; returning the response, the app goes on while later "
                "requests run the loop. It was waiting at:\n%s",
                self.handler.task_timeout,
                self.request_id,
                _stack().await_stack(task),
            )
            self.settle(self.response(None))

    def _timed_out(self) -> Rejection:
        return timed_out(self.timeout or 0.0)

    def wait_limit(self) -> float | None:
        if self.timeout is None:
            return None
        return self.started + self.timeout + 2 * grace(self.timeout) - time.monotonic()

    def abandon(self) -> Response:
        owner = self.owner
        driver = owner._driver if owner is not None else None
        frames = sys._current_frames()
        frame = frames.get(driver.thread) if driver is not None and driver.thread else None
        logger.error(
            "Answering 504 [request_id=%s]: the request waited %gs for the event loop, which "
            "another request's thread keeps busy without awaiting (blocking code in an async "
            "endpoint?). That thread is at:\n%s",
            self.request_id,
            self.timeout,
            _stack().frame_stack(frame) if frame is not None else "  (unknown)",
        )
        return Response.rejection(self._timed_out())

    # What the request produced.

    def response(self, error: BaseException | None) -> Response:
        """The buffered response: the app's, or the bridge's answer for what went wrong."""
        if error is None and self.state == COMPLETE and self.refused is None:
            return Response(self.status, self.headers, self.chunks)
        if self.refused is not None:
            return Response.rejection(self.refused)  # logged when refused
        if self.unready:
            return Response.internal_error()  # logged by the lifespan
        if self.expired and self.state != COMPLETE:
            return Response.rejection(self._timed_out())  # logged at the timeout
        passed = error if isinstance(error, Exception) else None  # exc_info for WSGI servers
        if not self._usable(error):
            return Response.internal_error(passed)
        return Response(self.status, self.headers, self.chunks, passed)

    def _usable(self, error: BaseException | None) -> bool:
        """Whether the app's response can be used; logs what went wrong, if anything."""
        if error is not None:
            logger.error(
                "Exception in ASGI application [request_id=%s]", self.request_id, exc_info=error
            )
        elif self.state == NEW:
            logger.error(
                "ASGI callable returned without starting response [request_id=%s].",
                self.request_id,
            )
        elif self.state == STARTED:
            logger.error(
                "ASGI callable returned without completing response [request_id=%s].",
                self.request_id,
            )
        return self.state == COMPLETE

    def result(self) -> Response | None:
        """What the cycle returns: the buffered response; None when streamed."""
        return self.response(self.error) if self.buffered else None

    async def finish_streamed(self) -> None:
        """End a streamed response: the bridge's answer if the app's cannot be sent."""
        send = self._server_send
        assert send is not None
        if self.refused is not None:
            answer: Rejection | None = self.refused
        elif self.unready:
            answer = None
        elif self.expired and self.state == NEW:
            answer = self._timed_out()
        else:
            if self._usable(self.error) or self.state != NEW:
                return  # complete, or cut off after the start: the server ends the connection
            answer = None
        if answer is None:
            headers, body, status = [TEXT], INTERNAL_ERROR_BODY, 500
        else:
            headers, body, status = answer.headers(), answer.body(), answer.status
        headers = [*headers, (b"content-length", b"%d" % len(body)), (b"x-fc-status", b"404")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class HTTPHandler:
    """Serves requests to one app: lifespan first, then the cycle, under the bridge's options."""

    def __init__(self, app: ASGIApp, lifespan: Lifespan, options: Options) -> None:
        self.app = app
        self.lifespan = lifespan
        self.options = options
        self.limits = options.limits
        self.task_timeout = options.task_timeout
        # Tasks requests started that were still running when their request ended: what
        # pre_freeze waits for.
        self.leftovers: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def buffered(
        self,
        loop: SharedLoop,
        scope: HTTPScope,
        body: bytes,
        request_id: str,
        context: object,
        policy: Policy,
    ) -> Response:
        """Serve one request on the shared loop, from any thread; the whole response."""
        exchange = Exchange(self, scope, body, request_id, context, policy)
        response = loop.run(self._cycle(exchange), exchange)
        assert response is not None  # buffered
        return response

    async def streamed(
        self,
        scope: HTTPScope,
        body: bytes,
        request_id: str,
        context: object,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve one request in the server's task, streaming the response to ``send``."""
        exchange = Exchange(
            self,
            scope,
            body,
            request_id,
            context,
            WEB_FUNCTION,
            server_receive=receive,
            server_send=send,
        )
        loop = asyncio.get_running_loop()
        if loop.get_task_factory() is None:  # the server's loop: see the tasks requests start
            loop.set_task_factory(task_factory)
        # The app runs in a task of its own with a fresh context. The server's task may carry
        # an earlier request's context variables: asyncio copies the current context into the
        # callbacks a request registers, and uvicorn resumes reading a keep-alive connection
        # from inside the request that just finished.
        task = contextvars.Context().run(loop.create_task, self._cycle(exchange))
        exchange.suspended(loop, task)
        try:
            await asyncio.shield(task)  # so that a cancellation reaches us, not only the app
        except asyncio.CancelledError:  # the server is going away: so does the request
            task.cancel()
            raise
        await exchange.finish_streamed()

    async def _cycle(self, exchange: Exchange) -> Response | None:
        """Run the app for one request: the response when buffered (else None), the exception
        the app raised, if any, in ``exchange.error``.

        Any exception the app raises stays in its request, ``SystemExit``, ``KeyboardInterrupt``
        and ``CancelledError`` included: the request answers 500 (504 at its timeout) and the
        next request is served as usual (README, "Failures").
        """
        scope = exchange.scope
        try:
            lifespan = self.lifespan
            if not lifespan.ready and not await lifespan.wait_started(
                scope["fc.context"], exchange.request_id
            ):
                exchange.unready = True
                return exchange.result()
            scope["state"] = lifespan.state.copy()
            exchange.spawned = track_spawned_tasks()
            await self.app(scope, exchange.receive, exchange.send)  # type: ignore[arg-type]
        except BaseException as exc:  # see the docstring
            if isinstance(exc, ResponseRefused) and exchange.refused is not None:
                exc = None  # type: ignore[assignment]  # logged when refused
            elif isinstance(exc, asyncio.CancelledError) and exchange.expired:
                exc = None  # type: ignore[assignment]  # logged at the timeout
            exchange.error = exc
            if isinstance(exc, GeneratorExit):
                return exchange.result()  # the coroutine is being closed: no more awaits

        exchange.returned = True
        exchange.hang_up()
        if exchange.spawned and not exchange.expired:
            await self._wait_for(exchange.spawned, exchange.request_id)
        return exchange.result()

    async def _wait_for(self, spawned: list[asyncio.Task[Any]], request_id: str) -> None:
        """Let the tasks the request started finish: FC may freeze the instance right after.

        Bounded by ``task_timeout``; tasks still running then are named in a warning and left
        to progress whenever later requests run the loop (pre_freeze waits for them again).
        """
        self.leftovers.update(spawned)  # pre_freeze may come before this wait is over
        pending = await wait_for_tasks(spawned, self.task_timeout)
        if pending:
            logger.warning(
                "%d task(s) the request started still run after %gs and will be frozen "
                "with the instance [request_id=%s]: %s",
                len(pending),
                self.task_timeout,
                request_id,
                _names(pending),
            )
        for task in spawned:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error(
                    "Exception in a task the request started [request_id=%s]",
                    request_id,
                    exc_info=task.exception(),
                )

    async def settle_leftovers(self, request_id: str) -> None:
        """pre_freeze: give the tasks earlier requests left running ``task_timeout`` seconds."""
        pending = await wait_for_tasks(list(self.leftovers), self.task_timeout)
        if pending:
            logger.warning(
                "%d task(s) still run as FC freezes the instance [request_id=%s]: %s",
                len(pending),
                request_id,
                _names(pending),
            )


async def wait_for_tasks(tasks: list[asyncio.Task[Any]], timeout: float) -> list[asyncio.Task[Any]]:
    """Wait up to ``timeout`` seconds for ``tasks``, and for tasks added to the list meanwhile
    (a task may start others); the ones still running then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending := [task for task in tasks if not task.done()]:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return pending
        await asyncio.wait(pending, timeout=remaining)
    return []


def _stack() -> Any:
    """The stack formatting module, imported when a log record first needs it (not on the
    cold start of every function)."""
    from . import _stack as module

    return module


def _names(tasks: list[asyncio.Task[Any]]) -> str:
    return ", ".join(sorted(task.get_name() for task in tasks))


def _as_bytes(body: object) -> bytes:
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError(
        f"Expected bytes in the 'http.response.body' message's 'body', got {type(body).__name__}."
    )


def _read_file(path: str, room: int | None) -> tuple[int, bytes]:
    """A file's size and contents; only its size if that is more than ``room`` bytes."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if room is not None and size > room:
            return size, b""
        return size, file.read()
