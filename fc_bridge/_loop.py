"""One event loop for the whole process, driven by whichever thread is waiting on it.

FC calls a handler from its main thread, or from a new thread per request when the function's
instance concurrency is above 1. Objects an app makes in its lifespan (an ``httpx.AsyncClient``,
a database pool, an ``asyncio.Lock``) belong to the loop they were made on, so every request
must run on that same loop. Running the loop in a thread of its own (a2wsgi's way) makes every
ASGI message cross threads, and a thread wake-up costs 15 to 200 us on FC-sized machines.

So nobody owns the loop: a thread that brings work runs the loop itself until its own work is
done. If another thread is already running it, the newcomer hands its coroutine over and parks.
A thread whose work is done passes the loop to a parked thread whose work is not, so the loop
keeps turning while anyone waits on it. An uncontended request therefore never leaves its
thread, and concurrent requests cost one hand-over each, not one per message.

Between requests nothing runs the loop: background tasks progress only while some request is
in flight. That is also what FC does to the whole instance, which it freezes between requests.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from ._errors import ReentrantCallError

T = TypeVar("T")

_spawned: ContextVar[list[asyncio.Task[Any]] | None] = ContextVar("fc_bridge_spawned", default=None)


def _task_factory(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
    /,
    **kwargs: Any,
) -> asyncio.Task[T]:
    task = asyncio.Task(coro, loop=loop, **kwargs)
    spawned = _spawned.get()
    if spawned is not None:
        spawned.append(task)
    return task


def track_spawned_tasks() -> list[asyncio.Task[Any]]:
    """Collect, from now on, every task created in the current task's context and its children.

    New tasks inherit their creator's context, so this names exactly the tasks a request
    started, however deep; the request can then wait for them before FC freezes the instance.
    """
    spawned: list[asyncio.Task[Any]] = []
    _spawned.set(spawned)
    return spawned


class _Ticket(Generic[T]):
    """One caller's coroutine and, once it has run, its result or exception."""

    __slots__ = ("abandoned", "coro", "error", "finished", "parked", "result", "wake")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.coro = coro
        self.result: T | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.parked = False
        self.abandoned = False
        # Acquired while the caller is parked; released to wake it up.
        self.wake = threading.Lock()

    def outcome(self) -> T:
        if self.error is not None:
            error, self.error = self.error, None  # drop the reference cycle through the traceback
            raise error
        return self.result  # type: ignore[return-value]


class SharedLoop:
    """An asyncio event loop that any thread can run a coroutine on, one at a time or many at once.

    ``run(coro)`` blocks the calling thread until ``coro`` has finished and returns its result
    (or raises its exception). All coroutines, from every thread, run on the same loop.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mutex = threading.Lock()
        self._driver: _Ticket[Any] | None = None
        self._parked: deque[_Ticket[Any]] = deque()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop, created on first use."""
        with self._mutex:
            return self._get_loop()

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
            self._loop.set_task_factory(_task_factory)
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the shared loop and return its result; callable from any thread."""
        running = asyncio._get_running_loop()
        if running is not None:
            if running is self._loop:
                coro.close()
                raise ReentrantCallError(
                    "The handler was called from inside the application it serves; "
                    "the call would wait for itself forever."
                )
            return self._in_helper_thread(lambda: self.run(coro))
        ticket = _Ticket(coro)
        with self._mutex:
            loop = self._get_loop()
            if self._driver is None:
                self._driver = ticket
            else:
                ticket.parked = True
                ticket.wake.acquire()
                self._parked.append(ticket)
        if not ticket.parked:
            loop.create_task(self._follow(ticket))
            self._drive(loop, ticket)
        else:
            loop.call_soon_threadsafe(loop.create_task, self._follow(ticket))
            ticket.wake.acquire()  # until our work is done, or the loop is handed to us
            if not ticket.finished:
                self._drive(loop, ticket)
        return ticket.outcome()

    async def _follow(self, ticket: _Ticket[T]) -> None:
        try:
            ticket.result = await ticket.coro
        except BaseException as exc:  # re-raised in the caller's thread by outcome()
            ticket.error = exc
        ticket.finished = True
        if ticket is self._driver:
            # Stops the loop at the end of this iteration: the driver's run_forever returns.
            asyncio.get_running_loop().stop()
        elif not ticket.abandoned:
            with self._mutex:
                self._parked.remove(ticket)
            ticket.wake.release()

    def _drive(self, loop: asyncio.AbstractEventLoop, ticket: _Ticket[Any]) -> None:
        try:
            while not ticket.finished:
                loop.run_forever()
        except BaseException:
            # KeyboardInterrupt or SystemExit escaped a callback: this caller stops waiting,
            # and its coroutine finishes later under another driver with nobody to tell.
            ticket.abandoned = True
            raise
        finally:
            with self._mutex:
                successor = self._parked.popleft() if self._parked else None
                self._driver = successor
            if successor is not None:
                successor.wake.release()

    @staticmethod
    def _in_helper_thread(call: Callable[[], T]) -> T:
        """Make ``call`` from a thread of its own: this thread is busy running an event loop.

        A test written as a coroutine, say, that calls the handler directly: FC never does.
        """
        results: list[T] = []
        errors: list[BaseException] = []

        def helper() -> None:
            try:
                results.append(call())
            except BaseException as exc:  # re-raised in the calling thread below
                errors.append(exc)

        thread = threading.Thread(target=helper, name="fc-bridge-call")
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return results[0]

    def close(self) -> None:
        """Cancel what is still pending on the loop and close it; the next run() makes a new one.

        The process-wide loop never needs this (it ends with the process); tests and tools
        that make a loop of their own call it when they are done.
        """
        if asyncio._get_running_loop() is not None:
            return self._in_helper_thread(self.close)
        with self._mutex:
            loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


shared_loop = SharedLoop()
"""The loop every bridge in the process uses unless given another."""
