"""The fast path (a request's first step taken in the calling thread) is pinned and fenced."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import fc_bridge._loop
from fc_bridge import Bridge
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Receive, Scope, Send

from .conftest import fc_call

ROOT = Path(__file__).resolve().parent.parent
seen: list[tuple[bool, int]] = []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    loop = asyncio.get_running_loop()
    seen.append((loop.is_running(), threading.get_ident()))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class CountingSelector:
    """Wraps the loop's selector: how many times the loop polled for I/O."""

    def __init__(self, selector: Any) -> None:
        self.selector = selector
        self.polls = 0

    def select(self, timeout: float | None = None) -> Any:
        self.polls += 1
        return self.selector.select(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.selector, name)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, loop: SharedLoop) -> CountingSelector:
    # Requests never wait for the loop's periodic poll in these tests.
    monkeypatch.setattr(fc_bridge._loop, "POLL_INTERVAL", 3600.0)
    seen.clear()
    fc_call(Bridge(app, lifespan="off", loop=loop))  # makes the loop, polls once
    counter = CountingSelector(loop.loop._selector)  # type: ignore[attr-defined]
    loop.loop._selector = counter  # type: ignore[attr-defined]
    return counter


def test_a_request_that_needs_no_io_takes_no_pass_of_the_loop(
    loop: SharedLoop, counted: CountingSelector
) -> None:
    handler = Bridge(app, lifespan="off", loop=loop)
    for _ in range(50):
        assert fc_call(handler).status == 200
    assert counted.polls == 0
    assert loop.fast_path


def test_callbacks_due_run_in_one_pass_before_the_next_request_and_an_interrupt_there_stops_it(
    loop: SharedLoop, counted: CountingSelector
) -> None:
    paths: list[str] = []
    ran: list[str] = []

    def interrupt() -> None:
        ran.append("callback")
        raise KeyboardInterrupt

    async def arming(scope: Scope, receive: Receive, send: Send) -> None:
        paths.append(scope["path"])
        if scope["path"] == "/callback":  # due on the loop's next pass, after this request
            asyncio.get_running_loop().call_soon(ran.append, "callback")
        if scope["path"] == "/interrupt":
            asyncio.get_running_loop().call_soon(interrupt)
        await app(scope, receive, send)

    handler = Bridge(arming, lifespan="off", loop=loop)
    assert fc_call(handler, "GET", "/callback").status == 200
    assert ran == []  # the request finished in its first step: no pass of the loop after it
    assert fc_call(handler, "GET", "/next").status == 200
    assert ran == ["callback"] and counted.polls == 1  # one pass, before the request
    assert fc_call(handler, "GET", "/interrupt").status == 200
    with pytest.raises(KeyboardInterrupt):
        fc_call(handler, "GET", "/never")  # the interrupt leaves the handler, as in run_forever
    assert fc_call(handler, "GET", "/after").status == 200
    # The interrupted request never reached the app, and its coroutine was closed, not leaked
    # (an unawaited coroutine's warning fails the test suite).
    assert paths == ["/callback", "/next", "/interrupt", "/after"]


