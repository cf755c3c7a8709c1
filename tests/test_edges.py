"""Edges of the one HTTP cycle and the shared loop: what each rare branch answers."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import threading
import time
import weakref
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import fc_bridge._headers
import fc_bridge._timeouts
import fc_bridge._web
from fc_bridge import Bridge, Limits, WebFunction
from fc_bridge._http import Exchange
from fc_bridge._limits import Rejection
from fc_bridge._loop import Call, SharedLoop
from fc_bridge._types import Message, Receive, Scope, Send
from fc_bridge.local import asgi_app

from .conftest import FCContext, fc_call, running_server
from .test_frontends_asgi import http_scope, talk

T = TypeVar("T")


async def completes_then_waits(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"complete"})
    await asyncio.sleep(3600)  # work after the response, never ending


def test_a_response_complete_in_the_first_step_is_returned_after_task_timeout(
    loop: SharedLoop,
) -> None:
    # The timeout (0.1 s) passes first: a complete response is not a timeout; task_timeout is.
    handler = Bridge(completes_then_waits, timeout=0.1, task_timeout=0.3, loop=loop)
    started = time.monotonic()
    response = fc_call(handler)
    assert (response.status, response.body) == (200, b"complete")
    assert 0.25 < time.monotonic() - started < 5


def test_a_late_timer_finds_the_request_done_and_changes_nothing(loop: SharedLoop) -> None:
    handler = Bridge(completes_then_waits, loop=loop)
    exchange = Exchange(handler._http, _scope(), b"", "r", None, fc_bridge._headers.BUILTIN)

    async def done() -> None:
        pass

    async def main() -> None:
        exchange.task = asyncio.get_running_loop().create_task(done())
        await exchange.task
        fc_bridge._timeouts._settle_late(exchange)
        fc_bridge._timeouts._overran(exchange)
        fc_bridge._timeouts._expire(exchange)

    asyncio.run(main())
    assert (exchange.settled, exchange.expired) == (False, False)


def _scope() -> Any:
    return {"type": "http", "method": "GET", "fc.context": None}


def test_parked_requests_without_a_timeout_wait_as_long_as_it_takes(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.05)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    handler = Bridge(app, lifespan="off", timeout=None, loop=loop)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: fc_call(handler).status, range(8)))
    assert results == [200] * 8


class GivesUp(Call):
    def wait_limit(self) -> float | None:
        return 0.1


def test_a_plain_call_that_gives_up_raises_timeout_and_its_task_is_cancelled(
    loop: SharedLoop,
) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def drive() -> str:
        started.set()
        await asyncio.sleep(0.5)  # keeps the loop, and drives it
        return "driver"

    async def parked() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "unreachable"

    with ThreadPoolExecutor(1) as pool:
        driver = pool.submit(loop.run, drive())
        assert started.wait(5)
        with pytest.raises(TimeoutError, match="Nobody ran the shared event loop"):
            loop.run(parked(), GivesUp())
        assert driver.result(5) == "driver"
    assert cancelled.wait(5)


def test_a_call_settles_once_and_outside_a_loop_tells_nobody() -> None:
    call = Call()
    call.settle("first")
    call.settle("second")
    assert (call.settled, call.value) == (True, "first")


class RacingLock:
    """The lock a parked call sleeps on, timing out just as a finishing task releases it."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.gave_up = threading.Event()

    def release(self) -> None:  # pragma: no cover - the call is never parked when done
        raise AssertionError("a call that gave up was released")

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        call = self.call
        owner = call.owner
        assert owner is not None
        if call.parked and timeout == 0:  # the limit passed as the driver lets the call go
            with owner._mutex:
                call.parked = False
                owner._parked.remove(call)
            self.gave_up.set()
            return False
        if call.parked:  # run() taking the lock before parking
            return True
        deadline = time.monotonic() + 5  # the release that follows: the task is done
        while call.task is None or not call.task.done():
            assert time.monotonic() < deadline
            time.sleep(0.001)
        return True


class ReleasedAsItGivesUp(Call):
    def __init__(self) -> None:
        self._lock = RacingLock(self)

    @property  # type: ignore[override]
    def wake(self) -> RacingLock:
        return self._lock

    @wake.setter
    def wake(self, value: object) -> None:
        pass

    def wait_limit(self) -> float | None:
        return 0


def test_a_parked_call_released_as_its_limit_passes_still_gets_its_result(
    loop: SharedLoop,
) -> None:
    started = threading.Event()

    async def drive() -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "driver"

    call = ReleasedAsItGivesUp()

    async def quick() -> str:
        while not call._lock.gave_up.is_set():  # finishes only once the limit has passed
            await asyncio.sleep(0.001)
        return "parked"

    with ThreadPoolExecutor(1) as pool:
        driver = pool.submit(loop.run, drive())
        assert started.wait(5)
        assert loop.run(quick(), call) == "parked"
        assert driver.result(5) == "driver"


