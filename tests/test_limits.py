"""FC's size limits through the WSGI handler: exact boundaries, FC's answers, the app untouched."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from fc_bridge import Bridge, ConfigError, Limits
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Receive, Scope, Send

from .conftest import PREFIX, fc_call

calls: list[str] = []


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")
    message = await receive()
    calls.append(scope["path"])
    body = str(len(message["body"])).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(autouse=True)
def _clear() -> None:
    calls.clear()


def error(response: Any) -> dict[str, str]:
    assert response.header("x-fc-error-type") == "FcCommonError"
    assert response.header("content-type") == "application/json"
    result: dict[str, str] = json.loads(response.body)
    return result


def padded_headers(total: int) -> list[tuple[str, str]]:
    """Headers whose names and values add up to exactly ``total`` bytes, as the client sent them
    (FC's runtime adds a Content-Type and x-fc-* headers, which do not count)."""
    return [("X-Pad", "a" * (total - len("x-pad")))]


@pytest.fixture
def handler(loop: SharedLoop) -> Bridge:
    return Bridge(echo_length, loop=loop)


def test_request_headers_at_the_limit_pass(handler: Bridge) -> None:
    response = fc_call(handler, "GET", "/", padded_headers(8192))
    assert (response.status, response.body) == (200, b"0")


def test_request_headers_one_byte_over_are_rejected_before_the_app(handler: Bridge) -> None:
    response = fc_call(handler, "GET", "/", padded_headers(8193))
    assert response.status == 400
    assert error(response) == {
        "ErrorCode": "InvalidArgument",
        "ErrorMessage": (
            "The size of the request headers is 8193 bytes, over FC's limit of 8192 bytes."
        ),
    }
    assert calls == []


def test_fcs_own_headers_do_not_count(handler: Bridge) -> None:
    headers = [*padded_headers(8192), ("X-Fc-Request-Id", "r" * 100)]
    assert fc_call(handler, "GET", "/", headers).status == 200


@pytest.mark.parametrize(("length", "status"), [(4096, 200), (4097, 400)])
def test_request_target_boundary(handler: Bridge, length: int, status: int) -> None:
    prefix = f"{PREFIX}/p?q="
    response = fc_call(handler, "GET", prefix + "x" * (length - len(prefix)))
    assert response.status == status
    if status == 400:
        assert error(response)["ErrorMessage"] == (
            "The size of the request path and query is 4097 bytes, over FC's limit of 4096 bytes."
        )


@pytest.mark.parametrize(("size", "status"), [(32 * 1024 * 1024, 200), (32 * 1024 * 1024 + 1, 400)])
def test_synchronous_body_boundary(handler: Bridge, size: int, status: int) -> None:
    response = fc_call(handler, "POST", "/", [("Content-Length", str(size))], b"\0" * size)
    assert response.status == status
    if status == 200:
        assert response.body == str(size).encode()
    else:
        assert error(response)["ErrorMessage"] == (
            "The size of the request body is 33554433 bytes, over FC's limit of 33554432 bytes."
        )


@pytest.mark.parametrize(("size", "status"), [(128 * 1024, 200), (128 * 1024 + 1, 400)])
def test_asynchronous_body_boundary(handler: Bridge, size: int, status: int) -> None:
    headers = [("X-Fc-Invocation-Type", "Async")]
    response = fc_call(handler, "POST", "/", headers, b"\0" * size)
    assert response.status == status
    if status == 400:
        assert error(response)["ErrorMessage"] == (
            "The size of the asynchronous request body is 131073 bytes, "
            "over FC's limit of 131072 bytes."
        )


def response_with_headers(total: int) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        value = b"v" * (total - len(b"x-big"))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-big", value)]})
        await send({"type": "http.response.body", "body": b"fine"})

    return app


def test_response_headers_at_the_limit_pass(loop: SharedLoop) -> None:
    response = fc_call(Bridge(response_with_headers(8192), lifespan="off", loop=loop))
    assert (response.status, response.body) == (200, b"fine")


def test_response_headers_over_the_limit_become_a_logged_502(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Bridge(response_with_headers(8193), lifespan="off", loop=loop)
    with caplog.at_level(logging.ERROR):
        response = fc_call(handler)
    assert response.status == 502
    message = "The size of the response headers is 8193 bytes, over FC's limit of 8192 bytes."
    assert error(response) == {"ErrorCode": "BadResponse", "ErrorMessage": message}
    assert [r.getMessage() for r in caplog.records] == [
        f"Answering 502 [request_id=req-1]: {message}"
    ]


def test_response_body_limit_is_off_by_default(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * (40 * 1024 * 1024)})

    assert len(fc_call(Bridge(app, lifespan="off", loop=loop)).body) == 40 * 1024 * 1024


def test_response_body_limit_stops_an_endless_stream(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[int] = []

    async def endless(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:  # only the limit ends this
            await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
            sent.append(1000)

    handler = Bridge(endless, lifespan="off", limits=Limits(response_body=10_000), loop=loop)
    with caplog.at_level(logging.ERROR):
        response = fc_call(handler)
    assert response.status == 502
    assert error(response) == {
        "ErrorCode": "BadResponse",
        "ErrorMessage": (
            "The size of the response body is 11000 bytes, over FC's limit of 10000 bytes."
        ),
    }
    assert sum(sent) == 10_000
    assert len(caplog.records) == 1


@pytest.mark.parametrize(("size", "status"), [(10, 200), (11, 502)])
def test_response_body_limit_boundary(loop: SharedLoop, size: int, status: int) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * size})

    handler = Bridge(app, lifespan="off", limits=Limits(response_body=10), loop=loop)
    assert fc_call(handler).status == status


def test_an_app_that_swallows_the_overflow_still_gets_a_502(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.body", "body": b"x" * 20, "more_body": True})
        except OSError:
            await send({"type": "http.response.body", "body": b""})

    handler = Bridge(app, lifespan="off", limits=Limits(response_body=10), loop=loop)
    assert fc_call(handler).status == 502


def test_limits_can_be_switched_off(loop: SharedLoop) -> None:
    limits = Limits(request_headers=None, request_target=None, request_body=None)
    handler = Bridge(echo_length, limits=limits, loop=loop)
    response = fc_call(handler, "POST", "/" + "x" * 5000, padded_headers(9000), b"abc")
    assert (response.status, response.body) == (200, b"3")


@pytest.mark.parametrize("value", [-1, 1.5, "8k", True])
def test_limits_are_validated(value: Any) -> None:
    with pytest.raises(
        ConfigError,
        match=f"^Limits.request_body must be a non-negative int or None, got {value!r}.$",
    ):
        Limits(request_body=value)


def test_describe_names_every_limit() -> None:
    assert Limits(response_headers=1000).describe() == (
        "request_headers=8 KiB, request_target=4 KiB, request_body=32 MiB, "
        "async_request_body=128 KiB, response_headers=1000 B, response_body=off"
    )


def test_response_header_limit_can_be_switched_off(loop: SharedLoop) -> None:
    limits = Limits(response_headers=None)
    handler = Bridge(response_with_headers(20_000), lifespan="off", limits=limits, loop=loop)
    assert fc_call(handler).status == 200


def test_chunked_upload_over_the_limit_is_rejected_after_reading(loop: SharedLoop) -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "wsgi.input": io.BytesIO(b"x" * 11),
        "wsgi.input_terminated": True,
    }
    statuses: list[str] = []
    handler = Bridge(echo_length, limits=Limits(request_body=10), loop=loop)
    handler(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["400 Bad Request"]
    assert calls == []


def test_limits_are_values() -> None:
    limits = Limits(response_body=1000)
    assert limits == Limits(response_body=1000)
    assert limits != Limits()
    assert limits != "Limits(response_body=1000)"
    assert len({limits, Limits(response_body=1000)}) == 1
    assert repr(limits) == (
        "Limits(request_headers=8192, request_target=4096, request_body=33554432, "
        "async_request_body=131072, response_headers=8192, response_body=1000)"
    )
    with pytest.raises(AttributeError, match="Limits are immutable: make a new one to change"):
        limits.response_body = 5


def test_rejection_repr_names_status_code_and_message() -> None:
    rejection = Limits(request_target=1).check_request(2, 0, 0, is_async=False)
    assert repr(rejection) == (
        "Rejection(400, 'InvalidArgument', \"The size of the request path and query is 2 bytes, "
        "over FC's limit of 1 bytes.\")"
    )


def test_fcs_default_content_type_does_not_count(handler: Bridge) -> None:
    # The client sent 8192 bytes of headers and no Content-Type; FC's runtime adds its default.
    sent = [("Content-Length", "3")]
    sent += padded_headers(8192 - len("content-length") - len("3"))
    response = fc_call(handler, "POST", "/", sent, b"abc")
    assert (response.status, response.body) == (200, b"3")


@pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 400)])
def test_content_headers_count_like_any_other(handler: Bridge, extra: int, status: int) -> None:
    # Content-Type and Content-Length come as the environ's CONTENT_* keys, not HTTP_*; the
    # client sent them, so FC's gateway counted them.
    sent = [("Content-Type", "text/plain"), ("Content-Length", "3")]
    taken = len("content-type") + len("text/plain") + len("content-length") + len("3")
    sent += padded_headers(8192 - taken + extra)
    assert fc_call(handler, "POST", "/", sent, b"abc").status == status


@pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 400)])
def test_the_host_fc_2_dropped_counts_as_the_client_sent_it(
    handler: Bridge, extra: int, status: int
) -> None:
    # FC 2.0's runtime drops Host; on FC's default address the bridge puts the function's
    # domain back, which is what the client sent and FC's gateway counted.
    host = "123456789.cn-hangzhou.fc.aliyuncs.com"
    sent = padded_headers(8192 - len("host") - len(host) + extra)
    assert fc_call(handler, "GET", PREFIX + "/", sent).status == status
