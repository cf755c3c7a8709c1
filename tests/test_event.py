"""FC 3.0: the same handler answers HTTP-trigger events with FC's response dict."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import fc_bridge._bridge
import fc_bridge._event
import fc_bridge._headers
from fc_bridge import Bridge, ConfigError, Limits, UnsupportedEventError
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Receive, Scope, Send
from fc_bridge.local.emulator import Invocation, RuntimeResponse, call_event, call_wsgi, http_event

from .conftest import fc_environ


@dataclass
class FC3Context:
    """Shaped like FC 3.0's context: no credentials, no service (FC_FACTS section 3)."""

    request_id: str = "fc3-req"
    account_id: str = "1234567890"
    region: str = "cn-hangzhou"


seen: list[dict[str, Any]] = []


async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")
    message = await receive()
    seen.append({"scope": dict(scope), "body": message["body"]})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(autouse=True)
def _clear(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(fc_bridge._headers, "_warned", set())
    seen.clear()
    yield
    seen.clear()


def event_for(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> bytes:
    return http_event(Invocation(method, target, headers or [], body, "198.51.100.9"))


def fc3_call(handler: Bridge, *args: Any, **kwargs: Any) -> RuntimeResponse:
    return call_event(handler, event_for(*args, **kwargs), FC3Context())


def test_whole_scope_from_an_event(loop: SharedLoop) -> None:
    event = event_for(
        "POST",
        "/items/caf%C3%A9?q=a%20b&q=c&x=%2C",
        [("content-type", "application/json"), ("accept-encoding", "gzip"), ("X-Many", "1")],
        b'{"a":1}',
    )
    context = FC3Context()
    assert call_event(Bridge(recorder, loop=loop), event, context).status == 200
    parsed = json.loads(event)
    # The context's own repr shows its credentials: the app gets it behind a redacting proxy.
    shown = seen[0]["scope"]["fc.context"]
    assert shown._target is context and "S3cr3t" not in repr(shown)
    assert seen[0] == {
        "scope": {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "https",
            "path": "/items/café",
            "raw_path": b"/items/caf%C3%A9",
            # FC joined q's two values with a comma: one value "a b,c", as delivered.
            "query_string": b"q=a%20b%2Cc&x=%2C",
            "root_path": "",
            "headers": [
                (b"content-type", b"application/json"),
                (b"accept-encoding", b"gzip"),
                (b"x-many", b"1"),
                (b"host", b"fc-bridge.cn-hangzhou.fcapp.run"),
            ],
            "client": ("198.51.100.9", 0),
            "server": ("fc-bridge.cn-hangzhou.fcapp.run", 443),
            "state": {},
            "extensions": {"http.response.pathsend": {}},
            "fc.context": shown,
            "fc.request_uri": "/items/caf%C3%A9?q=a%20b%2Cc&x=%2C",
            "fc.event": parsed,
        },
        "body": b'{"a":1}',
    }


def test_parsed_dict_and_str_events_are_accepted(loop: SharedLoop) -> None:
    event = event_for("GET", "/d")
    handler = Bridge(recorder, loop=loop)
    handler(json.loads(event), FC3Context())
    handler(event.decode(), FC3Context())
    handler.event(bytearray(event), FC3Context())
    assert [s["scope"]["path"] for s in seen] == ["/d", "/d", "/d"]


def test_the_same_request_through_both_generations_gives_the_same_scope(loop: SharedLoop) -> None:
    # An HTTPS custom domain on FC 2.0 says so with scheme="https" (FC reports http).
    handler = Bridge(recorder, scheme="https", loop=loop)
    request: tuple[str, str, list[tuple[str, str]], bytes] = (
        "PUT",
        "/a/b%20c?x=1&y=%C3%A9",
        [
            ("Host", "api.example.com"),
            ("Content-Type", "text/plain"),
            ("X-Forwarded-Proto", "https"),
        ],
        "héllo".encode(),
    )
    call_wsgi(handler, fc_environ(*request, client_ip="198.51.100.9"))
    fc3_call(handler, *request)
    fc2, fc3 = (dict(s["scope"]) for s in seen)
    # FC 2.0's runtime reports its own server ("FCRUNTIME", 9000) and adds a header naming
    # the handler; everything the client sent reaches the app the same way on both paths.
    for scope in (fc2, fc3):
        for key in [k for k in scope if k.startswith("fc.")] + ["server"]:
            del scope[key]
        scope["headers"] = sorted(
            h for h in scope["headers"] if h[0] not in (b"x-fc-function-handler", b"content-length")
        )
    assert fc2 == fc3
    assert seen[0]["body"] == seen[1]["body"] == "héllo".encode()


ROUTES: list[Route] = []


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "query": sorted(request.query_params.multi_items()),
            "type": request.headers.get("content-type"),
            "size": len(body),
            "cookies": request.cookies,
        }
    )


