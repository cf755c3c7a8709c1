"""What FC 2.0 gets back from the WSGI handler."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import fc_bridge._headers
from fc_bridge import Bridge
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Receive, Scope, Send

from .conftest import fc_call, fc_environ


def respond(status: int, headers: list[tuple[bytes, bytes]], *chunks: bytes) -> Any:
    """A raw ASGI app that sends the given response, one body message per chunk."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i, chunk in enumerate(chunks):
            more = i < len(chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": more})
        if not chunks:
            await send({"type": "http.response.body"})

    return app


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fc_bridge._headers, "_warned", set())


def start_response_recorder() -> tuple[list[Any], Any]:
    calls: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        calls.append((status, headers, exc_info))
        return lambda data: None

    return calls, start_response


def test_status_line_headers_in_order_and_chunks_as_sent(loop: SharedLoop) -> None:
    app = respond(
        201,
        [
            (b"content-type", b"text/plain"),
            (b"set-cookie", b"a=1; Path=/"),
            (b"x-trace", b"t"),
            (b"set-cookie", b"b=2; HttpOnly"),
        ],
        b"one,",
        b"",
        b"two",
    )
    calls, start_response = start_response_recorder()
    body = Bridge(app, loop=loop)(fc_environ(), start_response)
    assert body == [b"one,", b"two"]
    assert calls == [
        (
            "201 Created",
            [
                ("content-type", "text/plain"),
                ("set-cookie", "a=1; Path=/"),
                ("x-trace", "t"),
                ("set-cookie", "b=2; HttpOnly"),
            ],
            None,
        )
    ]


def test_every_set_cookie_survives_fcs_runtime(loop: SharedLoop) -> None:
    app = respond(200, [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")], b"")
    response = fc_call(Bridge(app, loop=loop))
    assert response.headers == {"set-cookie": ["a=1", "b=2"]}


@pytest.mark.parametrize(("status", "line"), [(418, "418 I'm a Teapot"), (599, "599 Unknown")])
def test_status_reason_phrases(loop: SharedLoop, status: int, line: str) -> None:
    calls, start_response = start_response_recorder()
    Bridge(respond(status, []), loop=loop)(fc_environ(), start_response)
    assert calls[0][0] == line


def test_utf8_header_values_reach_fc_intact(loop: SharedLoop) -> None:
    disposition = "inline; filename*=UTF-8''Zoë.txt; name=\"东京\""
    app = respond(200, [(b"content-disposition", disposition.encode())], b"x")
    response = fc_call(Bridge(app, loop=loop))
    assert response.header("content-disposition") == disposition


def test_header_bytes_that_are_not_utf8_are_refused_with_fcs_502(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    # FC carries header values as text: Latin-1 bytes would reach the client re-encoded.
    app = respond(200, [(b"x-legacy", b"caf\xe9")], b"x")
    with caplog.at_level(logging.ERROR):
        response = fc_call(Bridge(app, loop=loop))
    assert response.status == 502
    assert json.loads(response.body)["ErrorCode"] == "BadResponse"
    assert [r.getMessage() for r in caplog.records] == [
        "Answering 502 [request_id=req-1]: The app's response header b'x-legacy' has a value "
        "that is not UTF-8, which FC cannot carry."
    ]
    assert "caf" not in caplog.text  # the value itself is never echoed


def test_background_task_finishes_before_the_response_is_returned(loop: SharedLoop) -> None:
    done: list[str] = []

    async def later() -> None:
        done.append("background")

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("hi", background=BackgroundTask(later))

    app = Starlette(routes=[Route("/", endpoint)])
    _calls, start_response = start_response_recorder()
    body = Bridge(app, loop=loop)(fc_environ(), start_response)
    # FC may freeze the instance as soon as it holds the response: the task must be done.
    assert done == ["background"]
    assert body == [b"hi"]


def test_streaming_response_chunks_arrive_in_order(loop: SharedLoop) -> None:
    async def numbers() -> Any:
        for i in range(5):
            yield f"{i};"

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(numbers(), media_type="text/plain")

    app = Starlette(routes=[Route("/", endpoint)])
    response = fc_call(Bridge(app, loop=loop))
    assert (response.status, response.body) == (200, b"0;1;2;3;4;")
    assert response.header("content-type") == "text/plain; charset=utf-8"


def test_head_response_has_no_body(loop: SharedLoop) -> None:
    app = respond(200, [(b"content-length", b"5"), (b"x-a", b"1")], b"hello")
    calls, start_response = start_response_recorder()
    body = Bridge(app, loop=loop)(fc_environ("HEAD"), start_response)
    assert body == []
    assert calls[0][:2] == ("200 OK", [("x-a", "1")])


def test_file_response_is_read_in_one_go(loop: SharedLoop, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    path = tmp_path / "blob.bin"
    path.write_bytes(data)

    async def endpoint(request: Request) -> Response:
        return FileResponse(path, media_type="application/octet-stream")

    app = Starlette(routes=[Route("/f", endpoint, methods=["GET", "HEAD"])])
    handler = Bridge(app, loop=loop)
    calls, start_response = start_response_recorder()
    assert handler(fc_environ("GET", "/f"), start_response) == [data]
    assert ("content-type", "application/octet-stream") in calls[0][1]
    assert handler(fc_environ("HEAD", "/f"), start_response) == []


def test_reserved_headers_are_dropped_with_one_warning_per_name(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    app = respond(
        200,
        [
            (b"Server", b"mine"),
            (b"date", b"today"),
            (b"connection", b"close"),
            (b"keep-alive", b"timeout=5"),
            (b"x-fc-request-id", b"forged"),
            (b"content-length", b"2"),
            (b"x-kept", b"yes"),
        ],
        b"ok",
    )
    handler = Bridge(app, loop=loop)
    with caplog.at_level(logging.WARNING, logger="fc_bridge.http"):
        first = fc_call(handler)
        second = fc_call(handler)
    assert first.headers == second.headers == {"x-kept": ["yes"]}
    warned = [record.getMessage() for record in caplog.records]
    assert warned == [
        f"Dropped response header {name!r}: FC does not let functions set it "
        "(warned once per process)."
        for name in ("server", "date", "connection", "keep-alive", "x-fc-request-id")
    ]


def test_content_length_is_fcs_to_set_from_the_body(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    app = respond(200, [(b"content-length", b"99")], b"ok")
    with caplog.at_level(logging.WARNING, logger="fc_bridge.http"):
        response = fc_call(Bridge(app, loop=loop))
    assert (response.headers, response.body) == ({}, b"ok")
    assert caplog.records == []  # quietly: FC computes it from the body it gets


def test_memoryview_chunks_become_bytes(loop: SharedLoop) -> None:
    app = respond(200, [], memoryview(b"view"), bytearray(b"array"))  # type: ignore[arg-type]
    assert Bridge(app, loop=loop)(fc_environ(), lambda *a: None) == [b"view", b"array"]


def test_pathsend_for_a_head_request_does_not_read_the_file(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": "/nonexistent/never/read"})

    handler = Bridge(app, lifespan="off", loop=loop)
    assert handler(fc_environ("HEAD"), lambda *a: None) == []