def test_a_name_cache_that_is_full_still_checks_names(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = fc_bridge._headers.BUILTIN
    monkeypatch.setattr(policy, "kinds", {b"n%d" % i: 0 for i in range(1024)})
    headers = [(b"x-new", b"1"), (b"Server", b"x"), (b"x-fc-status", b"1")]
    assert fc_bridge._headers.checked(headers, Limits(), policy) == [(b"x-new", b"1")]
    assert b"x-new" not in policy.kinds
    refused = fc_bridge._headers.checked([(b"bad name", b"1")], Limits(), policy)
    assert isinstance(refused, Rejection) and "b'bad name'" in refused.message
    assert len(policy.kinds) == 1024


def test_each_byte_of_a_header_value_is_judged_as_uvicorn_judges_it() -> None:
    # uvicorn's rule: no control character but HTAB. Every byte value, in the middle of a value.
    policy = fc_bridge._headers.WEB_FUNCTION  # not UTF-8 only: judges the byte alone
    for byte in range(256):
        value = b"a" + bytes([byte]) + b"b"
        verdict = fc_bridge._headers.checked([(b"x-v", value)], Limits(), policy)
        if byte == 0x09 or 0x20 <= byte != 0x7F:
            assert verdict == [(b"x-v", value)], byte
        else:
            assert isinstance(verdict, Rejection), byte
            assert "control character" in verdict.message


def test_each_byte_of_a_header_name_is_judged_as_an_http_token() -> None:
    # RFC 9110's tchar: letters, digits and !#$%&'*+-.^_`|~, nothing else.
    tchar = set(b"!#$%&'*+-.^_`|~") | set(range(0x30, 0x3A)) | set(range(0x41, 0x5B))
    tchar |= set(range(0x61, 0x7B))
    policy = fc_bridge._headers.Policy(frozenset(), fc_headers=False, attachment=False, utf8=False)
    for byte in range(256):
        name = b"x" + bytes([byte])
        verdict = fc_bridge._headers.checked([(name, b"v")], Limits(), policy)
        if byte in tchar:
            assert verdict == [(name, b"v")], byte
        else:
            assert isinstance(verdict, Rejection), byte
            assert "not an HTTP token" in verdict.message


def test_a_remembered_name_is_judged_the_same_way_again() -> None:
    # The second pass takes every verdict from the policy's cache: the same headers pass, drop
    # and refuse as the first time.
    policy = fc_bridge._headers.Policy(
        frozenset({b"server", b"content-length"}), fc_headers=True, attachment=True, utf8=True
    )
    headers = [
        (b"Content-Type", b"text/plain"),
        (b"Content-Length", b"5"),
        (b"Server", b"app"),
        (b"X-Fc-Mine", b"1"),
        (b"Content-Disposition", b"attachment; filename=a"),
        (b"Content-Disposition", b"inline"),
    ]
    kept = [(b"Content-Type", b"text/plain"), (b"Content-Disposition", b"inline")]
    for _ in range(2):
        assert fc_bridge._headers.checked(headers, Limits(), policy) == kept
        for bad in ([(b"Server", "str value")], [(b"X-Fc-Mine", b"a\r\nb")], [("str", b"1")]):
            assert isinstance(fc_bridge._headers.checked(bad, Limits(), policy), Rejection)
        refused = fc_bridge._headers.checked([(b"Content-Type", b"a\nb")], Limits(), policy)
        assert isinstance(refused, Rejection) and "control character" in refused.message
    assert policy.kinds == {
        b"Content-Type": fc_bridge._headers.PASS,
        b"Content-Length": fc_bridge._headers.QUIET,
        b"Server": fc_bridge._headers.DROP,
        b"X-Fc-Mine": fc_bridge._headers.CHECK,
        b"Content-Disposition": fc_bridge._headers.CHECK,
    }


def test_the_refused_header_is_named_after_good_ones(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-fine", b"1"), (b"x-bad", b"a\nb")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body"})

    assert fc_call(Bridge(app, lifespan="off", loop=loop)).status == 502
    assert "response header b'x-bad' has a value with a control character" in caplog.text


def test_a_pathsend_without_a_str_path_is_the_apps_error(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": 5})

    assert fc_call(Bridge(app, lifespan="off", loop=loop)).status == 500
    assert "Expected a str 'path' in 'http.response.pathsend', got 5." in caplog.text


def _file_app(path: Path) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        assert "http.response.pathsend" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(path)})

    return app


def test_a_file_over_the_response_limit_is_refused_without_reading_it(
    loop: SharedLoop, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 2000)
    handler = Bridge(_file_app(path), limits=Limits(response_body=1000), loop=loop)
    response = fc_call(handler)
    assert response.status == 502
    assert "The size of the response body is 2000 bytes" in response.body.decode()


def web_scope(path: str = "/", method: str = "GET", **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-fc-request-id", b"web-req")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 9000),
        **extra,
    }


REQUEST: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]


