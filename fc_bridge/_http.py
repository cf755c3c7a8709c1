"""One HTTP request through the app: the one ASGI cycle every serving path shares.

Every path (FC 2.0's environ, FC 3.0's event, the web function, the local front ends through
them) builds a scope and reads the request body its own way, then hands both to
:class:`HTTPHandler`. What happens next is the same everywhere: wait for the lifespan, run the
app with this module's ``receive`` and ``send``, check what it sends (status, headers, message
order, limits), bound the request in time, and turn every failure into FC's answer with one log
record naming the request. Only the last step differs: FC's built-in runtimes get the whole
response at once (``buffered``), a web function's server gets it as it comes (``streamed``).

Time bounds (README, "Timeouts") live in ``_timeouts``, imported once a request has to wait:
most requests finish in their task's first step and never arm a timer.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import time
import types
import weakref
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any, NoReturn

from ._headers import WEB_FUNCTION, Policy, bad_status, checked
from ._lifespan import Lifespan
from ._limits import Rejection, timed_out
from ._loop import Call, SharedLoop, task_factory, track_spawned_tasks
from ._options import Options

if TYPE_CHECKING:
    from . import _timeouts
    from ._types import ASGIApp, Headers, HTTPScope, Message, Receive, Send
else:
    _timeouts = None  # imported by _load_timeouts

logger = logging.getLogger("fc_bridge.http")

INTERNAL_ERROR_BODY = b"Internal Server Error"
TEXT = (b"content-type", b"text/plain; charset=utf-8")

NEW, STARTED, COMPLETE = 0, 1, 2
STATUSES = range(100, 600)  # an int's membership is one comparison in C
# Task.cancelling() and uncancel(): a request can run in the server's task and still tell the
# server's cancellation from its own timeout's.
CANCELLING = sys.version_info >= (3, 11)


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
    server_task: asyncio.Task[Any] | None = None  # streamed right in it (HTTPHandler.streamed)
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
    timers: list[asyncio.TimerHandle] | None = None  # set once the request waits: armed
    deadlines: _timeouts.Deadlines | None = None  # where its timeout is, once armed

    def __init__(
        self,
        handler: HTTPHandler,
        scope: HTTPScope,
        body: bytes,
        request_id: str,
        context: object,
        policy: Policy,
        server_receive: Receive | None = None,
        server_send: Send | None = None,
        /,
    ) -> None:
        self.handler = handler
        self.policy = policy
        self.scope = scope
        self._body: bytes | None = body
        self.request_id = self.name = request_id  # its task is named after it
        self.head = scope["method"] == "HEAD"
        self.chunks: list[bytes] = []
        self.context = context
        self.started = time.monotonic()
        self.limit = handler.limits.response_body
        if server_send is not None:
            self._server_receive = server_receive
            self._server_send = server_send
            self.buffered = False
            # With a body limit the response is held back until complete, so FC's 502 can
            # still replace it.
            self._held = [] if self.limit is not None else None

    @property
    def timeout(self) -> float | None:
        """Seconds the request may run (README, "Timeouts"); read only once the request has
        to wait, so most requests never work it out."""
        options = self.handler.options
        timeout = options.timeout
        if timeout == "auto":
            return options.auto_timeout or options.request_timeout(self.context)
        return timeout

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
                self._gone = True  # hang_up(), inlined: every request passes here
                if self._gone_event is not None:
                    self._gone_event.set()
                if self.timers is not None and self.buffered:  # armed: it waited once
                    _timeouts.arm_background(self, asyncio.get_running_loop())
            if not self.buffered:
                if self._held is None:  # _forward(), inlined: nothing held back
                    await self._server_send(message)  # type: ignore[misc]
                else:
                    await self._forward(message)
        elif kind == "http.response.start" and state == NEW:
            status = message.get("status")
            if type(status) is not int or status not in STATUSES:
                self._refuse(bad_status(status))
            headers = checked(message.get("headers", ()), self.handler.limits, self.policy)
            if isinstance(headers, Rejection):
                self._refuse(headers)
            self.headers = headers
            self.status = status
            self.state = STARTED
            if not self.buffered:
                start = {"type": kind, "status": status, "headers": headers}
                if self._held is None:  # _forward(), inlined: nothing held back
                    await self._server_send(start)  # type: ignore[misc]
                else:
                    await self._forward(start)
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
        from ._errors import ResponseRefused  # imported when raised (see _options)

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

    # Time bounds (_timeouts): armed only once the request has to wait (Call.suspended).

    def suspended(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        if _timeouts is None:  # _load_timeouts(), without a call on every request that waits
            _load_timeouts()
        _timeouts.arm(self, loop, task)

    def task_done(self, task: asyncio.Task[Any]) -> None:
        if self.timers is not None:  # armed (bound): disarmed before the thread is told
            _timeouts.disarm(self)
        super().task_done(task)

    def wait_limit(self) -> float | None:
        _load_timeouts()
        return _timeouts.wait_limit(self)

    def abandon(self) -> Response:
        _load_timeouts()
        _timeouts.abandoned(self)
        return self.timed_out()

    def complete(self) -> bool:
        return self.state == COMPLETE

    def timed_out(self) -> Response:
        """The 504 for a request that outlived its timeout."""
        return Response.rejection(timed_out(self.timeout or 0.0))

    # What the request produced.

    def response(self, error: BaseException | None) -> Response:
        """The buffered response: the app's, or the bridge's answer for what went wrong.
        (A copy, not the exchange itself: the task's result would then refer back to the
        exchange, which refers to the task, a cycle only the garbage collector frees.)"""
        if error is None and self.state == COMPLETE and self.refused is None:
            return Response(self.status, self.headers, self.chunks)
        if self.refused is not None:
            return Response.rejection(self.refused)  # logged when refused
        if self.unready:
            return Response.internal_error()  # logged by the lifespan
        if self.expired and self.state != COMPLETE:
            return self.timed_out()  # logged at the timeout
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
        else:  # started (a complete response without an error never comes here)
            logger.error(
                "ASGI callable returned without completing response [request_id=%s].",
                self.request_id,
            )
        return self.state == COMPLETE

    def result(self) -> Response | None:
        """What the cycle returns: the buffered response; None when streamed."""
        return self.response(self.error) if self.buffered else None

    async def finish_streamed(self) -> None:
        """End a streamed response that was not sent whole without an error: the bridge's
        answer if the app's cannot be sent, the app's error logged."""
        send = self._server_send
        assert send is not None
        if self.refused is not None:
            answer: Rejection | None = self.refused
        elif self.unready:
            answer = None
        elif self.expired and self.state == NEW:
            answer = timed_out(self.timeout or 0.0)
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
            receive,  # the server's: the request streams through the exchange
            send,
        )
        loop = asyncio.get_running_loop()
        if loop.get_task_factory() is None:  # the server's loop: see the tasks requests start
            loop.set_task_factory(task_factory)
        task = asyncio.current_task(loop)  # loop given: Python 3.11 looks it up again otherwise
        fresh = not len(contextvars.copy_context())
        if CANCELLING and task is not None and fresh:  # pragma: >=3.11 cover
            # The server gave the request a task of its own with a fresh context (uvicorn's
            # reset_contextvars, which fc-bridge serve turns on): the app runs right here.
            exchange.server_task = task
            # Its first step taken here: a request that finishes in it (most do) cannot be
            # cancelled, so only one that waits is bounded in time (from its start, as always).
            cycle = self._cycle(exchange)
            try:
                waiting = cycle.send(None)
            except StopIteration:
                pass
            else:
                if _timeouts is None:  # _load_timeouts(), without a call on every request
                    _load_timeouts()
                _timeouts.bound(exchange, loop, task)  # the server's task outlives it
                try:
                    await _resumed(cycle, waiting)
                finally:
                    _timeouts.disarm(exchange)
        else:
            # A task of its own with a fresh context: the server's task may carry an earlier
            # request's context variables (asyncio copies the current context into the
            # callbacks a request registers, and uvicorn without reset_contextvars resumes
            # reading a keep-alive connection from inside the request that just finished).
            task = contextvars.Context().run(
                loop.create_task, self._cycle(exchange), name=exchange.request_id
            )
            exchange.suspended(loop, task)
            task.add_done_callback(exchange.task_done)
            try:
                await asyncio.shield(task)  # so that a cancellation reaches us, not the app only
            except (asyncio.CancelledError, GeneratorExit):  # the server is going away: so
                task.cancel()  # does the request
                raise
        # A response sent whole without an error needs nothing more (and no coroutine made to
        # say so: every request ends here). A refused one never reaches COMPLETE.
        if exchange.state != COMPLETE or exchange.error is not None:
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
            # A refused response's ResponseRefused is kept as the error too, never logged: every
            # answer reads exchange.refused first.
            if isinstance(exc, asyncio.CancelledError) and exchange.expired:
                exc = None  # type: ignore[assignment]  # logged at the timeout
                if exchange.server_task is not None:  # pragma: >=3.11 cover
                    # The timeout's cancellation, taken back: the server's task goes on.
                    exchange.server_task.uncancel()  # type: ignore[attr-defined,unused-ignore]
            elif (  # pragma: >=3.11 cover
                isinstance(exc, asyncio.CancelledError)
                and exchange.server_task is not None
                and exchange.server_task.cancelling()  # type: ignore[attr-defined,unused-ignore]
            ):
                raise  # the server cancels its own task: not the app's failure
            exchange.error = exc
            if isinstance(exc, GeneratorExit):
                return exchange.result()  # the coroutine is being closed: no more awaits

        exchange.returned = True
        if not exchange._gone:  # else the complete response hung up already
            exchange.hang_up()
        if exchange.spawned and not exchange.expired:
            _load_timeouts()
            await _timeouts.wait_for_spawned(self, exchange.spawned, exchange.request_id)
        elif not exchange.buffered:
            return None  # streamed: finish_streamed() tells what went wrong, if anything
        elif (
            exchange.error is None and exchange.state == COMPLETE and exchange.refused is None
        ):  # result(), inlined for the common case: every buffered request ends here
            return Response(exchange.status, exchange.headers, exchange.chunks)
        return exchange.result()

    async def settle_leftovers(self, request_id: str) -> None:
        """pre_freeze: give the tasks earlier requests left running ``task_timeout`` seconds."""
        _load_timeouts()
        await _timeouts.settle_leftovers(self, request_id)


@types.coroutine
def _resumed(  # pragma: >=3.11 cover
    coroutine: Coroutine[Any, Any, Any], waiting: object
) -> Generator[object, None, Any]:
    """Await the rest of ``coroutine``, whose first step (taken by hand) yielded ``waiting``:
    what the task awaiting this gets, as if it had taken that step itself. A task resumes a
    coroutine with ``send(None)``, which ``yield from`` does; what it throws in (its
    cancellation) goes to the coroutine."""
    try:
        yield waiting
    except BaseException as exc:  # GeneratorExit too: closed, so is the coroutine
        try:
            waiting = coroutine.throw(exc)
        except StopIteration as stop:
            return stop.value
        return (yield from _resumed(coroutine, waiting))
    return (yield from coroutine)


def _load_timeouts() -> None:
    """Import the time bounds: when a request first has to wait, not on every cold start."""
    global _timeouts
    if _timeouts is None:
        from . import _timeouts


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