async def go(request: Request) -> Response:
    return RedirectResponse(request.url_for("echo"))


async def binary(request: Request) -> Response:
    return Response(bytes(range(256)), media_type="image/png")


async def two_cookies(request: Request) -> Response:
    response = JSONResponse({})
    response.set_cookie("a", "1", expires="Wed, 21 Oct 2037 07:28:00 GMT")
    response.set_cookie("b", "2", httponly=True)
    response.set_cookie("c", "3", samesite="strict")
    return response


example = Starlette(
    routes=[
        Route("/echo", echo, methods=["GET", "POST", "HEAD"], name="echo"),
        Route("/go", go),
        Route("/binary", binary, methods=["POST", "GET"]),
        Route("/cookies", two_cookies),
    ]
)


@pytest.mark.parametrize(
    ("request_args", "status", "expected"),
    [
        (("GET", "/echo?tag=a&tag=b&n=1"), 200, {"query": [["n", "1"], ["tag", "a,b"]]}),
        (
            ("POST", "/echo", [("Content-Type", "application/json")], b'{"k": "v"}'),
            200,
            {"method": "POST", "type": "application/json", "size": 10},
        ),
        (
            ("POST", "/echo", [("Content-Type", "application/octet-stream")], bytes(range(256))),
            200,
            {"size": 256},
        ),
        (
            ("GET", "/echo", [("Cookie", "session=abc; theme=dark")]),
            200,
            {"cookies": {"session": "abc", "theme": "dark"}},
        ),
        (("GET", "/nowhere"), 404, None),
    ],
    ids=["repeated-query", "post-json", "post-base64-binary", "cookies", "404"],
)
def test_requests_through_events(
    loop: SharedLoop, request_args: tuple[Any, ...], status: int, expected: dict[str, Any] | None
) -> None:
    response = fc3_call(Bridge(example, loop=loop), *request_args)
    assert response.status == status
    if expected is not None:
        got = json.loads(response.body)
        assert {key: got[key] for key in expected} == expected


def test_multipart_upload(loop: SharedLoop) -> None:
    payload = bytes(range(256)) * 4
    boundary = "xyz"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = [("Content-Type", f"multipart/form-data; boundary={boundary}")]
    event = json.loads(event_for("POST", "/echo", headers, body))
    assert event["isBase64Encoded"] is True  # not valid UTF-8: FC sends it base64-encoded
    response = call_event(Bridge(example, loop=loop), event, FC3Context())
    assert json.loads(response.body)["size"] == len(body)


def test_head_has_headers_and_no_body(loop: SharedLoop) -> None:
    result = Bridge(example, loop=loop)(event_for("HEAD", "/echo"), FC3Context())
    assert (result["statusCode"], result["body"], result["isBase64Encoded"]) == (200, "", False)
    assert result["headers"]["content-type"] == "application/json"


def test_redirect_keeps_the_root_path(loop: SharedLoop) -> None:
    handler = Bridge(example, root_path="/api", loop=loop)
    result = handler(event_for("GET", "/api/go"), FC3Context())
    assert result["statusCode"] == 307
    assert result["headers"]["location"] == "https://fc-bridge.cn-hangzhou.fcapp.run/api/echo"


def test_binary_response_survives_bit_for_bit(loop: SharedLoop) -> None:
    result = Bridge(example, loop=loop)(event_for("GET", "/binary"), FC3Context())
    assert result["isBase64Encoded"] is True
    assert base64.b64decode(result["body"]) == bytes(range(256))


def test_every_cookie_can_be_recovered_from_the_dict(loop: SharedLoop) -> None:
    result = Bridge(example, loop=loop)(event_for("GET", "/cookies"), FC3Context())
    cookies = [v for k, v in result["headers"].items() if k.lower() == "set-cookie"]
    assert [c.split(";")[0] for c in cookies] == ["a=1", "b=2", "c=3"]
    assert "expires=Wed, 21 Oct 2037 07:28:00 GMT" in cookies[0]  # commas and all
    assert len({k for k in result["headers"] if k.lower() == "set-cookie"}) == 3
    # What a browser gets when FC sends every key as a header line:
    sent = call_event(Bridge(example, loop=loop), event_for("GET", "/cookies"), FC3Context())
    assert len(sent.headers["Set-Cookie"]) == 3