def recording(seen: list[Scope]) -> Any:
    """A web app that keeps each request's scope in ``seen``, reads the body, answers 204."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await receive()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


@pytest.mark.parametrize(
    ("options", "scheme", "client"),
    [
        ({}, "http", ("127.0.0.1", 1)),  # what the server reports
        ({"scheme": "https"}, "https", ("127.0.0.1", 1)),
        ({"forwarded": 1}, "https", ("203.0.113.9", 0)),  # the proxy's headers, trusted
    ],
)
def test_web_scheme_and_client_follow_the_options(
    loop: SharedLoop, options: dict[str, Any], scheme: str, client: tuple[str, int]
) -> None:
    seen: list[Scope] = []
    app = recording(seen)

    web = WebFunction(Bridge(app, lifespan="off", loop=loop, **options))
    proxied = [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")]
    assert talk(web, web_scope(headers=proxied), list(REQUEST))[0]["status"] == 204
    assert (seen[0]["scheme"], seen[0]["client"]) == (scheme, client)


def _part(body: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


GONE: Message = {"type": "http.disconnect"}


@pytest.mark.parametrize(
    ("incoming", "status", "body", "left"),
    [
        ([_part(b"whole")], 200, b"whole", 0),
        ([_part(b"ab", True), _part(b"c", True), _part(b"")], 200, b"abc", 0),
        ([_part(b"ab", True), _part(b""), _part(b"late")], 200, b"ab", 1),  # read to its end
        ([_part(b"x" * 11)], 400, None, 0),
        ([_part(b"x" * 6, True), _part(b"x" * 6, True), _part(b"never read")], 400, None, 1),
        ([GONE], None, None, 0),
        ([_part(b"ab", True), GONE], None, None, 0),
    ],
    ids=[
        "one message",
        "in parts",
        "to its end",
        "over at once",
        "over in parts",
        "gone",
        "gone mid-way",
    ],
)
def test_web_request_bodies_are_read_to_their_end_or_fcs_limit(
    loop: SharedLoop,
    incoming: list[Message],
    status: int | None,
    body: bytes | None,
    left: int,
) -> None:
    bodies: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        bodies.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    web = WebFunction(Bridge(app, lifespan="off", limits=Limits(request_body=10), loop=loop))
    queue = list(incoming)
    chunked = [(b"x-fc-request-id", b"web-req"), (b"transfer-encoding", b"chunked")]
    sent = talk(web, web_scope("/", "POST", headers=chunked), queue)
    assert [m.get("status") for m in sent[:1]] == ([] if status is None else [status])
    assert bodies == ([] if body is None else [body])
    assert len(queue) == left


@pytest.mark.parametrize(
    ("version", "framing", "asked"),
    [
        ("1.1", [], 0),
        ("1.1", [(b"content-length", b"0")], 0),
        ("1.0", [], 0),
        ("1.1", [(b"content-length", b"2")], 1),
        ("1.1", [(b"transfer-encoding", b"chunked")], 1),
        ("1.1", [(b"Content-Length", b"2")], 1),  # a server that does not lowercase names
        ("2", [], 1),  # HTTP/2 frames a body without either header
    ],
    ids=["no length", "length 0", "HTTP/1.0", "length 2", "chunked", "not lowercased", "HTTP/2"],
)
def test_a_web_request_without_a_body_never_waits_for_one(
    loop: SharedLoop, version: str, framing: list[tuple[bytes, bytes]], asked: int
) -> None:
    # HTTP/1 frames a request body with Content-Length or Transfer-Encoding: without them
    # there is none, and the app runs without asking the server for it first. An app reading
    # on after its (empty) body waits for the disconnect as always: the server's leftover
    # http.request is skipped.
    seen: list[tuple[str, object]] = []  # who got what, in order

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for _ in range(3):
            message = await receive()
            seen.append(("app", message.get("body", message["type"])))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    web = WebFunction(Bridge(app, lifespan="off", loop=loop))
    body = b"ok" if asked else b""
    incoming: list[Message] = [
        {"type": "http.request", "body": body, "more_body": False},
        {"type": "http.disconnect"},
        {"type": "http.disconnect"},
    ]

    async def main() -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            message = incoming.pop(0)
            seen.append(("server", message.get("body", message["type"])))
            return message

        async def send(message: Message) -> None:
            sent.append(message)

        headers = [(b"x-fc-request-id", b"web-req"), *framing]
        scope = web_scope("/", "POST", http_version=version, headers=headers)
        await server_task(web(scope, receive, send))
        return sent

    assert [m.get("status") for m in asyncio.run(main())] == [204, None]
    if asked:  # read before the app runs
        assert seen == [
            ("server", body),
            ("app", body),
            ("server", "http.disconnect"),
            ("app", "http.disconnect"),
            ("server", "http.disconnect"),
            ("app", "http.disconnect"),
        ]
    else:  # never asked for before the app reads past its body
        assert seen == [
            ("app", b""),
            ("server", b""),
            ("server", "http.disconnect"),
            ("app", "http.disconnect"),
            ("server", "http.disconnect"),
            ("app", "http.disconnect"),
        ]


def test_a_web_request_without_a_body_hears_of_a_client_gone_before_it_read_on(
    loop: SharedLoop,
) -> None:
    # The server's first answer is the disconnect (the client went away): the app gets it
    # as it is, after its own (empty) body.
    got: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        got.extend([(await receive())["type"], (await receive())["type"]])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    web = WebFunction(Bridge(app, lifespan="off", loop=loop))
    sent = talk(web, web_scope("/"), [{"type": "http.disconnect"}])
    assert [m.get("status") for m in sent] == [204, None]
    assert got == ["http.request", "http.disconnect"]


def test_web_requests_read_fcs_headers_by_name_whatever_else_they_hold(loop: SharedLoop) -> None:
    # A plan per set of header names says where FC's headers are: each set its own (a name
    # holding a newline is not two names), a repeated name's last value, as a dict would.
    seen: list[Scope] = []
    app = recording(seen)

    web = WebFunction(Bridge(app, lifespan="off", limits=Limits(async_request_body=4), loop=loop))

    def status(headers: list[tuple[bytes, bytes]], body: bytes = b"") -> int:
        if body:
            headers = [*headers, (b"content-length", b"%d" % len(body))]
        scope = web_scope("/", "POST", headers=headers)
        sent = talk(web, scope, [{"type": "http.request", "body": body, "more_body": False}])
        return int(sent[0]["status"])

    two, joined = [(b"a", b"1"), (b"b", b"2")], [(b"a\nb", b"3")]
    assert [status(two), status(joined), status(two), status(joined)] == [204] * 4
    assert [s["headers"] for s in seen] == [two, joined, two, joined]
    ids = [(b"x-fc-request-id", b"first"), (b"x-fc-request-id", b"r")]
    assert status(ids) == 204
    assert seen[-1]["fc.context"].request_id == "r"  # the last, as in a dict of the headers
    asynchronous = [(b"x-fc-invocation-type", b"Async")]
    assert (status(asynchronous, b"1234"), status(asynchronous, b"12345")) == (204, 400)


@pytest.mark.parametrize(
    ("method", "path", "with_on_event", "answered_by"),
    [
        ("POST", "/initialize", False, "hook"),
        ("GET", "/initialize", False, "app"),  # not FC's call: the app's route
        ("GET", "/pre-stop", False, "hook"),
        ("POST", "/pre-freeze", False, "app"),
        ("POST", "/invoke", True, "on_event"),
        ("POST", "/invoke", False, "app"),  # no on_event: the app's route
        ("GET", "/invoke", True, "app"),
        ("GET", "/items", True, "app"),
    ],
)
def test_web_function_tells_fcs_calls_from_the_apps_routes(
    loop: SharedLoop, method: str, path: str, with_on_event: bool, answered_by: str
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    on_event = (lambda event, context: "on_event") if with_on_event else None
    web = WebFunction(Bridge(app, on_event=on_event, loop=loop))
    sent = talk(web, web_scope(path, method), list(REQUEST))
    body = b"".join(m.get("body", b"") for m in sent)
    assert {b"app": "app", b"on_event": "on_event", b"": "hook"}[body] == answered_by


def test_web_apps_see_the_extensions_their_server_offers(loop: SharedLoop) -> None:
    seen: list[Scope] = []
    app = recording(seen)

    web = WebFunction(Bridge(app, lifespan="off", loop=loop))
    offered: dict[str, dict[object, object]] = {"http.response.pathsend": {}}
    talk(web, web_scope(), list(REQUEST))
    talk(web, web_scope(extensions=offered), list(REQUEST))
    assert "extensions" not in seen[0]  # none offered, as under uvicorn
    assert seen[1]["extensions"] == offered
    assert seen[1]["extensions"] is not offered  # the app's own copy


def test_web_headers_beyond_the_plan_cache_are_read_the_same(
    loop: SharedLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Scope] = []
    app = recording(seen)

    plan = (None, None, 0, -1, -1, -1)
    full = {(b"n%d" % n,): plan for n in range(fc_bridge._web.MAX_HEADER_PLANS)}
    monkeypatch.setattr(fc_bridge._web, "_header_plans", full)
    web = WebFunction(Bridge(app, lifespan="off", limits=Limits(request_headers=20), loop=loop))
    sent = [(b"x-fc-security-token", b"t"), (b"accept", b"*/*"), (b"x-fc-region", b"r" * 30)]
    assert talk(web, web_scope(headers=sent), list(REQUEST))[0]["status"] == 204
    assert seen[0]["headers"] == sent[1:]  # 9 bytes counted: FC's own headers do not count
    assert len(full) == fc_bridge._web.MAX_HEADER_PLANS  # decided, not remembered
    sent.append((b"x-pad", b"p" * 7))  # 21 bytes now
    assert talk(web, web_scope(headers=sent), list(REQUEST))[0]["status"] == 400


@pytest.mark.parametrize(
    ("option", "header", "root_path"),
    [
        (None, b"/base/", "/base"),
        ("/", b"/base/", "/base"),  # "/" names no root path
        ("/app", b"/base", "/app"),  # the option first
        (None, b"/", ""),
        (None, None, ""),
    ],
)
def test_web_root_path_is_the_option_else_fcs_base_path_header(
    loop: SharedLoop, option: str | None, header: bytes | None, root_path: str
) -> None:
    seen: list[Scope] = []
    app = recording(seen)

    web = WebFunction(Bridge(app, lifespan="off", root_path=option, loop=loop))
    scope = web_scope(root_path + "/x")
    if header is not None:
        scope["headers"] = [*scope["headers"], (b"x-fc-base-path", header)]
    assert talk(web, scope, list(REQUEST))[0]["status"] == 204
    assert (seen[0]["root_path"], seen[0]["path"]) == (root_path, root_path + "/x")


@pytest.mark.parametrize(("limit", "status"), [(None, 200), (1000, 502)])
def test_web_pathsend_goes_to_a_server_that_offers_it(
    loop: SharedLoop, tmp_path: Path, limit: int | None, status: int
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"y" * 2000)
    web = WebFunction(Bridge(_file_app(path), limits=Limits(response_body=limit), loop=loop))
    scope = web_scope(extensions={"http.response.pathsend": {}})
    sent = talk(web, scope, list(REQUEST))
    assert sent[0]["status"] == status
    if status == 200:
        assert sent[1] == {"type": "http.response.pathsend", "path": str(path)}


def test_web_invoke_hands_other_triggers_events_to_on_event(loop: SharedLoop) -> None:
    seen: list[Any] = []

    async def on_event(event: bytes, context: Any) -> dict[str, Any]:
        seen.append((json.loads(event), context.request_id))
        return {"handled": True}

    def failing(event: bytes, context: Any) -> str:
        raise RuntimeError("handler failed")

    web = WebFunction(Bridge(completes_then_waits, on_event=on_event, loop=loop))

    def tick() -> list[Message]:
        return [{"type": "http.request", "body": b'{"trigger": "tick"}'}]

    sent = talk(web, web_scope("/invoke", "POST"), tick())
    assert (sent[0]["status"], sent[1]["body"]) == (200, b'{"handled": true}')
    assert seen == [({"trigger": "tick"}, "web-req")]
    results: list[tuple[str | bytes, bytes]] = [("text", b"text"), (b"raw", b"raw")]
    for result, payload in results:

        def returns(event: Any, context: Any, result: str | bytes = result) -> str | bytes:
            return result

        web = WebFunction(Bridge(completes_then_waits, on_event=returns))
        sent = talk(web, web_scope("/invoke", "POST"), tick())
        assert sent[1]["body"] == payload
    web = WebFunction(Bridge(completes_then_waits, on_event=failing, loop=loop))
    sent = talk(web, web_scope("/invoke", "POST"), tick())
    assert sent[0]["status"] == 500
    assert (b"x-fc-status", b"404") in sent[0]["headers"]
    big: list[Message] = [{"type": "http.request", "body": b"x" * 200_000}]
    web = WebFunction(Bridge(completes_then_waits, on_event=on_event, loop=loop))
    sent = talk(
        web, web_scope("/invoke", "POST", headers=[(b"x-fc-invocation-type", b"Async")]), big
    )
    assert sent[0]["status"] == 400


def test_web_pre_freeze_waits_for_leftover_tasks(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def leaves_a_task(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["path"] == "/leave":
            asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="leftover")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body"})

    with running_server(WebFunction(Bridge(leaves_a_task, task_timeout=0.1))) as url:
        assert httpx.get(url + "/leave", timeout=10).status_code == 200
        frozen = httpx.get(url + "/pre-freeze", headers={"x-fc-request-id": "fz"}, timeout=10)
    assert frozen.status_code == 200
    assert "task(s) still run as FC freezes the instance [request_id=fz]: leftover" in caplog.text


def test_local_web_runs_async_invocations_after_answering_202(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    done = threading.Event()
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        body = (await receive())["body"]
        seen.append((body, scope["fc.context"].credentials is not None))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ignored"})
        done.set()

    with running_server(asgi_app(Bridge(app), "web")) as url:
        response = httpx.post(
            url + "/job", content=b"payload", headers={"X-Fc-Invocation-Type": "Async"}
        )
        assert response.status_code == 202
        assert response.headers["x-fc-request-id"]
        assert done.wait(10)
        too_big = httpx.post(
            url + "/job", content=b"x" * 200_000, headers={"X-Fc-Invocation-Type": "Async"}
        )
        assert too_big.status_code == 400
    assert seen == [(b"payload", True)]


def test_local_web_waits_for_async_invocations_at_shutdown() -> None:
    finished: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        await asyncio.sleep(0.3)
        finished.append("job")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body"})

    with running_server(asgi_app(Bridge(app), "web")) as url:
        response = httpx.post(url + "/job", headers={"X-Fc-Invocation-Type": "Async"})
        assert response.status_code == 202
    assert finished == ["job"]  # the server's shutdown waited for it


def test_on_event_returning_an_awaitable_from_a_plain_function_is_awaited(
    loop: SharedLoop,
) -> None:
    async def later(event: Any) -> str:
        await asyncio.sleep(0)
        return f"done {json.loads(event)['n']}"

    handler = Bridge(completes_then_waits, on_event=lambda event, context: later(event), loop=loop)
    assert handler(b'{"n": 1}', {"request_id": "r"}) == "done 1"


def test_pre_freeze_lets_leftover_tasks_finish_and_says_nothing_when_they_do(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    finished: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def flush() -> None:
            await asyncio.sleep(0.1)
            finished.append("flushed")

        asyncio.get_running_loop().create_task(flush())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body"})

    handler = Bridge(app, lifespan="off", task_timeout=0.07, loop=loop)
    assert fc_call(handler).status == 200
    assert finished == []  # still running when the request ended (warned)
    caplog.clear()
    handler.pre_freeze({"request_id": "fz"})
    assert finished == ["flushed"]
    assert "freezes" not in caplog.text


def test_a_context_timeout_that_is_not_a_number_means_no_bound(loop: SharedLoop) -> None:
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body"})

    context = {"request_id": "r", "function": {"timeout": "soon"}}
    assert fc_call(Bridge(slow, lifespan="off", loop=loop), context=context).status == 200


def test_a_dict_context_behaves_as_a_read_only_mapping_for_the_app(loop: SharedLoop) -> None:
    got: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        context = scope["fc.context"]
        got.extend([hasattr(context, "missing"), len(context), sorted(context)])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    fc_call(Bridge(app, lifespan="off", loop=loop), context={"request_id": "r", "region": "x"})
    assert got == [False, 2, ["region", "request_id"]]


def test_context_classes_beyond_the_cache_are_still_hidden(
    loop: SharedLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fc_bridge._context

    monkeypatch.setattr(
        fc_bridge._context, "PLAIN_REPRS", {type(f"C{i}", (), {}): True for i in range(64)}
    )
    shown: list[str] = []

    class Leaky:
        request_id = "r"
        secret = "hunter2"

        def __repr__(self) -> str:
            return f"Leaky(secret={self.secret})"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        shown.append(repr(scope["fc.context"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    fc_call(Bridge(app, lifespan="off", loop=loop), context=Leaky())
    assert "hunter2" not in shown[0]
    assert Leaky not in fc_bridge._context.PLAIN_REPRS


def test_an_event_with_null_headers_and_body_is_an_empty_request(loop: SharedLoop) -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope["headers"], (await receive())["body"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    event = {
        "rawPath": "/",
        "headers": None,
        "body": None,
        "requestContext": {"requestId": "r", "http": {"method": "GET", "path": "/"}},
    }
    assert Bridge(app, lifespan="off", loop=loop)(json.dumps(event), {})["statusCode"] == 204
    assert seen == [([], b"")]


def test_work_after_a_response_completed_later_is_bounded_too(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.01)  # the request waits once: its bounds are armed
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})
        await asyncio.sleep(3600)

    handler = Bridge(app, lifespan="off", task_timeout=0.1, timeout=None, loop=loop)
    assert fc_call(handler).body == b"late"


def test_plain_coroutines_from_many_threads_share_the_loop(loop: SharedLoop) -> None:
    async def work(n: int) -> int:
        await asyncio.sleep(0.02)
        return n * 2

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda n: loop.run(work(n)), range(8))) == [n * 2 for n in range(8)]


def test_host_option_is_validated() -> None:
    from fc_bridge import ConfigError

    with pytest.raises(ConfigError, match=r'host must be a host name such as "api\.example\.com"'):
        Bridge(completes_then_waits, host="https://x/")


def test_a_client_gone_before_an_invoke_body_arrived_gets_nothing(loop: SharedLoop) -> None:
    web = WebFunction(Bridge(completes_then_waits, on_event=lambda e, c: "x", loop=loop))
    assert talk(web, web_scope("/invoke", "POST"), [{"type": "http.disconnect"}]) == []


def test_local_web_async_invocation_from_a_client_gone_mid_upload_runs_nothing() -> None:
    ran: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        ran.append("ran")

    front = asgi_app(Bridge(app, lifespan="off"), "web")
    incoming: list[Message] = [
        {"type": "http.request", "body": b"part", "more_body": True},
        {"type": "http.disconnect"},
    ]
    scope = web_scope("/job", "POST", headers=[(b"x-fc-invocation-type", b"Async")])
    assert talk(front, scope, incoming) == []
    assert ran == []


def test_an_async_invocation_that_listens_for_the_disconnect_gets_it_after_responding() -> None:
    events: list[str] = []
    done = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})
        events.append((await receive())["type"])
        done.set()

    with running_server(asgi_app(Bridge(app), "web")) as url:
        response = httpx.post(url + "/", headers={"X-Fc-Invocation-Type": "Async"})
        assert response.status_code == 202
        assert done.wait(10)
    assert events == ["http.disconnect"]


def test_a_web_request_cancelled_by_the_server_cancels_the_app(loop: SharedLoop) -> None:
    cancelled: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append("app")
            raise

    web = WebFunction(Bridge(app, lifespan="off", loop=loop))

    async def main() -> None:
        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        async def send(message: Message) -> None:
            raise AssertionError("nothing is sent for a request the server cancelled")

        task = asyncio.get_running_loop().create_task(web(web_scope(), receive, send))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cancelled == ["app"]


def test_the_host_option_stands_in_for_a_missing_host_header(loop: SharedLoop) -> None:
    hosts: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        hosts.append(dict(scope["headers"]).get(b"host"))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    handler = Bridge(app, lifespan="off", host="api.example.com", loop=loop)
    fc_call(handler)  # FC 2.0 on a custom domain may pass no HTTP_HOST (fc2-environs case 2)
    fc_call(handler, "GET", "/", [("Host", "sent.example.com")])
    event = {"rawPath": "/", "requestContext": {"http": {"method": "GET", "path": "/"}}}
    handler(json.dumps(event), {})
    assert hosts == [b"api.example.com", b"sent.example.com", b"api.example.com"]


leftover: contextvars.ContextVar[str] = contextvars.ContextVar("leftover")


def server_context(fresh: bool) -> contextvars.Context:
    """The context a server runs a request's task in: fresh (uvicorn's reset_contextvars), or
    holding a variable an earlier request set (the app then runs in a task of its own)."""
    context = contextvars.Context()
    if not fresh:
        context.run(leftover.set, "from an earlier request")
    return context


def server_task(request: Coroutine[Any, Any, T], fresh: bool = True) -> asyncio.Task[T]:
    """``request`` in a task of its own, as a server runs it, in ``server_context(fresh)``."""
    return server_context(fresh).run(asyncio.get_running_loop().create_task, request)


def _one_request() -> tuple[list[Message], Receive, Send]:
    """A server's side of one bodiless request: the list of what the app sends, and the
    receive and send it is called with."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    return sent, receive, send


