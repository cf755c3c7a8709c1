"""Exceptions, malformed requests and broken apps: a clear answer, a log record, no hang."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from fc_bridge import Bridge
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Receive, Scope, Send
from fc_bridge.local.emulator import RuntimeResponse, call_wsgi

from .conftest import SECRET, FCContext, fc_call, fc_environ


class Boom(Exception):
    pass


async def raises_before_response(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        raise Boom("kaboom")


def start_response_recorder() -> tuple[list[Any], Any]:
    calls: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        calls.append((status, headers, exc_info))
        return lambda data: None

    return calls, start_response


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_exception_before_the_response_is_a_plain_500_and_one_log_record(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Bridge(raises_before_response, loop=loop)
    calls, start_response = start_response_recorder()
    with caplog.at_level(logging.INFO, logger="fc_bridge"):
        body = handler(fc_environ(context=FCContext(request_id="rid-42")), start_response)
    assert body == [b"Internal Server Error"]
    status, headers, exc_info = calls[0]
    assert (status, headers) == (
        "500 Internal Server Error",
        [("content-type", "text/plain; charset=utf-8")],
    )
    # PEP 3333: the exception goes to start_response; FC ignores it, test clients re-raise it.
    assert exc_info[0] is Boom and str(exc_info[1]) == "kaboom"
    [record] = error_records(caplog)
    assert record.getMessage() == "Exception in ASGI application [request_id=rid-42]"
    assert record.exc_info is not None and record.exc_info[0] is Boom


def test_fc_serves_the_500_because_it_ignores_exc_info(loop: SharedLoop) -> None:
    response = fc_call(Bridge(raises_before_response, loop=loop))
    assert (response.status, response.body) == (500, b"Internal Server Error")


def test_a_pep3333_server_that_reraises_exc_info_sees_the_real_exception(loop: SharedLoop) -> None:
    def reraising_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        if exc_info is not None:  # what werkzeug's test client does
            raise exc_info[1].with_traceback(exc_info[2])
        return lambda data: None

    with pytest.raises(Boom, match="kaboom"):
        Bridge(raises_before_response, loop=loop)(fc_environ(), reraising_start_response)


def test_starlette_error_middleware_500_is_served_and_the_exception_passed_on(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def endpoint(request: Request) -> Response:
        raise Boom("in endpoint")

    app = Starlette(routes=[Route("/", endpoint)])
    calls, start_response = start_response_recorder()
    with caplog.at_level(logging.ERROR):
        body = Bridge(app, loop=loop)(fc_environ(), start_response)
    status, _, exc_info = calls[0]
    assert (status, body) == ("500 Internal Server Error", [b"Internal Server Error"])
    assert exc_info[0] is Boom
    assert [r.getMessage() for r in error_records(caplog)] == [
        "Exception in ASGI application [request_id=req-1]"
    ]


def test_failing_background_task_keeps_the_sent_response(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail() -> None:
        raise Boom("background")

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("done", background=BackgroundTask(fail))

    calls, start_response = start_response_recorder()
    with caplog.at_level(logging.ERROR):
        body = Bridge(Starlette(routes=[Route("/", endpoint)]), loop=loop)(
            fc_environ(), start_response
        )
    assert (calls[0][0], body) == ("200 OK", [b"done"])
    assert calls[0][2][0] is Boom
    assert len(error_records(caplog)) == 1


def test_exception_mid_body_answers_500_not_a_truncated_body(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise Boom("midway")

    response = fc_call(Bridge(app, loop=loop, lifespan="off"))
    assert (response.status, response.body) == (500, b"Internal Server Error")


@pytest.mark.parametrize(
    ("messages", "log"),
    [
        ([], "ASGI callable returned without starting response [request_id=req-1]."),
        (
            [{"type": "http.response.start", "status": 200, "headers": []}],
            "ASGI callable returned without completing response [request_id=req-1].",
        ),
    ],
)
def test_app_that_returns_early_gets_a_500(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, messages: list[Any], log: str
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)

    with caplog.at_level(logging.ERROR):
        response = fc_call(Bridge(app, loop=loop, lifespan="off"))
    assert (response.status, response.body) == (500, b"Internal Server Error")
    assert [r.getMessage() for r in error_records(caplog)] == [log]


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        (
            [{"type": "http.response.body", "body": b"x"}],
            "Expected ASGI message 'http.response.start', but got 'http.response.body'.",
        ),
        (
            [
                {"type": "http.response.start", "status": 200},
                {"type": "http.response.start", "status": 200},
            ],
            "Expected ASGI message 'http.response.body', but got 'http.response.start'.",
        ),
        (
            [
                {"type": "http.response.start", "status": 200},
                {"type": "http.response.body"},
                {"type": "http.response.body", "body": b"late"},
            ],
            "Unexpected ASGI message 'http.response.body' sent, after response already completed.",
        ),
    ],
)
def test_out_of_order_messages_are_app_errors(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, messages: list[Any], error: str
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)

    calls, start_response = start_response_recorder()
    with caplog.at_level(logging.ERROR):
        Bridge(app, loop=loop, lifespan="off")(fc_environ(), start_response)
    assert str(calls[0][2][1]) == error
    assert len(error_records(caplog)) == 1


@pytest.mark.parametrize("length", ["abc", "-1", "+5", "1_0", "٣"])
def test_bad_content_length_is_a_400(loop: SharedLoop, length: str) -> None:
    called: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(True)

    environ = fc_environ("POST", "/", body=b"12345")
    environ["CONTENT_LENGTH"] = length
    calls, start_response = start_response_recorder()
    body = Bridge(app, loop=loop, lifespan="off")(environ, start_response)
    assert calls[0][:2] == (
        "400 Bad Request",
        [("content-type", "application/json"), ("x-fc-error-type", "FcCommonError")],
    )
    assert [json.loads(chunk) for chunk in body] == [
        {
            "ErrorCode": "InvalidArgument",
            "ErrorMessage": f"Content-Length {length!r} is not a non-negative integer.",
        }
    ]
    assert called == []


def test_body_shorter_than_announced_is_a_400_not_a_hang(loop: SharedLoop) -> None:
    environ = fc_environ("POST", "/", body=b"12345")
    environ["CONTENT_LENGTH"] = "10"
    response = fc_call_environ(Bridge(raises_before_response, loop=loop), environ)
    assert response.status == 400
    assert response.body == (
        b'{"ErrorCode": "InvalidArgument", "ErrorMessage": '
        b'"The request body is 5 bytes, shorter than its Content-Length of 10."}'
    )


def test_missing_request_method_is_a_400(loop: SharedLoop) -> None:
    environ = {"PATH_INFO": "/", "wsgi.input": io.BytesIO()}
    response = fc_call_environ(Bridge(raises_before_response, loop=loop), environ)
    assert response.status == 400
    assert b"no REQUEST_METHOD" in response.body


def test_a_failure_inside_the_bridge_is_a_logged_500_not_an_escaping_exception(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    environ = fc_environ()
    environ["REMOTE_PORT"] = "not-a-port"  # int() fails while the scope is built
    with caplog.at_level(logging.ERROR):
        response = fc_call_environ(Bridge(raises_before_response, loop=loop), environ)
    assert (response.status, response.body) == (500, b"Internal Server Error")
    [record] = error_records(caplog)
    assert record.getMessage() == "fc_bridge failed to serve the request [request_id=req-1]"


def test_credentials_never_reach_logs_or_error_pages(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    context = FCContext()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            raise Boom("no lifespan")
        raise Boom(f"failed for request {scope['fc.context'].request_id}")

    handler = Bridge(app, loop=loop)
    with caplog.at_level(logging.DEBUG):
        response = fc_call(handler, context=context)
        handler.initializer(context)
        handler.pre_stop(context)
    logged = caplog.text + "".join(logging.Formatter().format(record) for record in caplog.records)
    captured = capsys.readouterr()
    everything = logged + captured.out + captured.err + response.body.decode() + repr(handler)
    assert response.status == 500
    assert SECRET not in everything
    assert context.credentials.security_token not in everything


def fc_call_environ(handler: Bridge, environ: dict[str, Any]) -> RuntimeResponse:
    return call_wsgi(handler, environ)