def test_join_mode_puts_every_cookie_in_one_value(loop: SharedLoop) -> None:
    cased = Bridge(example, loop=loop)(event_for("GET", "/cookies"), FC3Context())
    joined = Bridge(example, set_cookie="join", loop=loop)(
        event_for("GET", "/cookies"), FC3Context()
    )
    cookies = [v for k, v in cased["headers"].items() if k.lower() == "set-cookie"]
    assert [k for k in joined["headers"] if k.lower() == "set-cookie"] == ["set-cookie"]
    assert joined["headers"]["set-cookie"] == ", ".join(cookies)


def test_set_cookie_mode_is_validated() -> None:
    with pytest.raises(ConfigError, match=r'set_cookie must be "case" or "join", got .split.'):
        Bridge(example, set_cookie="split")


def body_app(content_type: bytes | None, body: bytes, encoding: bytes | None = None) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", content_type)] if content_type else []
        if encoding:
            headers.append((b"content-encoding", encoding))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize(
    ("content_type", "body", "encoding", "as_text"),
    [
        (b"text/html; charset=utf-8", "<p>café</p>".encode(), None, True),
        (b"application/json", b'{"a": 1}', None, True),
        (b"application/problem+json", b"{}", None, True),
        (b"application/atom+xml", b"<feed/>", None, True),
        (b"application/javascript", b"var a;", None, True),
        (b"application/x-www-form-urlencoded", b"a=1", None, True),
        (b"image/svg+xml", b"<svg/>", None, True),
        (None, b"plain", None, True),
        (b"text/plain; charset=latin-1", "café".encode("latin-1"), None, False),
        (b"image/png", b"\x89PNG\r\n", None, False),
        (b"application/octet-stream", b"ascii bytes", None, False),
        (b"application/json", b'{"a": 1}', b"gzip", False),
        (b"text/plain", b"x", b"br", False),
    ],
)
def test_body_is_text_when_fc_can_carry_it_as_text(
    loop: SharedLoop, content_type: bytes | None, body: bytes, encoding: bytes | None, as_text: bool
) -> None:
    handler = Bridge(body_app(content_type, body, encoding), lifespan="off", loop=loop)
    result = handler(event_for(), FC3Context())
    assert result["isBase64Encoded"] is (not as_text)
    sent = body.decode() if as_text else base64.b64encode(body).decode()
    assert result["body"] == sent


def test_a_remembered_content_type_still_decides_each_body_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    as_text = fc_bridge._event.as_text
    monkeypatch.setattr(fc_bridge._event, "_textual", {})
    for _ in range(2):  # the second time, the verdict on the type comes from the cache
        assert as_text("café".encode(), b"text/plain", b"") == "café"
        assert as_text(b"\xff", b"text/plain", b"") is None  # not UTF-8: base64 after all
        assert as_text(b"x", b"image/png", b"") is None
    assert fc_bridge._event._textual == {b"text/plain": True, b"image/png": False}
    monkeypatch.setattr(fc_bridge._event, "_textual", {b"t%d" % n: False for n in range(256)})
    assert as_text(b"x", b"text/csv", b"") == "x"  # a full cache: decided, not remembered
    assert b"text/csv" not in fc_bridge._event._textual


def test_a_header_with_a_lone_surrogate_reaches_the_app_as_fc_encodes_it(
    loop: SharedLoop,
) -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    event = json.loads(event_for())
    event["headers"]["X-Odd"] = "a\udcffb"
    Bridge(app, lifespan="off", loop=loop)(json.dumps(event).encode(), FC3Context())
    expected = (b"x-odd", "a\udcffb".encode("utf-8", "surrogatepass"))
    assert expected in seen[0]["headers"]


def test_repeated_headers_other_than_set_cookie_are_combined(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"vary", b"accept"), (b"Vary", b"cookie"), (b"x-cafe", b"\xc3\xa9t\xc3\xa9")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    result = Bridge(app, lifespan="off", loop=loop)(event_for(), FC3Context())
    assert result["headers"] == {"vary": "accept, cookie", "x-cafe": "été"}


