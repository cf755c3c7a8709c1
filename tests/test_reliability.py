"""Nothing a request or an app does may hang the handler or take the instance down (issue 7)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from fc_bridge import Bridge, ConfigError, LifespanError, Limits
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Message, Receive, Scope, Send

from .conftest import FCContext, Function, fc_call


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def sleeps_forever_in_the_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return
    if scope["path"] == "/ok":
        await ok(scope, receive, send)
        return
    await asyncio.sleep(3600)


def context(timeout: object = 60, request_id: str = "req-1") -> FCContext:
    return FCContext(request_id=request_id, function=Function(timeout=timeout))  # type: ignore[arg-type]


def body_json(response: Any) -> Any:
    return json.loads(response.body)


# Timeouts.


def test_a_hung_request_is_answered_504_with_where_it_was_stuck(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Bridge(sleeps_forever_in_the_endpoint, timeout=0.2, loop=loop)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        response = fc_call(handler, context=context(request_id="stuck-1"))
    assert time.monotonic() - started < 5
    assert response.status == 504
    assert body_json(response)["ErrorCode"] == "FunctionTimeout"
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(records) == 1
    message = records[0].getMessage()
    assert message.startswith("Answering 504 [request_id=stuck-1]: the request did not finish")
    assert "in sleeps_forever_in_the_endpoint" in message
    assert "await asyncio.sleep(3600)" in message
    # The loop stays healthy: the next request is served normally.
    assert fc_call(handler, "GET", "/ok").status == 200


class Unlookable:
    """An awaitable's iterator (the app's own) whose every missing attribute raises."""

    def __init__(self) -> None:
        self.inner = asyncio.sleep(3600).__await__()

    def __iter__(self) -> Unlookable:
        return self

    def __next__(self) -> Any:
        return next(self.inner)

    def send(self, value: Any) -> Any:
        return self.inner.send(value)

    def throw(self, *args: Any) -> Any:
        return self.inner.throw(*args)

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} here")


class WaitsOddly:
    def __await__(self) -> Any:
        return Unlookable()


async def waits_oddly(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await WaitsOddly()


def test_a_request_waiting_on_an_awaitable_that_cannot_be_looked_into_still_times_out(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    # The 504's log record shows where the request waits; an awaitable whose attributes raise
    # ends that stack, and the request is answered all the same.
    with caplog.at_level(logging.ERROR):
        response = fc_call(Bridge(waits_oddly, timeout=0.2, loop=loop))
    assert response.status == 504
    message = caplog.records[0].getMessage()
    assert "in waits_oddly" in message
    assert message.endswith("(in a Unlookable that cannot be looked into)")


def test_the_auto_timeout_comes_from_the_context_less_a_margin(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Bridge(sleeps_forever_in_the_endpoint, loop=loop)
    started = time.monotonic()
    # FC gives function.timeout as a string at times: 1 s less a fifth = 0.8 s.
    response = fc_call(handler, context=context(timeout="1"))
    elapsed = time.monotonic() - started
    assert response.status == 504
    assert 0.7 < elapsed < 5
    assert "did not finish within 0.8s" in caplog.text


def test_timeout_none_disables_the_bound(loop: SharedLoop) -> None:
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        await asyncio.sleep(0.3)
        await ok(scope, receive, send)

    # The context says 0.25 s, which would cut the request off; None keeps it going.
    assert fc_call(Bridge(slow, timeout=None, loop=loop), context=context(0.25)).status == 200
    assert fc_call(Bridge(slow, loop=loop), context=context(0.25)).status == 504


@pytest.mark.parametrize("bad", [-1, "soon", float("inf"), True])
def test_timeout_option_is_validated(bad: object) -> None:
    with pytest.raises(ConfigError, match=r'timeout \(or "auto"\) must be a number of seconds'):
        Bridge(ok, timeout=bad)  # type: ignore[arg-type]


def test_an_app_that_swallows_the_cancellation_is_left_behind_after_the_grace(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["path"] == "/release":
            release.set()
            await ok(scope, receive, send)
            return
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # what a careless retry loop does

    handler = Bridge(stubborn, timeout=0.2, loop=loop)
    started = time.monotonic()
    response = fc_call(handler)
    assert response.status == 504
    assert time.monotonic() - started < 5
    assert "ignored the cancellation" in caplog.text
    assert fc_call(handler, "GET", "/release").status == 200


def test_tasks_the_request_spawned_are_cancelled_with_it(loop: SharedLoop) -> None:
    cancelled: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return

        async def child() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append("child")
                raise

        task = asyncio.get_running_loop().create_task(child())
        await task

    assert fc_call(Bridge(app, timeout=0.2, loop=loop)).status == 504
    assert cancelled == ["child"]


def test_a_timeout_leaves_concurrent_requests_untouched(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(0.6)
        elif scope["path"] == "/hang":
            await asyncio.sleep(3600)
        await ok(scope, receive, send)

    handler = Bridge(app, timeout=0.3, loop=loop)
    with ThreadPoolExecutor(2) as pool:
        hang = pool.submit(fc_call, handler, "GET", "/hang")
        time.sleep(0.1)
        fine = pool.submit(fc_call, Bridge(app, timeout=2, loop=loop), "GET", "/slow")
        assert hang.result(10).status == 504
        assert fine.result(10).status == 200


def test_a_thread_parked_behind_a_blocked_loop_gives_up_with_504(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    blocking = threading.Event()
    unblock = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["path"] == "/block":
            blocking.set()
            unblock.wait(10)  # blocking code in an async endpoint: nobody else can run
        await ok(scope, receive, send)

    handler = Bridge(app, timeout=0.3, loop=loop)
    with ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(fc_call, handler, "GET", "/block")
        assert blocking.wait(5)
        started = time.monotonic()
        parked = pool.submit(fc_call, handler, "GET", "/", context=context(request_id="parked"))
        response = parked.result(10)
        assert response.status == 504
        assert time.monotonic() - started < 5
        unblock.set()
        assert blocker.result(10).status == 200
    message = next(r.getMessage() for r in caplog.records if "parked" in r.getMessage())
    assert "waited 0.3s for the event loop" in message
    assert "unblock.wait(10)" in message  # the blocking thread's stack
    assert fc_call(handler).status == 200


def test_a_background_task_that_never_ends_holds_the_response_only_task_timeout(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def forever() -> None:
        await asyncio.sleep(3600)

    async def endpoint(request: Any) -> PlainTextResponse:
        return PlainTextResponse("done", background=BackgroundTask(forever))

    app = Starlette(routes=[Route("/", endpoint)])
    handler = Bridge(app, task_timeout=0.2, timeout=None, loop=loop)
    started = time.monotonic()
    response = fc_call(handler)
    assert (response.status, response.body) == (200, b"done")
    assert time.monotonic() - started < 5
    assert "still runs 0.2s after completing its response" in caplog.text
    assert "in forever" in caplog.text


# BaseExceptions from the app.


@pytest.mark.parametrize(
    "exception", [SystemExit(3), KeyboardInterrupt(), GeneratorExit(), asyncio.CancelledError()]
)
@pytest.mark.parametrize("wait_first", [False, True], ids=["first-step", "after-await"])
def test_base_exceptions_from_the_app_are_a_500_and_the_next_request_is_served(
    loop: SharedLoop,
    caplog: pytest.LogCaptureFixture,
    exception: BaseException,
    wait_first: bool,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["path"] == "/raise":
            if wait_first:
                await asyncio.sleep(0.01)
            raise exception
        await ok(scope, receive, send)

    handler = Bridge(app, loop=loop)
    with caplog.at_level(logging.ERROR):
        assert fc_call(handler, "GET", "/raise").status == 500
    assert "Exception in ASGI application [request_id=req-1]" in caplog.text
    # From this thread and from another one.
    assert fc_call(handler, "GET", "/").status == 200
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(fc_call, handler, "GET", "/").result(10).status == 200


def test_an_interrupt_escaping_the_loop_leaves_the_handler_and_the_loop_usable(
    loop: SharedLoop,
) -> None:
    # KeyboardInterrupt in a task the app spawned (or a signal) escapes asyncio's loop
    # machinery, not the app's request: it leaves the handler, as it leaves any asyncio code.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["path"] == "/interrupt":

            async def interrupt() -> None:
                raise KeyboardInterrupt

            asyncio.get_running_loop().create_task(interrupt())
            await asyncio.sleep(0.05)
        await ok(scope, receive, send)

    handler = Bridge(app, loop=loop)
    with pytest.raises(KeyboardInterrupt):
        fc_call(handler, "GET", "/interrupt")
    assert fc_call(handler).status == 200
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(fc_call, handler).result(10).status == 200


# Lifespan waits.


async def never_starts(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.sleep(3600)  # startup never completes
    else:
        await ok(scope, receive, send)


def test_an_initializer_whose_startup_never_completes_fails_in_bounded_time(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Bridge(never_starts, loop=loop)
    started = time.monotonic()
    with pytest.raises(LifespanError, match=r"did not complete startup within 0.5s"):
        handler.initializer(context(timeout=0.5))
    assert time.monotonic() - started < 5
    assert "await asyncio.sleep(3600)  # startup never completes" in caplog.text
    assert fc_call(handler).status == 500  # never a half-started app


def test_without_an_initializer_the_first_request_is_bounded_too(loop: SharedLoop) -> None:
    handler = Bridge(never_starts, timeout=0.3, loop=loop)
    started = time.monotonic()
    assert fc_call(handler).status == 504
    assert time.monotonic() - started < 5


def test_a_shutdown_that_never_completes_fails_pre_stop_in_bounded_time(
    loop: SharedLoop,
) -> None:
    async def never_stops(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await asyncio.sleep(3600)

    handler = Bridge(never_stops, loop=loop)
    handler.initializer(context())
    with pytest.raises(LifespanError, match=r"did not complete shutdown within 0.3s"):
        handler.pre_stop(context(timeout=0.3))


def test_the_lifespan_starts_again_after_pre_stop(loop: SharedLoop) -> None:
    # FC may unfreeze an instance after pre_stop and send it requests (FC_FACTS section 8).
    phases: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                phases.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await ok(scope, receive, send)

    handler = Bridge(app, loop=loop)
    handler.initializer(context())
    handler.pre_stop(context())
    assert fc_call(handler).status == 200
    assert phases == ["lifespan.startup", "lifespan.shutdown", "lifespan.startup"]


# Response validation.


def respond(status: object, headers: object, body: object = b"x") -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ([(b"x-ok", b"ok\r\nSet-Cookie: evil=1")], "b'x-ok' has a value with a control character"),
        ([(b"x-a\nb", b"v")], "b'x-a\\nb' has a name that is not an HTTP token"),
        ([(b"x-nul", b"a\x00b")], "b'x-nul' has a value with a control character"),
        ([(b"x-str", "text")], "b'x-str' has a str value, not bytes"),
        ([("x-name", b"v")], "number 0 has a str name, not bytes"),
        ([(b"", b"v")], "b'' has a name that is not an HTTP token"),
        ([(b"x-three", b"v", b"w")], "Response header 0 is not a (name, value) pair"),
        ("nope", "Response header 0 is not a (name, value) pair"),
        (5, "The app's response headers are int, not a list"),
    ],
)
def test_headers_that_would_split_or_break_the_response_are_refused(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, headers: object, why: str
) -> None:
    with caplog.at_level(logging.INFO):
        response = fc_call(Bridge(respond(200, headers), loop=loop))
    assert response.status == 502
    assert body_json(response)["ErrorCode"] == "BadResponse"
    assert "evil" not in response.body.decode() and "evil" not in caplog.text
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and why in messages[0], messages


@pytest.mark.parametrize("status", [1000, -5, 99, 600, "200", 200.0, None])
def test_statuses_outside_100_to_599_are_refused(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, status: object
) -> None:
    response = fc_call(Bridge(respond(status, []), loop=loop))
    assert response.status == 502
    assert f"The app's response status {status!r} is not an int from 100 to 599." in caplog.text


def test_a_str_body_is_a_500_naming_the_mistake(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    response = fc_call(Bridge(respond(200, [], "text"), loop=loop))
    assert response.status == 500
    assert "Expected bytes in the 'http.response.body' message's 'body', got str." in caplog.text


def test_content_disposition_attachment_is_fcs_and_dropped_with_a_warning(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fc_bridge._headers

    monkeypatch.setattr(fc_bridge._headers, "_warned", set())
    headers = [(b"content-disposition", b'attachment; filename="a.txt"')]
    response = fc_call(Bridge(respond(200, headers), loop=loop))
    assert (response.status, response.header("content-disposition")) == (200, None)
    assert "Dropped response header 'content-disposition: attachment'" in caplog.text
    inline = [(b"content-disposition", b"inline")]
    assert fc_call(Bridge(respond(200, inline), loop=loop)).header("content-disposition") == (
        "inline"
    )


# Files are read off the shared loop.


def test_file_responses_never_block_the_loop(loop: SharedLoop, tmp_path: Any) -> None:
    from blockbuster import BlockBuster
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * 8192)  # 2 MiB

    async def endpoint(request: Any) -> FileResponse:
        return FileResponse(path)

    handler = Bridge(Starlette(routes=[Route("/", endpoint)]), loop=loop)
    fc_call(handler)  # imports and first-use set-up happen outside the detector
    blockbuster = BlockBuster()
    blockbuster.activate()
    try:
        # Only the loop's thread is watched: a blocking call there raises inside the app.
        response = fc_call(handler)
    finally:
        blockbuster.deactivate()
    assert response.status == 200
    assert response.body == path.read_bytes()


# FC 3.0 events.


@dataclass
class Ctx3:
    request_id: str = "fc3-req"
    function: dict[str, Any] = field(default_factory=lambda: {"timeout": 60})


def http_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "v1",
        "rawPath": "/",
        "headers": {"Host": "x.example.com"},
        "queryParameters": {},
        "body": "",
        "isBase64Encoded": False,
        "requestContext": {
            "requestId": "fc3-req",
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4"},
            "domainName": "x.example.com",
        },
    }
    event.update(changes)
    return event


async def echo_body(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return
    message: Message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": message["body"]})


def test_is_base64_encoded_is_honoured_only_when_it_is_true(loop: SharedLoop) -> None:
    handler = Bridge(echo_body, loop=loop)
    event = http_event(body="aGk=", isBase64Encoded="false")
    assert handler(json.dumps(event), Ctx3())["body"] == "aGk="
    event = http_event(body="aGk=", isBase64Encoded=True)
    assert handler(json.dumps(event), Ctx3())["body"] == "hi"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"headers": ["a", "b"]}, "The event's headers must be an object, got list."),
        ({"headers": "Host: x"}, "The event's headers must be an object, got str."),
        ({"headers": 5}, "The event's headers must be an object, got int."),
        ({"headers": {"x-a": 5}}, "The event's header 'x-a' is not a string."),
        ({"queryParameters": [1]}, "The event's queryParameters must be an object."),
        ({"body": 5}, "The event's body must be a string."),
        ({"rawPath": "items"}, "The event's rawPath must start with '/', got 'items'."),
    ],
)
def test_malformed_event_fields_get_fcs_400(
    loop: SharedLoop, changes: dict[str, Any], why: str
) -> None:
    result = Bridge(echo_body, loop=loop)(json.dumps(http_event(**changes)), Ctx3())
    assert result["statusCode"] == 400
    assert json.loads(result["body"]) == {"ErrorCode": "InvalidArgument", "ErrorMessage": why}


def test_a_deeply_nested_event_is_a_400_not_a_crash(loop: SharedLoop) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    result = Bridge(echo_body, loop=loop)(nested.encode(), Ctx3())
    assert result["statusCode"] == 400


def test_an_on_event_object_with_an_async_call_is_awaited(loop: SharedLoop) -> None:
    class Handler:
        async def __call__(self, event: Any, context: Any) -> str:
            await asyncio.sleep(0)
            return "handled"

    handler = Bridge(echo_body, on_event=Handler(), loop=loop)
    assert handler(b'{"triggerName": "tick"}', Ctx3()) == "handled"


def test_more_set_cookies_than_fc3_can_carry_are_refused_not_lost(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    cookies = [(b"set-cookie", b"c%d=1" % n) for n in range(513)]
    handler = Bridge(respond(200, cookies), limits=Limits(response_headers=None), loop=loop)
    result = handler(json.dumps(http_event()), Ctx3())
    assert result["statusCode"] == 502
    assert "more than 512 Set-Cookie headers" in caplog.text
    fits = Bridge(respond(200, cookies[:512]), limits=Limits(response_headers=None), loop=loop)
    result = fits(json.dumps(http_event()), Ctx3())
    assert result["statusCode"] == 200
    assert len([k for k in result["headers"] if k.lower() == "set-cookie"]) == 512