def test_the_first_step_taken_is_the_requests_own_whatever_the_pass_before_it_queued(
    loop: SharedLoop, counted: CountingSelector, caplog: pytest.LogCaptureFixture
) -> None:
    # The pass before a request runs a callback that queues two more and cancels one: the
    # request's first step is still taken at once, and the cancelled callback is skipped, not
    # run (asyncio would log "Exception in callback None()").
    order: list[str] = []

    def queue_two_cancel_one() -> None:
        running = asyncio.get_running_loop()
        running.call_soon(order.append, "cancelled").cancel()
        running.call_soon(order.append, "queued")

    async def arming(scope: Scope, receive: Receive, send: Send) -> None:
        order.append(scope["path"])
        if scope["path"] == "/arm":
            asyncio.get_running_loop().call_soon(queue_two_cancel_one)
        await app(scope, receive, send)

    handler = Bridge(arming, lifespan="off", loop=loop)
    with caplog.at_level(logging.ERROR):
        for path in ("/arm", "/next", "/last"):
            assert fc_call(handler, "GET", path).status == 200
    assert "Exception in callback" not in caplog.text
    # /next in its first step, the queued callback in the pass before /last.
    assert order == ["/arm", "/next", "queued", "/last"]
    assert counted.polls == 2


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ takes it with eager_start")
def test_a_callback_queued_between_a_task_and_its_first_step_leaves_the_step_to_the_loop(
    loop: SharedLoop, counted: CountingSelector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another thread may hand a callback over right after the task queued its first step:
    # the step is then not the last one queued, and is left for the loop, which takes both in
    # the order they came.
    order: list[str] = []
    running = loop.loop
    queue = running.call_soon

    def call_soon(callback: Any, *args: Any, context: Any = None) -> Any:
        handle = queue(callback, *args, context=context)
        if not order:  # the first request's task, as it queues its step
            queue(order.append, "handed over")
        return handle

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        order.append(scope["path"])
        await app(scope, receive, send)

    monkeypatch.setattr(running, "call_soon", call_soon)
    handler = Bridge(recording, lifespan="off", loop=loop)
    assert fc_call(handler, "GET", "/first").status == 200
    assert order == ["/first", "handed over"]
    assert counted.polls == 2  # the loop took them: the step, then the done callback


def test_the_periodic_pass_is_skipped_while_the_loop_has_nothing_to_poll(
    loop: SharedLoop, counted: CountingSelector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fc_bridge._loop, "POLL_INTERVAL", 0.0)  # every request may poll
    handler = Bridge(app, lifespan="off", loop=loop)
    for _ in range(5):  # no timer, no signal handler, no file but the loop's self-pipe
        assert fc_call(handler).status == 200
    assert counted.polls == 0

    running = loop.loop
    timer = running.call_later(3600, lambda: None)  # a timer: each request polls first
    for _ in range(3):
        assert fc_call(handler).status == 200
    assert counted.polls == 3
    timer.cancel()
    assert fc_call(handler).status == 200  # the pass drops the cancelled timer
    assert counted.polls == 4
    for _ in range(3):
        assert fc_call(handler).status == 200
    assert counted.polls == 4

    reader, writer = socket.socketpair()  # a file to watch: each request polls, and sees it
    got: list[bytes] = []
    running.add_reader(reader, lambda: got.append(reader.recv(10)))
    try:
        writer.send(b"ping")
        assert fc_call(handler).status == 200
        assert got == [b"ping"] and counted.polls == 5
    finally:
        running.remove_reader(reader)
        reader.close()
        writer.close()

    running.add_signal_handler(signal.SIGUSR1, lambda: None)  # a signal handler: polls too
    try:
        assert fc_call(handler).status == 200
        assert counted.polls == 6
    finally:
        running.remove_signal_handler(signal.SIGUSR1)
    assert fc_call(handler).status == 200
    assert counted.polls == 6


def test_an_uncontended_request_runs_in_the_calling_thread_on_a_running_loop(
    loop: SharedLoop, counted: CountingSelector
) -> None:
    seen.clear()
    fc_call(Bridge(app, lifespan="off", loop=loop))
    # is_running() is what asyncio code checks (and asyncio internals rely on).
    assert seen == [(True, threading.get_ident())]


def test_the_public_path_serves_requests_with_a_pass_each(loop: SharedLoop) -> None:
    slow = SharedLoop(fast_path=False)
    try:
        seen.clear()
        handler = Bridge(app, lifespan="off", loop=slow)
        fc_call(handler)
        counter = CountingSelector(slow.loop._selector)  # type: ignore[attr-defined]
        slow.loop._selector = counter  # type: ignore[attr-defined]
        for _ in range(5):
            assert fc_call(handler).status == 200
        assert counter.polls >= 5
        assert not slow.fast_path
        assert all(running for running, _ in seen)
    finally:
        slow.close()


def test_an_asyncio_without_the_expected_internals_falls_back_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def changed(*args: Any) -> Any:
        raise AttributeError("'_UnixSelectorEventLoop' object has no attribute '_ready'")

    monkeypatch.setattr(fc_bridge._loop, "_first_step_here", changed)
    fresh = SharedLoop()
    try:
        with pytest.warns(RuntimeWarning, match="requests take the slower public path") as caught:
            handler = Bridge(app, lifespan="off", loop=fresh)
            assert fc_call(handler).status == 200
            assert fc_call(handler).status == 200
        assert len(caught) == 1
        assert not fresh.fast_path
    finally:
        fresh.close()


def test_the_request_suite_passes_on_the_public_path() -> None:
    # The whole request suite, in a fresh interpreter forced onto the fallback driver.
    suite = [
        "tests/test_wsgi_scope.py",
        "tests/test_wsgi_response.py",
        "tests/test_event.py",
        "tests/test_errors.py",
        "tests/test_limits.py",
        "tests/test_disconnect.py",
        "tests/test_spawned_tasks.py",
        "tests/test_lifespan.py",
        "tests/test_reliability.py",
        "tests/test_secrets.py",
    ]
    env = {**os.environ, "FC_BRIDGE_FAST_PATH": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *suite],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_the_environment_switch_is_what_the_fallback_suite_relies_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FC_BRIDGE_FAST_PATH", "0")
    forced = SharedLoop()
    try:
        fc_call(Bridge(app, lifespan="off", loop=forced))
        assert not forced.fast_path
    finally:
        forced.close()