def test_reserved_headers_are_dropped_on_this_path_too(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    app = body_app(b"text/plain", b"x")

    async def with_server(scope: Scope, receive: Receive, send: Send) -> None:
        async def add(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"server", b"mine")]
            await send(message)

        await app(scope, receive, add)

    with caplog.at_level(logging.WARNING):
        result = Bridge(with_server, lifespan="off", loop=loop)(event_for(), FC3Context())
    assert result["headers"] == {"content-type": "text/plain"}
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    ("encoding", "before", "after"),
    [
        ("utf-8", "", ""),
        ("utf-8", "", " \r\n"),
        ("utf-8", "\n", ""),
        ("utf-8-sig", "", ""),
        ("utf-16-le", "", ""),
        ("utf-16", "", ""),
        ("utf-32-be", " ", " "),
    ],
)
def test_an_event_is_read_in_every_encoding_json_reads(
    loop: SharedLoop, encoding: str, before: str, after: str
) -> None:
    # FC sends UTF-8, read without json.loads' per-call work; whatever else json.loads reads
    # (other encodings, whitespace around the object, a lone surrogate) reads the same.
    event = json.loads(event_for(headers=[("x-cafe", "été")]))
    event["headers"]["X-Odd"] = "a\udcffb"
    text = before + json.dumps(event, ensure_ascii=False) + after
    result = Bridge(recorder, loop=loop)(text.encode(encoding, "surrogatepass"), FC3Context())
    assert result["statusCode"] == 200
    headers = seen[0]["scope"]["headers"]
    assert (b"x-cafe", "été".encode()) in headers
    assert (b"x-odd", "a\udcffb".encode("utf-8", "surrogatepass")) in headers


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (b"{not json", "The event is not valid JSON: got bytes that is not a JSON object."),
        (b'{"a": 1} {}', "The event is not valid JSON: got bytes that is not a JSON object."),
        (b'{"a": ' * 100_000, "The event is not valid JSON: got bytes that is not a JSON object."),
        (b"\xff\xfe", "The event is not valid JSON: got bytes that is not a JSON object."),
        (b"[1, 2]", "The event is not valid JSON: got bytes that is not a JSON object."),
        (12345, "The event is not valid JSON: got int that is not a JSON object."),
    ],
)
def test_an_event_that_is_not_json_is_a_400(loop: SharedLoop, event: Any, message: str) -> None:
    result = Bridge(recorder, loop=loop)(event, FC3Context())
    assert result["statusCode"] == 400
    assert result["headers"]["x-fc-error-type"] == "FcCommonError"
    assert json.loads(result["body"]) == {"ErrorCode": "InvalidArgument", "ErrorMessage": message}
    assert seen == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"isBase64Encoded": True, "body": "not base64!"}, "is marked isBase64Encoded but is not"),
        ({"body": 42}, "The event's body must be a string."),
        ({"rawPath": None}, "no requestContext.http.method or rawPath"),
    ],
)
def test_malformed_http_events_are_a_400(
    loop: SharedLoop, change: dict[str, Any], message: str
) -> None:
    event = json.loads(event_for("POST", "/x", body=b"abc"))
    event.update(change)
    result = Bridge(recorder, loop=loop)(event, FC3Context())
    assert result["statusCode"] == 400
    assert message in json.loads(result["body"])["ErrorMessage"]
    assert seen == []


@pytest.mark.parametrize(
    ("parameters", "query"),
    [(None, b""), ({"tag": ["a", "b,c"], "n": 1}, b"tag=a&tag=b%2Cc&n=1")],
    ids=["absent", "lists-and-numbers"],
)
def test_query_parameters_in_other_shapes(loop: SharedLoop, parameters: Any, query: bytes) -> None:
    event = json.loads(event_for())
    event["queryParameters"] = parameters
    Bridge(recorder, loop=loop)(event, FC3Context())
    assert seen[0]["scope"]["query_string"] == query


def test_missing_method_is_a_400(loop: SharedLoop) -> None:
    event = json.loads(event_for())
    del event["requestContext"]["http"]["method"]
    assert Bridge(recorder, loop=loop)(event, FC3Context())["statusCode"] == 400


