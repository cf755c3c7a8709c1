"""Lifespan: exactly once per process, started by the initializer or the first request."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fc_bridge import Bridge, ConfigError, LifespanError
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Receive, Scope, Send

from .conftest import FCContext, fc_call

events: list[str] = []


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    events.clear()


def starlette_app(*, fail_startup: bool = False, fail_shutdown: bool = False) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        if fail_startup:
            raise RuntimeError("database unreachable")
        yield {"pool": "pool-1"}
        events.append("shutdown")
        if fail_shutdown:
            raise RuntimeError("flush failed")

    async def endpoint(request: Request) -> Response:
        events.append("request")
        return JSONResponse({"pool": request.state.pool})

    return Starlette(routes=[Route("/", endpoint)], lifespan=lifespan)


async def no_lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope type {scope['type']}")
    events.append("request")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body"})


def test_initializer_runs_startup_once_and_pre_stop_runs_shutdown(loop: SharedLoop) -> None:
    handler = Bridge(starlette_app(), loop=loop)
    handler.initializer(FCContext())
    handler.initializer(FCContext())
    responses = [fc_call(handler) for _ in range(3)]
    handler.pre_stop(FCContext())
    assert [r.body for r in responses] == [b'{"pool":"pool-1"}'] * 3
    assert events == ["startup", "request", "request", "request", "shutdown"]


def test_startup_runs_on_the_first_request_without_an_initializer(loop: SharedLoop) -> None:
    handler = Bridge(starlette_app(), loop=loop)
    assert fc_call(handler).body == b'{"pool":"pool-1"}'
    fc_call(handler)
    handler.initializer(None)  # a late initializer does not start it again
    assert events == ["startup", "request", "request"]


def test_concurrent_first_requests_start_it_once(loop: SharedLoop) -> None:
    handler = Bridge(starlette_app(), loop=loop)
    barrier = threading.Barrier(8)
    bodies: list[bytes] = []

    def first_request() -> None:
        barrier.wait()
        bodies.append(fc_call(handler).body)

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bodies == [b'{"pool":"pool-1"}'] * 8
    assert events.count("startup") == 1


def test_lifespan_scope_carries_state_and_the_initializers_context(loop: SharedLoop) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    context = FCContext(request_id="init-1")
    handler = Bridge(app, loop=loop)
    handler.initializer(context)
    handler.pre_stop(context)
    assert scopes == [
        {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": {},
            "fc.context": context,
        }
    ]


def test_auto_tolerates_an_app_without_lifespan(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Bridge(no_lifespan_app, loop=loop)
    with caplog.at_level(logging.INFO, logger="fc_bridge"):
        handler.initializer(None)
        response = fc_call(handler)
        handler.pre_stop(None)
    assert response.status == 204
    assert events == ["request"]
    assert [r.getMessage() for r in caplog.records] == [
        "ASGI 'lifespan' protocol appears unsupported "
        "(ValueError('unsupported scope type lifespan')); continuing."
    ]


def test_auto_tolerates_an_app_that_returns_from_lifespan(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await no_lifespan_app(scope, receive, send)

    handler = Bridge(app, loop=loop)
    handler.initializer(None)
    assert fc_call(handler).status == 204


def test_off_never_calls_the_lifespan(loop: SharedLoop) -> None:
    handler = Bridge(starlette_app(), lifespan="off", loop=loop)
    handler.initializer(None)
    handler.pre_stop(None)
    assert events == []


def test_on_fails_the_initializer_and_every_request_answers_500(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Bridge(starlette_app(fail_startup=True), lifespan="on", loop=loop)
    with pytest.raises(
        LifespanError, match=r"ASGI lifespan startup failed: .*database unreachable"
    ):
        handler.initializer(None)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        responses = [fc_call(handler, context=FCContext(request_id=f"r{i}")) for i in range(2)]
    assert [(r.status, r.body) for r in responses] == [(500, b"Internal Server Error")] * 2
    assert events == ["startup"]  # never retried, never a request on a half-started app
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":", 1)[0] for m in messages] == [
        "Answering 500 [request_id=r0]",
        "Answering 500 [request_id=r1]",
    ]
    assert all("database unreachable" in m for m in messages)
    handler.pre_stop(None)  # nothing to shut down, and no second error
    assert events == ["startup"]


def test_a_startup_failure_the_app_reports_fails_in_auto_mode_too(loop: SharedLoop) -> None:
    handler = Bridge(starlette_app(fail_startup=True), loop=loop)
    with pytest.raises(LifespanError, match="database unreachable"):
        handler.initializer(None)
    assert fc_call(handler).status == 500


def test_on_requires_the_app_to_support_lifespan(loop: SharedLoop) -> None:
    handler = Bridge(no_lifespan_app, lifespan="on", loop=loop)
    with pytest.raises(
        LifespanError,
        match=r"ASGI lifespan startup failed: the app raised ValueError\('unsupported scope",
    ):
        handler.initializer(None)
    assert fc_call(handler).status == 500


def test_on_rejects_a_lifespan_that_returns_before_startup(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

    handler = Bridge(app, lifespan="on", loop=loop)
    with pytest.raises(
        LifespanError, match=r"^ASGI lifespan startup failed: the app returned before completing"
    ):
        handler.initializer(None)


def test_shutdown_failure_fails_pre_stop(loop: SharedLoop) -> None:
    handler = Bridge(starlette_app(fail_shutdown=True), loop=loop)
    handler.initializer(None)
    with pytest.raises(LifespanError, match=r"ASGI lifespan shutdown failed: .*flush failed"):
        handler.pre_stop(None)
    assert events == ["startup", "shutdown"]


def test_shutdown_exception_without_a_failed_message_fails_pre_stop(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("crashed while stopping")

    handler = Bridge(app, loop=loop)
    handler.initializer(None)
    with pytest.raises(LifespanError, match=r"shutdown failed: the app raised RuntimeError"):
        handler.pre_stop(None)


def test_pre_stop_without_startup_is_a_no_op(loop: SharedLoop) -> None:
    handler = Bridge(starlette_app(), loop=loop)
    handler.pre_stop(None)
    assert events == []


def test_lifespan_that_ends_early_does_not_hang_pre_stop(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            raise RuntimeError("background worker died")
        await no_lifespan_app(scope, receive, send)

    handler = Bridge(app, loop=loop)
    with caplog.at_level(logging.ERROR):
        handler.initializer(None)
        assert fc_call(handler).status == 204
        handler.pre_stop(None)
    assert [r.getMessage() for r in caplog.records] == [
        "Exception in ASGI lifespan (phase running)"
    ]


def test_lifespan_that_returns_after_startup_does_not_hang_pre_stop(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})

    handler = Bridge(app, loop=loop)
    handler.initializer(None)
    handler.pre_stop(None)


def test_lifespan_that_returns_during_shutdown_is_stopped(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        events.append("stopping")

    handler = Bridge(app, loop=loop)
    handler.initializer(None)
    handler.pre_stop(None)
    assert events == ["stopping"]


def test_unexpected_lifespan_message_is_an_error(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    handler = Bridge(app, lifespan="on", loop=loop)
    with pytest.raises(
        LifespanError,
        match=r"Unexpected ASGI lifespan message 'lifespan.shutdown.complete' in phase 'starting'",
    ):
        handler.initializer(None)


def test_failed_message_without_text_names_the_message_type(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed"})

    with pytest.raises(
        LifespanError, match=r"^ASGI lifespan startup failed: lifespan\.startup\.failed$"
    ):
        Bridge(app, loop=loop).initializer(None)


def test_receive_after_shutdown_keeps_answering_shutdown(loop: SharedLoop) -> None:
    received: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(await receive())
        await send({"type": "lifespan.startup.complete"})
        received.append(await receive())
        received.append(await receive())
        await send({"type": "lifespan.shutdown.complete"})

    handler = Bridge(app, loop=loop)
    handler.initializer(None)
    handler.pre_stop(None)
    assert [m["type"] for m in received] == [
        "lifespan.startup",
        "lifespan.shutdown",
        "lifespan.shutdown",
    ]


@pytest.mark.parametrize("mode", ["yes", "", None, "ON"])
def test_lifespan_mode_is_validated(mode: Any) -> None:
    with pytest.raises(ConfigError, match=f'lifespan must be "auto", "on" or "off", got {mode!r}.'):
        Bridge(no_lifespan_app, lifespan=mode)


def test_app_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="app must be an ASGI application"):
        Bridge("main:app")  # type: ignore[arg-type]


def test_limits_must_be_limits() -> None:
    with pytest.raises(ConfigError, match=r"limits must be a fc_bridge\.Limits, got"):
        Bridge(no_lifespan_app, limits={"request_body": 1})  # type: ignore[arg-type]


def test_system_exit_in_the_lifespan_is_not_swallowed(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        Bridge(app, loop=loop).initializer(None)
