"""A request's time bounds (README, "Timeouts"), armed only once the request has to wait.

Most requests finish in the first step of their task and never load this module: cold starts
pay for it only when an app first awaits I/O. A request still running at its timeout is
cancelled, with its tasks, and answered 504, after one log record showing where it was
waiting. If the app swallows the cancellation, the caller is released with the 504 ``grace``
seconds later and the app left to finish on its own. A response complete while the app goes on
(a Starlette background task) is returned after ``task_timeout``. The tasks a request started
get ``task_timeout`` seconds to finish before FC may freeze the instance.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ._options import grace

if TYPE_CHECKING:
    from ._http import Exchange, HTTPHandler

logger = logging.getLogger("fc_bridge.http")


def arm(exchange: Exchange, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    """Bound ``exchange``, whose ``task`` did not finish in one step, until the task is done
    (the exchange's ``task_done`` disarms it). On the loop."""
    bound(exchange, loop, task)
    if exchange.complete() and exchange.buffered:
        arm_background(exchange, loop)


def bound(exchange: Exchange, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    """Arm ``exchange``'s timeout, which cancels ``task``, until the caller ends it
    (:func:`disarm`) when the request is over: ``task`` may outlive it (a server's task).
    ``exchange.timers`` starts empty: the timers a timeout arms, which disarm cancels too."""
    exchange.task = task
    exchange.timers = []
    timeout = exchange.timeout  # worked out on each read: read once
    if timeout is not None:
        deadlines_of(loop).add(exchange, exchange.started + timeout)


def deadlines_of(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The loop's deadlines: nearly always the one loop's, looked up once; with loops running
    side by side (a bridge per thread, each on a loop of its own), each loop keeps its own."""
    global _deadlines
    deadlines = _deadlines
    if deadlines is None or deadlines.loop is not loop:
        deadlines = _by_loop.get(loop)
        if deadlines is None:
            deadlines = _by_loop[loop] = Deadlines(loop)
            _loops.append(loop)  # a deque: appended and popped safely from any thread
            if len(_loops) > MAX_LOOPS:  # forget the oldest: closed, nearly always (a loop
                _by_loop.pop(_loops.popleft(), None)  # forgotten gets a new one, both work)
        _deadlines = deadlines
    return deadlines


class Deadlines:
    """The deadlines of a loop's requests on one timer, armed for the earliest: a request costs
    an entry in a dict, not a timer of its own to make and cancel (most end long before their
    deadline). The timer stays armed when its request ends early; it then finds the next.
    A request's deadline is its timeout until its buffered response is complete, then the end
    of the wait for the app to return (``task_timeout``): see :func:`_due`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[Exchange, float] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.at = math.inf  # when the timer fires

    def add(self, exchange: Exchange, deadline: float) -> None:
        self.due[exchange] = deadline
        exchange.deadlines = self
        if deadline < self.at:
            if self.timer is not None:
                self.timer.cancel()
            self._arm(deadline)

    def _arm(self, at: float) -> None:
        self.at = at
        self.timer = self.loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self.timer = None
        self.at = math.inf
        # A timer may fire a clock tick early; a request it ends a millisecond early is no
        # matter, a timer armed again and again for the same instant would be.
        now = self.loop.time() + EARLY
        due = self.due
        expired = [exchange for exchange, deadline in due.items() if deadline <= now]
        for exchange in expired:
            del due[exchange]
        if due:
            self._arm(min(due.values()))
        for exchange in expired:  # each in a callback of its own, as with a timer each
            self.loop.call_soon(_due, exchange)


_deadlines: Deadlines | None = None  # the last loop's (nearly always the only loop)
_by_loop: dict[asyncio.AbstractEventLoop, Deadlines] = {}  # the latest MAX_LOOPS loops'
_loops: deque[asyncio.AbstractEventLoop] = deque()  # the same loops, oldest first
MAX_LOOPS = 64
EARLY = 0.001


def arm_background(exchange: Exchange, loop: asyncio.AbstractEventLoop) -> None:
    """The buffered response is complete: return it after ``task_timeout`` if the app goes
    on (a streamed one has been sent already). Its deadline moves there, in the loop's
    deadlines rather than a timer of its own, made and cancelled for every request that
    waited: a complete response leaves the timeout nothing to end (see _expire)."""
    deadlines = exchange.deadlines or deadlines_of(loop)  # none yet if it has no timeout
    deadlines.add(exchange, loop.time() + exchange.handler.task_timeout)


def _due(exchange: Exchange) -> None:
    """A request's deadline passed: its timeout, or, once its buffered response is complete,
    the end of the wait for the app to return."""
    if exchange.buffered and exchange.complete():
        _overran(exchange)
    else:
        _expire(exchange)


def disarm(exchange: Exchange) -> None:
    """End a request's time bounds."""
    deadlines = exchange.deadlines
    if deadlines is not None:
        deadlines.due.pop(exchange, None)
    for timer in exchange.timers or ():
        timer.cancel()


def _expire(exchange: Exchange) -> None:
    task = exchange.task
    if task is None or task.done() or exchange.complete():
        return
    exchange.expired = True
    logger.error(
        "Answering 504 [request_id=%s]: the request did not finish within %gs; "
        "the app was waiting at:\n%s",
        exchange.request_id,
        exchange.timeout,
        _stack().await_stack(task),
    )
    task.cancel()
    for spawned in exchange.spawned or ():
        spawned.cancel()
    loop = asyncio.get_running_loop()
    timers = exchange.timers
    assert timers is not None  # set by bound(), which comes before any deadline
    timers.append(loop.call_later(grace(exchange.timeout or 0.0), _settle_late, exchange))


def _settle_late(exchange: Exchange) -> None:
    task = exchange.task
    if task is not None and not task.done():
        logger.error(
            "The app ignored the cancellation of its timed-out request and still runs "
            "[request_id=%s]; answering 504 without it.",
            exchange.request_id,
        )
        exchange.settle(exchange.timed_out())


def _overran(exchange: Exchange) -> None:
    task = exchange.task
    if task is not None and not task.done() and not exchange.returned:
        logger.warning(
            "The app still runs %gs after completing its response (a background task?) "
            "[request_id=%s]; returning the response, the app goes on while later "
            "requests run the loop. It was waiting at:\n%s",
            exchange.handler.task_timeout,
            exchange.request_id,
            _stack().await_stack(task),
        )
        exchange.settle(exchange.response(None))


def wait_limit(exchange: Exchange) -> float | None:
    """How long a parked thread waits for the loop before answering 504 itself."""
    timeout = exchange.timeout
    if timeout is None:
        return None
    return exchange.started + timeout + 2 * grace(timeout) - time.monotonic()


def abandoned(exchange: Exchange) -> None:
    """Log why a thread stopped waiting for the loop (its driver blocks it)."""
    owner = exchange.owner
    driver = owner._driver if owner is not None else None
    frames = sys._current_frames()
    frame = frames.get(driver.thread) if driver is not None and driver.thread else None
    logger.error(
        "Answering 504 [request_id=%s]: the request waited %gs for the event loop, which "
        "another request's thread keeps busy without awaiting (blocking code in an async "
        "endpoint?). That thread is at:\n%s",
        exchange.request_id,
        exchange.timeout,
        _stack().frame_stack(frame) if frame is not None else "  (unknown)",
    )


async def wait_for_spawned(
    handler: HTTPHandler, spawned: list[asyncio.Task[Any]], request_id: str
) -> None:
    """Let the tasks a request started finish: FC may freeze the instance right after.

    Bounded by ``task_timeout``; tasks still running then are named in a warning and left
    to progress whenever later requests run the loop (pre_freeze waits for them again).
    """
    handler.leftovers.update(spawned)  # pre_freeze may come before this wait is over
    pending = await wait_for_tasks(spawned, handler.task_timeout)
    if pending:
        logger.warning(
            "%d task(s) the request started still run after %gs and will be frozen "
            "with the instance [request_id=%s]: %s",
            len(pending),
            handler.task_timeout,
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


async def settle_leftovers(handler: HTTPHandler, request_id: str) -> None:
    """pre_freeze: give the tasks earlier requests left running ``task_timeout`` seconds."""
    pending = await wait_for_tasks(list(handler.leftovers), handler.task_timeout)
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
    """The stack formatting module, imported when a log record first needs it."""
    from . import _stack as module

    return module


def _names(tasks: list[asyncio.Task[Any]]) -> str:
    return ", ".join(sorted(task.get_name() for task in tasks))
