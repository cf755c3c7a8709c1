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
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from contextvars import ContextVar
from typing import Any, TypeVar

from ._errors import ReentrantCallError

T = TypeVar("T")

# A task's first step can be taken where it is created (Task(..., eager_start=True)).
EAGER_TASKS = sys.version_info >= (3, 12)
# Longest a driver skips polling for I/O and timers while requests keep it busy, in seconds.
POLL_INTERVAL = 0.01

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


class _Caller:
    """A thread that came to run a coroutine: its task, and the lock it sleeps on while parked."""

    __slots__ = ("parked", "task", "wake")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.parked = False  # waiting in SharedLoop._parked; changed under SharedLoop._mutex
        self.wake = threading.Lock()


class SharedLoop:
    """An asyncio event loop that any thread can run a coroutine on, one at a time or many at once.

    ``run(coro)`` blocks the calling thread until ``coro`` has finished and returns its result
    (or raises its exception). All coroutines, from every thread, run on the same loop.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mutex = threading.Lock()
        self._driver: _Caller | None = None
        self._parked: deque[_Caller] = deque()
        self._polled = float("-inf")  # loop.time() when run_forever last polled I/O and timers

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop, created on first use."""
        with self._mutex:
            return self._get_loop()

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            # asyncio's own selector loop, whatever policy the app installed (uvloop, say):
            # _start_here relies on its internals.
            self._loop = asyncio.SelectorEventLoop()
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
        caller = _Caller()
        with self._mutex:
            loop = self._get_loop()
            if self._driver is None:
                self._driver = caller
            else:
                caller.parked = True
                caller.wake.acquire()
                self._parked.append(caller)
        if caller.parked:
            loop.call_soon_threadsafe(self._start_parked, loop, caller, coro)
            caller.wake.acquire()  # until our task is done, or the loop is handed to us
        else:
            caller.task = self._start_here(loop, coro)
            if not caller.task.done():
                caller.task.add_done_callback(lambda task: self._finished(caller))
        if caller is self._driver:
            self._drive(loop, caller)
        task: asyncio.Task[T] = caller.task  # type: ignore[assignment]
        return task.result()

    def _start_parked(
        self, loop: asyncio.AbstractEventLoop, caller: _Caller, coro: Coroutine[Any, Any, Any]
    ) -> None:
        caller.task = asyncio.Task(coro, loop=loop)
        caller.task.add_done_callback(lambda task: self._finished(caller))

    def _finished(self, caller: _Caller) -> None:
        """A caller's task is done (a done callback, so on the loop): tell whoever waits on it."""
        if caller is self._driver:
            # Ends run_forever after this iteration: the driver's own work is done. (Callbacks
            # only run inside run_forever: a first step taken by _start_here runs none.)
            asyncio.get_running_loop().stop()
            return
        with self._mutex:
            if not caller.parked:  # it gave up waiting (see _drive)
                return
            caller.parked = False
            self._parked.remove(caller)
        caller.wake.release()

    def _start_here(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]
    ) -> asyncio.Task[T]:
        """Create the driver's task, taking its first step right here when nothing else is due.

        Most requests never wait for I/O: their first step is the whole request. Taking it here
        skips a pass of run_forever (selector poll, timers, setup and teardown), which costs
        more than the rest of the bridge together. It is what the loop's next iteration would
        do, so it is only done when no callback is due before it and the loop has polled for
        I/O and timers within the last POLL_INTERVAL: background tasks keep their pace while
        requests keep coming. Not loop.create_task: the task factory is for tasks the app starts.
        """
        now = loop.time()
        if loop._ready or now - self._polled > POLL_INTERVAL:  # type: ignore[attr-defined]
            return asyncio.Task(coro, loop=loop)  # run_forever steps it, after what is due
        hooks = sys.get_asyncgen_hooks()
        loop._thread_id = threading.get_ident()  # type: ignore[attr-defined]
        sys.set_asyncgen_hooks(
            firstiter=loop._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
            finalizer=loop._asyncgen_finalizer_hook,  # type: ignore[attr-defined]
        )
        asyncio._set_running_loop(loop)
        try:
            if EAGER_TASKS:  # pragma: >=3.12 cover
                return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
            task = asyncio.Task(coro, loop=loop)  # pragma: <3.12 cover
            loop._ready.popleft()._run()  # type: ignore[attr-defined]  # pragma: <3.12 cover
            return task  # pragma: <3.12 cover
        finally:
            asyncio._set_running_loop(None)
            sys.set_asyncgen_hooks(*hooks)
            loop._thread_id = None  # type: ignore[attr-defined]

    def _drive(self, loop: asyncio.AbstractEventLoop, caller: _Caller) -> None:
        """Run the loop until the caller's task is done, then hand the loop to a parked thread."""
        try:
            # A parked caller handed the loop may find its task not even created yet.
            while caller.task is None or not caller.task.done():
                try:
                    loop.run_forever()
                finally:
                    self._polled = loop.time()
        finally:
            # Also when KeyboardInterrupt or SystemExit escaped a callback: this caller stops
            # waiting, and its task finishes later under another driver with nobody to tell.
            with self._mutex:
                successor = self._parked.popleft() if self._parked else None
                if successor is not None:
                    successor.parked = False
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
