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
thread, and concurrent requests cost one hand-over each, not one per message; hand-overs that
arrive together wake the loop once (at 64 and 128 threads, seven to ten of them a wake-up).

Between requests nothing runs the loop: background tasks progress only while some request is
in flight. That is also what FC does to the whole instance, which it freezes between requests.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

# A task's first step can be taken where it is created (Task(..., eager_start=True)).
EAGER_TASKS = sys.version_info >= (3, 12)
# Longest a driver skips polling for I/O and timers while requests keep it busy, in seconds.
POLL_INTERVAL = 0.01

_spawned: ContextVar[list[asyncio.Task[Any]] | None] = ContextVar("fc_bridge_spawned", default=None)


def task_factory(
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


class Call:
    """One thread's coroutine on the shared loop, and how that thread waits for its result.

    The bridge subclasses it to bound a request in time (see ``_http.Exchange``): ``suspended``
    is called, on the loop, once the task is known to need more than one step, so a request
    finished in its first step arms no timer; ``task_done`` when that task is done (what it
    armed ends there, before the waiting thread is told); ``settle`` releases the waiting
    thread with a value before the task is done; ``abandon`` gives the answer of a thread that
    stopped waiting because nobody ran the loop (its driver blocked it).
    """

    # Class-level defaults: a request that never waits sets none of them (no __slots__, so
    # that a subclass's instance starts with nothing to store).
    task: asyncio.Task[Any] | None = None
    owner: SharedLoop | None = None
    parked = False  # waiting in SharedLoop._parked; changed under SharedLoop._mutex
    wake: threading.Lock  # made when the call parks: what its thread sleeps on
    settled = False
    value: Any = None
    abandoned = False
    thread = 0  # threading.get_ident() of the thread that drives the loop for it
    name: str | None = None  # the task's name (None: asyncio's "Task-<n>")

    def suspended(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        """The task did not finish in one step: arm whatever bounds it. On the loop."""

    def task_done(self, task: asyncio.Task[Any]) -> None:
        """The call's task is done: tell whoever waits on it. On the loop (its done callback)."""
        if self.owner is not None:  # else not run by a SharedLoop (a server's request)
            self.owner._finished(self)

    def wait_limit(self) -> float | None:
        """Longest a parked thread waits before giving up (``abandon``), or None: forever."""
        return None

    def abandon(self) -> Any:
        """What ``run`` returns after the wait limit passed with nobody running the loop."""
        raise TimeoutError("Nobody ran the shared event loop within the wait limit.")

    def settle(self, value: Any) -> None:
        """Return ``value`` to the waiting thread now; the task may go on. On the loop."""
        if not self.settled:
            self.settled = True
            self.value = value
            if self.owner is not None:
                self.owner._finished(self)


class SharedLoop:
    """An asyncio event loop that any thread can run a coroutine on, one at a time or many at once.

    ``run(coro)`` blocks the calling thread until ``coro`` has finished and returns its result
    (or raises its exception). All coroutines, from every thread, run on the same loop.
    """

    def __init__(self, *, fast_path: bool | None = None) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mutex = threading.Lock()
        self._driver: Call | None = None
        self._parked: deque[Call] = deque()
        self._incoming: list[tuple[Call, Coroutine[Any, Any, Any]]] = []  # for _start_incoming
        self._polled = float("-inf")  # time.monotonic() when the loop last polled I/O and timers
        self._hooks: tuple[Any, Any] = (None, None)  # the loop's async generator hooks
        self._own_fds = 0  # file descriptors the loop watches for itself (its self-pipe)
        # None: decided by the self-check when the loop is made; False: public API only.
        if fast_path is None and os.environ.get("FC_BRIDGE_FAST_PATH", "") == "0":
            fast_path = False
        self._want_fast = fast_path
        self.fast_path = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop, created on first use."""
        with self._mutex:
            return self._get_loop()

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            # asyncio's own selector loop, whatever policy the app installed (uvloop, say):
            # the fast path relies on its internals.
            loop = self._loop = asyncio.SelectorEventLoop()
            loop.set_task_factory(task_factory)
            self.fast_path = self._want_fast is not False and _fast_path_works(loop)
            if self.fast_path:
                self._hooks = (loop._asyncgen_firstiter_hook, loop._asyncgen_finalizer_hook)  # type: ignore[attr-defined]
                self._own_fds = len(loop._selector.get_map())  # type: ignore[attr-defined]
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T], call: Call | None = None) -> T:
        """Run ``coro`` on the shared loop and return its result; callable from any thread."""
        running = asyncio._get_running_loop()
        if running is not None:
            if running is self._loop:
                coro.close()
                from ._errors import ReentrantCallError  # imported when raised (see _options)

                raise ReentrantCallError(
                    "The handler was called from inside the application it serves; "
                    "the call would wait for itself forever."
                )
            return self._in_helper_thread(lambda: self.run(coro, call))
        if call is None:
            call = Call()
        call.owner = self
        parked = first = False
        with self._mutex:
            loop = self._loop
            if loop is None or loop.is_closed():
                loop = self._get_loop()
            if self._driver is None:
                self._driver = call
            else:
                parked = call.parked = True
                call.wake = threading.Lock()
                call.wake.acquire()
                self._parked.append(call)
                # Handed over in a batch: the loop starts every call queued by the time it
                # runs _start_incoming, so only the first of them needs waking it up.
                incoming = self._incoming
                incoming.append((call, coro))
                first = len(incoming) == 1
        if parked:
            if first:
                loop.call_soon_threadsafe(self._start_incoming, loop)
            if not self._wait_parked(loop, call):
                return call.abandon()  # type: ignore[no-any-return]
        if call is self._driver:
            try:
                if not parked:  # else our task was scheduled before the loop was handed to us
                    call.task = self._start_here(loop, call, coro)
                mine = call.task
                if mine is None or not (mine.done() or call.settled):  # else: done in one step
                    self._drive(loop, call)
            finally:
                # Pass the loop to a parked thread, if any. Also when KeyboardInterrupt or
                # SystemExit escaped a callback or a first step: this caller stops waiting,
                # and its task finishes later under another driver.
                with self._mutex:
                    successor = self._parked.popleft() if self._parked else None
                    if successor is not None:
                        successor.parked = False
                    self._driver = successor
                if successor is not None:
                    successor.wake.release()
        if call.settled:
            return call.value  # type: ignore[no-any-return]
        task: asyncio.Task[T] = call.task  # type: ignore[assignment]
        return task.result()

    def _wait_parked(self, loop: asyncio.AbstractEventLoop, call: Call) -> bool:
        """Sleep until our task is done or the loop is handed to us; False if we gave up."""
        limit = call.wait_limit()
        if call.wake.acquire(timeout=-1 if limit is None else max(limit, 0)):
            return True
        with self._mutex:
            if not call.parked:  # released, or about to be: just now
                gave_up = False
            else:
                call.parked = False
                call.abandoned = True
                self._parked.remove(call)
                gave_up = True
        if not gave_up:
            call.wake.acquire()
            return True
        task = call.task
        if task is not None:
            loop.call_soon_threadsafe(task.cancel)
        return False

    def _start_incoming(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the tasks of the calls handed over since this was scheduled. On the loop."""
        with self._mutex:
            incoming, self._incoming = self._incoming, []
        for call, coro in incoming:
            try:
                self._start_parked(loop, call, coro)
            except Exception as exc:  # reported as a callback's would be; the others still start
                loop.call_exception_handler(
                    {"message": "Exception starting a handed-over call", "exception": exc}
                )

    def _start_parked(
        self, loop: asyncio.AbstractEventLoop, call: Call, coro: Coroutine[Any, Any, Any]
    ) -> None:
        if call.abandoned:  # its thread stopped waiting: nobody wants the result any more
            coro.close()
            return
        call.task = task = asyncio.Task(coro, loop=loop, name=call.name)
        task.add_done_callback(call.task_done)
        call.suspended(loop, task)

    def _finished(self, call: Call) -> None:
        """A call's task is done or settled (on the loop): tell whoever waits on it."""
        if call is self._driver:
            # Ends run_forever after this iteration: the driver's own work is done. (Callbacks
            # run only there and in _start_here's pass, which comes before the driver's task.)
            asyncio.get_running_loop().stop()
            return
        with self._mutex:
            if not call.parked:  # it gave up waiting, or was told already
                return
            call.parked = False
            self._parked.remove(call)
        call.wake.release()

    def _start_here(
        self, loop: asyncio.AbstractEventLoop, call: Call, coro: Coroutine[Any, Any, T]
    ) -> asyncio.Task[T]:
        """Create the driver's task and take its first step right here, in this thread.

        Most requests never wait for I/O: their first step is the whole request. Taking it here
        skips run_forever (its setup and teardown, a pass polling I/O and timers), which costs
        more than the rest of the bridge together. It is what the loop's next iteration would
        do, so callbacks due before it, and I/O and timers unpolled for POLL_INTERVAL, get one
        pass of the loop first: background tasks keep their pace while requests keep coming.
        A loop with no timer, no signal handler and no file to watch but its own self-pipe has
        nothing to poll: the pass is skipped (``_waits_for_events``).
        Not loop.create_task: the task factory is for tasks the app starts.
        """
        call.thread = thread = threading.get_ident()
        if not self.fast_path:  # the public path: run_forever steps the task
            task = asyncio.Task(coro, loop=loop, name=call.name)
            task.add_done_callback(call.task_done)
            # Right after the task's first step: only a task that has to wait arms its bounds.
            loop.call_soon(_after_first_step, loop, call, task)
            return task
        poll = bool(loop._ready)  # type: ignore[attr-defined]
        if not poll and time.monotonic() - self._polled > POLL_INTERVAL:
            if self._waits_for_events(loop):
                poll = True
            else:  # no timer, no signal handler, no file but the loop's own: nothing to poll
                self._polled = time.monotonic()
        try:
            task = _first_step_here(loop, coro, thread, poll, self._hooks, call.name)
        finally:
            if poll:
                self._polled = time.monotonic()
        if not task.done():
            task.add_done_callback(call.task_done)
            call.suspended(loop, task)
        return task

    def _waits_for_events(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a pass of the loop could find anything to do: a timer, a signal handler, or a
        file (a socket, say) watched besides the loop's own self-pipe."""
        return bool(
            loop._scheduled  # type: ignore[attr-defined]
            or getattr(loop, "_signal_handlers", None)  # Unix loops only
            or len(loop._selector.get_map()) > self._own_fds  # type: ignore[attr-defined]
        )

    def _drive(self, loop: asyncio.AbstractEventLoop, call: Call) -> None:
        """Run the loop until the call's task is done (or the call settled)."""
        task = call.task
        while not call.settled and (task is None or not task.done()):
            try:
                loop.run_forever()
            finally:
                self._polled = time.monotonic()
            task = call.task  # a parked call handed the loop may find its task made since

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
            # Never left over when a close succeeds (closing runs the loop, which starts them);
            # if it were, the next loop's first hand-over must still wake it.
            self._incoming = []
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


def _after_first_step(loop: asyncio.AbstractEventLoop, call: Call, task: asyncio.Task[Any]) -> None:
    if not task.done():
        call.suspended(loop, task)


def _first_step_here(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, T],
    thread: int,
    poll: bool,
    hooks: tuple[Any, Any],
    name: str | None = None,
) -> asyncio.Task[T]:
    """A task for ``coro`` whose first step is taken now, in this thread, as the loop would;
    with ``poll``, after one pass of the loop (ready callbacks, I/O and timers due, no wait).

    Uses asyncio internals (``_thread_id``, the asyncgen hooks, ``_set_running_loop``,
    ``_ready``, ``_stopping``, ``_run_once``): ``_fast_path_works`` checks them before the loop
    is first used. The pass is ``run_forever``'s own step, without its setup and teardown (a
    quarter of its cost); ``_stopping`` makes it poll without waiting, as ``loop.stop()`` would.
    ``hooks`` are the loop's async generator hooks (firstiter, finalizer), installed for the
    step as ``run_forever`` installs them.
    ``name`` names the task (a request's is named after its request id).
    """
    before = sys.get_asyncgen_hooks()
    loop._thread_id = thread  # type: ignore[attr-defined]  # is_running()
    sys.set_asyncgen_hooks(*hooks)
    asyncio._set_running_loop(loop)
    try:
        if poll:
            loop._stopping = True  # type: ignore[attr-defined]
            try:
                loop._run_once()  # type: ignore[attr-defined]
            except BaseException:  # KeyboardInterrupt from a callback: the request never ran
                coro.close()
                raise
            finally:
                loop._stopping = False  # type: ignore[attr-defined]
        if EAGER_TASKS:  # pragma: >=3.12 cover
            return asyncio.Task(coro, loop=loop, name=name, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        task = asyncio.Task(coro, loop=loop, name=name)  # pragma: <3.12 cover
        # Its step is the handle it has just put last in the ready queue (not first: the pass
        # above may have left callbacks there), unless another thread handed one over since:
        # then the step stays queued, and the loop takes both in order.
        ready = loop._ready  # type: ignore[attr-defined]  # pragma: <3.12 cover
        step = ready.pop()  # pragma: <3.12 cover
        callback = step._callback  # pragma: <3.12 cover
        if getattr(callback, "__self__", None) is task:  # pragma: <3.12 cover
            # Handle._run without its frame: a task's step takes no arguments and raises
            # nothing but SystemExit and KeyboardInterrupt, which Handle._run re-raises too.
            step._context.run(callback)
        else:  # pragma: <3.12 cover
            ready.append(step)
        return task  # pragma: <3.12 cover
    finally:
        asyncio._set_running_loop(None)
        sys.set_asyncgen_hooks(*before)
        loop._thread_id = None  # type: ignore[attr-defined]


async def _probe() -> tuple[bool, object, object, tuple[Any, Any]]:
    loop = asyncio.get_running_loop()
    return loop.is_running(), asyncio.current_task(), loop, sys.get_asyncgen_hooks()


def _fast_path_works(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether this Python's asyncio has what the fast path needs and it behaves as expected.

    Checked once per loop. If not, requests take the public path (``run_forever``), which is
    correct and slower, and one warning says so.
    """
    try:
        ready = loop._ready  # type: ignore[attr-defined]
        assert isinstance(ready, deque) and not ready
        assert loop._thread_id is None  # type: ignore[attr-defined]
        assert loop._stopping is False  # type: ignore[attr-defined]
        assert isinstance(loop._scheduled, list) and not loop._scheduled  # type: ignore[attr-defined]
        assert len(loop._selector.get_map()) >= 0  # type: ignore[attr-defined]
        hooks = (loop._asyncgen_firstiter_hook, loop._asyncgen_finalizer_hook)  # type: ignore[attr-defined]
        polled: list[bool] = []
        loop.call_soon(polled.append, True)
        probe = _probe()
        try:
            task = _first_step_here(loop, probe, threading.get_ident(), True, hooks)
        except BaseException:
            probe.close()
            raise
        assert polled == [True] and loop._stopping is False  # type: ignore[attr-defined]
        running, current, seen, installed = task.result()
        assert running is True and current is task and seen is loop
        assert tuple(installed) == hooks
        assert not loop.is_running() and asyncio._get_running_loop() is None
        assert not ready
    except Exception as exc:  # AttributeError, AssertionError, whatever a new asyncio does
        warnings.warn(
            f"fc_bridge: this Python's asyncio differs from what the bridge's fast path "
            f"expects ({type(exc).__name__}: {exc}); requests take the slower public path.",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True