def test_a_failure_inside_the_bridge_is_a_500_dict(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug in the bridge")

    monkeypatch.setattr(fc_bridge._event, "parse_event", broken)
    with caplog.at_level(logging.ERROR):
        result = Bridge(recorder, loop=loop)(event_for(), FC3Context())
    assert (result["statusCode"], result["body"]) == (500, "Internal Server Error")
    assert caplog.records[0].getMessage().endswith("[request_id=fc3-req]")


TIMER_EVENT = b'{"triggerTime": "2026-11-23T00:00:00Z", "triggerName": "tick", "payload": "x"}'


def test_other_triggers_raise_a_clear_error_without_on_event(loop: SharedLoop) -> None:
    with pytest.raises(
        UnsupportedEventError,
        match=r"not an HTTP request \(a JSON object with keys \['payload', 'triggerName', "
        r"'triggerTime'\]\); pass bridge\(app, on_event=\.\.\.\)",
    ):
        Bridge(recorder, loop=loop)(TIMER_EVENT, FC3Context())


def test_other_triggers_go_to_on_event_as_fc_passed_them(loop: SharedLoop) -> None:
    calls: list[Any] = []

    def on_event(event: Any, context: Any) -> str:
        calls.append((event, context.request_id))
        return "handled"

    handler = Bridge(recorder, on_event=on_event, loop=loop)
    assert handler(TIMER_EVENT, FC3Context()) == "handled"
    assert handler(b"plain text payload", FC3Context()) == "handled"
    assert calls == [(TIMER_EVENT, "fc3-req"), (b"plain text payload", "fc3-req")]


def test_async_on_event_runs_on_the_shared_loop(loop: SharedLoop) -> None:
    import asyncio

    async def on_event(event: Any, context: Any) -> dict[str, Any]:
        return {"loop": asyncio.get_running_loop() is loop.loop, "event": json.loads(event)}

    result = Bridge(recorder, on_event=on_event, loop=loop)(TIMER_EVENT, FC3Context())
    assert result == {"loop": True, "event": json.loads(TIMER_EVENT)}


def test_on_event_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="on_event must be a callable"):
        Bridge(recorder, on_event="handler")  # type: ignore[arg-type]


def test_limits_apply_to_events_with_the_same_answers(loop: SharedLoop) -> None:
    handler = Bridge(recorder, loop=loop)
    pad = "a" * (8192 - len("x-pad") - len("host") - len("fc-bridge.cn-hangzhou.fcapp.run"))
    assert fc3_call(handler, "GET", "/", [("X-Pad", pad)]).status == 200
    fcs_own = [("X-Pad", pad), ("X-Fc-Trace-Id", "t" * 100)]  # FC's headers do not count
    assert fc3_call(handler, "GET", "/", fcs_own).status == 200
    over = fc3_call(handler, "GET", "/", [("X-Pad", pad + "a")])
    assert over.status == 400
    assert json.loads(over.body) == {
        "ErrorCode": "InvalidArgument",
        "ErrorMessage": (
            "The size of the request headers is 8193 bytes, over FC's limit of 8192 bytes."
        ),
    }
    assert fc3_call(handler, "GET", "/" + "p" * 4095).status == 200
    assert fc3_call(handler, "GET", "/" + "p" * 4096).status == 400
    async_headers = [("X-Fc-Invocation-Type", "Async")]
    assert fc3_call(handler, "POST", "/", async_headers, b"\0" * 131072).status == 200
    assert fc3_call(handler, "POST", "/", async_headers, b"\0" * 131073).status == 400
    assert len(seen) == 4


@pytest.mark.parametrize(("size", "status"), [(32 * 1024 * 1024, 200), (32 * 1024 * 1024 + 1, 400)])
def test_synchronous_body_limit_counts_the_decoded_body(
    loop: SharedLoop, size: int, status: int
) -> None:
    headers = [("Content-Type", "application/octet-stream")]
    response = fc3_call(Bridge(recorder, loop=loop), "POST", "/", headers, b"\xff" * size)
    assert response.status == status


def test_response_limits_apply_to_events(loop: SharedLoop) -> None:
    big = body_app(b"text/plain", b"x" * 11)
    result = Bridge(big, lifespan="off", limits=Limits(response_body=10), loop=loop)(
        event_for(), FC3Context()
    )
    assert result["statusCode"] == 502
    assert json.loads(result["body"])["ErrorCode"] == "BadResponse"


def test_lifecycle_hooks_with_an_fc3_context(loop: SharedLoop) -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            events.append(f"startup {scope['fc.context'].request_id}")
            await send({"type": "lifespan.startup.complete"})
            await receive()
            events.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        await recorder(scope, receive, send)

    handler = Bridge(app, loop=loop)
    handler.initializer(FC3Context(request_id="init"))
    fc3_call(handler)
    handler.pre_stop(FC3Context())
    assert events == ["startup init", "shutdown"]
    assert len(seen) == 1


def test_request_id_falls_back_to_the_event(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("x")

    event = json.loads(event_for())
    event["requestContext"]["requestId"] = "from-event"
    with caplog.at_level(logging.ERROR):
        Bridge(failing, lifespan="off", loop=loop)(event, object())
    assert caplog.records[0].getMessage() == "Exception in ASGI application [request_id=from-event]"


def test_emulated_fc3_turns_an_escaping_exception_into_502() -> None:
    def broken(event: Any, context: Any) -> Any:
        raise KeyError("boom")

    assert call_event(broken, event_for(), FC3Context()).status == 502