@pytest.mark.parametrize("fresh", [True, False])
def test_a_server_cancelling_a_web_request_cancels_the_app_quietly(
    fresh: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # fresh: the app runs in the server's own task; not fresh (a variable left in the
    # context): in a task of its own. Either way the server's cancellation reaches the app,
    # the server's task ends cancelled, and nothing is sent or logged as the app's failure.
    cancelled: list[str] = []
    started = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(scope["path"])
            raise

    web = WebFunction(Bridge(app, lifespan="off", timeout=0.2))
    sent, receive, send = _one_request()

    async def main() -> bool:
        task = server_task(web(http_scope("/slow"), receive, send), fresh)
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The request's time bound went with it: its timeout passes and nothing happens.
        await asyncio.sleep(0.4)
        return task.cancelled()

    assert asyncio.run(main()) is True
    assert (cancelled, sent) == (["/slow"], [])
    assert "Exception in ASGI application" not in caplog.text
    assert "Answering 504" not in caplog.text


@pytest.mark.parametrize("fresh", [True, False])
def test_a_web_request_that_waited_leaves_nothing_behind_once_answered(fresh: bool) -> None:
    # Its timeout is in the loop's one timer (_timeouts.Deadlines) while it runs, and taken
    # out when it ends: nothing the request made stays alive until its deadline.
    made: list[weakref.ref[Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        made.append(weakref.ref(scope["fc.context"]))
        await asyncio.sleep(0)  # waits once: armed
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    web = WebFunction(Bridge(app, lifespan="off", timeout=60))
    sent, receive, send = _one_request()

    async def main() -> list[object]:
        await server_task(web(http_scope("/"), receive, send), fresh)
        gc.collect()
        return [ref() for ref in made]

    assert asyncio.run(main()) == [None]
    assert [m.get("status") for m in sent] == [200, None]


class Marker:
    """An object that can be weakly referenced."""


@pytest.mark.parametrize("how", ["driven", "parked", "public path"])
def test_a_request_that_waited_leaves_nothing_behind_once_answered(how: str) -> None:
    # The FC 2.0 handler's side of the test above: the request's deadline leaves the loop's
    # timer when its task is done, whether its own thread drove the loop, handed the request
    # over to the thread driving it, or the loop took the public path (run_forever).
    made: list[weakref.ref[Any]] = []
    driving, release = threading.Event(), threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/driver":  # keeps another thread driving the loop
            driving.set()
            while not release.is_set():
                await asyncio.sleep(0.005)
        else:
            scope["marker"] = marker = Marker()  # kept alive by the request's scope
            made.append(weakref.ref(marker))
            await asyncio.sleep(0)  # waits once: armed
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    loop = SharedLoop(fast_path=how != "public path")
    handler = Bridge(app, lifespan="off", timeout=60, loop=loop)
    try:
        with ThreadPoolExecutor(1) as pool:
            driver = pool.submit(fc_call, handler, "GET", "/driver") if how == "parked" else None
            assert driver is None or driving.wait(5)
            response = fc_call(handler, "GET", "/", context=FCContext(request_id="r-1"))
            release.set()
            assert driver is None or driver.result(5).status == 200
        assert (response.status, response.body) == (200, b"ok")
        gc.collect()
        assert [ref() for ref in made] == [None]
        assert fc_bridge._timeouts.deadlines_of(loop.loop).due == {}
    finally:
        loop.close()


def test_bridges_on_loops_side_by_side_keep_one_deadline_timer_per_loop() -> None:
    # A bridge per thread, each on a loop of its own: requests alternate between the loops,
    # and each loop keeps its one timer for every deadline, instead of a new timer for each
    # request whenever the last request was on the other loop (the timers then pile up).
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0)  # waits once: its deadline is armed
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    loops = [SharedLoop(), SharedLoop()]
    try:
        handlers = [Bridge(app, lifespan="off", timeout=60, loop=loop) for loop in loops]
        for _ in range(5):
            for handler in handlers:
                assert fc_call(handler, "GET", "/").status == 200
        armed = [
            [timer for timer in loop.loop._scheduled if not timer.cancelled()]  # type: ignore[attr-defined]
            for loop in loops
        ]
        assert [len(timers) for timers in armed] == [1, 1]
    finally:
        for loop in loops:
            loop.close()


def test_deadlines_are_kept_for_the_latest_loops_only() -> None:
    # Loops made and closed one after another (tests, tools) are not kept for ever: past
    # MAX_LOOPS the oldest is forgotten, and a forgotten loop that comes back gets new ones.
    first = asyncio.new_event_loop()
    others = [asyncio.new_event_loop() for _ in range(fc_bridge._timeouts.MAX_LOOPS)]
    try:
        kept = fc_bridge._timeouts.deadlines_of(first)
        assert fc_bridge._timeouts.deadlines_of(first) is kept
        for other in others:
            fc_bridge._timeouts.deadlines_of(other)
        assert first not in fc_bridge._timeouts._by_loop
        assert len(fc_bridge._timeouts._by_loop) == fc_bridge._timeouts.MAX_LOOPS
        assert fc_bridge._timeouts.deadlines_of(first) is not kept
    finally:
        for loop in [first, *others]:
            loop.close()


def test_requests_on_one_loop_each_time_out_at_their_own_timeout() -> None:
    # Every timeout on a loop shares one timer (_timeouts.Deadlines), armed for the earliest:
    # a request with a shorter timeout than one already running moves it earlier; one that
    # ends before its timeout leaves it to find the next.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0 if scope["path"] == "/done" else 3600)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    timeouts = {"/slow": 30.0, "/done": 0.1, "/fast": 0.2, "/later": 0.5}
    webs = {
        path: WebFunction(Bridge(app, lifespan="off", timeout=t)) for path, t in timeouts.items()
    }
    sent: dict[str, list[Message]] = {}

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = {}
        for path, web in webs.items():  # in this order: /slow's timeout is armed first
            sent[path], receive, send = _one_request()
            request = web(http_scope(path), receive, send)
            tasks[path] = server_task(request)
            await asyncio.sleep(0)
        await asyncio.gather(tasks["/done"], tasks["/fast"], tasks["/later"])
        elapsed = loop.time() - start
        tasks["/slow"].cancel()
        return elapsed

    assert asyncio.run(main()) < 10  # not /slow's 30 s
    assert [m.get("status") for m in sent["/done"]] == [200, None]
    assert [m.get("status") for m in sent["/fast"]] == [504, None]
    assert [m.get("status") for m in sent["/later"]] == [504, None]
    assert sent["/slow"] == []


def test_a_web_request_timing_out_in_the_servers_task_leaves_that_task_serving() -> None:
    # The 504 comes from the bridge's own cancellation, which it takes back: the server's task
    # goes on (a later asyncio.timeout in it would otherwise fire at once).

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(3600)

    web = WebFunction(Bridge(app, lifespan="off", timeout=0.2))
    sent, receive, send = _one_request()

    async def serve() -> int:
        await web(http_scope("/slow"), receive, send)
        await asyncio.sleep(0)  # still a live task: no cancellation pending
        task = asyncio.current_task()
        return getattr(task, "cancelling", lambda: 0)()

    async def main() -> int:
        return await server_task(serve())

    assert asyncio.run(main()) == 0
    assert [m.get("status") for m in sent] == [504, None]
    assert json.loads(sent[1]["body"])["ErrorCode"] == "FunctionTimeout"


@pytest.mark.parametrize("fresh", [True, False])
def test_an_app_that_cleans_up_at_its_timeout_finishes_its_cleanup_before_the_504(
    fresh: bool,
) -> None:
    # The timeout's cancellation reaches the app where it waits; an app that catches it and
    # awaits its own cleanup first (closing a connection, say) gets to finish it.
    steps: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            steps.append("cancelled")
            await asyncio.sleep(0.01)
            steps.append("cleaned up")
            raise

    web = WebFunction(Bridge(app, lifespan="off", timeout=0.1))
    sent, receive, send = _one_request()

    async def main() -> None:
        await server_task(web(http_scope("/slow"), receive, send), fresh)

    asyncio.run(main())
    assert steps == ["cancelled", "cleaned up"]
    assert [m.get("status") for m in sent] == [504, None]


@pytest.mark.parametrize("fresh", [True, False])
def test_a_web_request_closed_while_its_app_waits_ends_the_app_and_its_deadline(
    fresh: bool,
) -> None:
    # A server's coroutine closed mid-request (its task dropped): the app's own cleanup runs,
    # nothing is sent, and the request's deadline leaves the loop's timer; whether the app ran
    # in the server's task or (a context not fresh) in a task of its own.
    steps: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            steps.append("ended")

    web = WebFunction(Bridge(app, lifespan="off", timeout=60))
    sent, receive, send = _one_request()

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        request = web(http_scope("/"), receive, send)
        context = server_context(fresh)
        context.run(request.send, None)  # its first step, in the server's task: it waits
        await asyncio.sleep(0.01)  # the app's own task (not fresh) has started
        due = len(fc_bridge._timeouts.deadlines_of(loop).due)
        request.close()
        await asyncio.sleep(0.01)  # the app's own task (not fresh) has ended
        return due, len(fc_bridge._timeouts.deadlines_of(loop).due)

    assert asyncio.run(main()) == (1, 0)
    assert (steps, sent) == (["ended"], [])


def test_a_cancelled_error_an_app_raises_itself_is_its_failure_in_the_servers_task_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nobody cancelled the task: the app's own CancelledError is an exception like any other.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise asyncio.CancelledError

    web = WebFunction(Bridge(app, lifespan="off"))
    sent, receive, send = _one_request()

    async def main() -> None:
        await server_task(web(http_scope("/"), receive, send))

    asyncio.run(main())
    assert [m.get("status") for m in sent] == [500, None]
    assert "Exception in ASGI application" in caplog.text


def test_a_requests_task_is_named_after_its_request_id(loop: SharedLoop) -> None:
    # asyncio's debug output and current_task().get_name() then say which request it is:
    # served in its first step, parked behind another thread's request, on the public path,
    # and in a web function's own task.
    names: list[str] = []
    waiting = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["path"] == "/wait":
            waiting.set()
            await asyncio.sleep(0.2)
        task = asyncio.current_task()
        assert task is not None
        names.append(task.get_name())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def call(handler: Bridge, path: str, rid: str) -> int:
        return fc_call(handler, "GET", path, context=FCContext(request_id=rid)).status

    handler = Bridge(app, lifespan="off", loop=loop)
    assert call(handler, "/", "first-step") == 200
    with ThreadPoolExecutor(1) as pool:
        driving = pool.submit(call, handler, "/wait", "driving")
        assert waiting.wait(5)
        assert call(handler, "/", "parked") == 200
        assert driving.result(5) == 200
    public = SharedLoop(fast_path=False)
    try:
        assert call(Bridge(app, lifespan="off", loop=public), "/", "public") == 200
    finally:
        public.close()
    web = WebFunction(Bridge(app))
    leftover: contextvars.ContextVar[int] = contextvars.ContextVar("leftover")

    async def server_task_with_a_context(scope: Scope, receive: Receive, send: Send) -> None:
        leftover.set(1)  # the request gets a task (and a fresh context) of its own
        await web(scope, receive, send)

    with running_server(server_task_with_a_context, reset_contextvars=False) as url:
        response = httpx.get(url + "/", headers={"x-fc-request-id": "web"})
        assert response.status_code == 200
    assert names == ["first-step", "parked", "driving", "public", "web"]


@pytest.mark.parametrize("fresh", [True, False])
def test_a_web_app_raising_after_its_response_is_logged_and_the_response_stands(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, fresh: bool
) -> None:
    # fresh: the server runs the request in a task with a fresh context (the app runs in it);
    # else in a task of the bridge's own. Either way the sent response stands, the error is
    # logged once with the request id, and the server's task ends normally.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        raise RuntimeError("after the response")

    web = WebFunction(Bridge(app, lifespan="off", loop=loop))
    assert serve_web_request(web, fresh) == [
        {"type": "http.response.start", "status": 200, "headers": []},
        {"type": "http.response.body", "body": b"done"},
    ]
    records = [record for record in caplog.records if record.name == "fc_bridge.http"]
    assert [record.getMessage() for record in records] == [
        "Exception in ASGI application [request_id=web-req]"
    ]
    assert records[0].exc_info is not None
    assert str(records[0].exc_info[1]) == "after the response"


def serve_web_request(web: WebFunction, fresh: bool) -> list[Message]:
    """One GET served by ``web`` in a task as a server makes it: with a fresh context
    (uvicorn's reset_contextvars), else with one holding a context variable; what it sent."""

    async def main() -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return REQUEST[0]

        async def send(message: Message) -> None:
            sent.append(message)

        await server_task(web(web_scope(), receive, send), fresh)
        return sent

    return asyncio.run(main())


@pytest.mark.parametrize(("timeout", "status"), [(None, 200), (0.1, 504)])
@pytest.mark.parametrize("fresh", [True, False])
def test_a_web_request_waits_for_its_app_as_long_as_its_timeout_says(
    loop: SharedLoop, fresh: bool, timeout: float | None, status: int
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.3)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    web = WebFunction(Bridge(app, lifespan="off", timeout=timeout, loop=loop))
    assert [m.get("status") for m in serve_web_request(web, fresh)[:1]] == [status]


@pytest.mark.parametrize("fresh", [True, False])
def test_a_web_response_sent_before_the_timeout_is_left_alone_by_it(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, fresh: bool
) -> None:
    # A streamed response is the client's once sent: the timeout has nothing left to end (no
    # 504, no cancellation), and returning a buffered response after task_timeout is not for
    # a web function either: the app finishes its work after the response, unlogged.
    finished: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"sent"})
        await asyncio.sleep(0.3)  # past both bounds
        finished.append("finished")

    web = WebFunction(Bridge(app, lifespan="off", timeout=0.1, task_timeout=0.05, loop=loop))
    assert serve_web_request(web, fresh) == [
        {"type": "http.response.start", "status": 200, "headers": []},
        {"type": "http.response.body", "body": b"sent"},
    ]
    assert finished == ["finished"]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("fc_bridge")] == []
