"""Property-based tests: whatever FC hands over, the handler answers, and answers right."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fc_bridge import Bridge, Limits, WebFunction
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Receive, Scope, Send
from fc_bridge.local.emulator import Invocation, call_event, call_wsgi, http_event, wsgi_environ

from .conftest import PREFIX, FCContext, read_all
from .test_frontends_asgi import http_scope, talk

LOOP = SharedLoop()
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def check_scope(scope: dict[str, Any]) -> None:
    """An ASGI 3 HTTP scope, as the specification (HTTP 2.4) defines each key."""
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] in ("1.0", "1.1", "2")
    assert isinstance(scope["method"], str) and scope["method"] == scope["method"].upper()
    assert scope["scheme"] in ("http", "https")
    assert isinstance(scope["path"], str) and scope["path"].startswith("/")
    assert isinstance(scope["raw_path"], bytes)
    assert isinstance(scope["query_string"], bytes)
    assert isinstance(scope["root_path"], str)
    assert scope["path"].startswith(scope["root_path"])
    for name, value in scope["headers"]:
        assert isinstance(name, bytes) and isinstance(value, bytes)
        assert name == name.lower()
    client, server = scope["client"], scope["server"]
    assert client is None or (isinstance(client[0], str) and isinstance(client[1], int))
    assert server is None or (isinstance(server[0], str) and server[1] in (None, *range(65536)))
    assert isinstance(scope["state"], dict)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return
    check_scope(dict(scope))
    body = await read_all(receive)
    reply = {
        "method": scope["method"],
        "raw_path": scope["raw_path"].decode("utf-8", "surrogateescape"),
        "query": scope["query_string"].decode("latin-1"),
        "headers": [
            [n.decode("latin-1"), v.decode("utf-8", "replace")] for n, v in scope["headers"]
        ],
        "body": base64.b64encode(body).decode(),
    }
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(reply).encode()})


HANDLER = Bridge(echo, lifespan="off", loop=LOOP)

methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND"])
segment = st.one_of(
    st.text(alphabet="abcXYZ019-._~", min_size=0, max_size=8),
    st.sampled_from(["%00", "%2F", "%25", "..", ".", "%E9", "%C3%A9", "%FF", "caf%C3%A9", "é", ""]),
)
paths = st.lists(segment, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts))
queries = st.one_of(
    st.just(""),
    st.lists(
        st.tuples(st.text("abc_", min_size=1, max_size=4), st.text("xyz01%20+=", max_size=6)),
        max_size=4,
    ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
)
header_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12
).filter(
    lambda n: (
        n[0] != "-"
        and not n.startswith("x-fc")
        and n not in ("content-type", "content-length", "host")
    )
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=20,
).map(str.strip)
headers = st.dictionaries(header_names, header_values, max_size=6).map(lambda d: list(d.items()))
bodies = st.binary(max_size=2048)


def reply_of(body: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(body)
    return loaded


@SETTINGS
@given(method=methods, path=paths, query=queries, sent=headers, body=bodies, prefixed=st.booleans())
def test_fc2_environs_are_answered_and_echoed_faithfully(
    method: str, path: str, query: str, sent: list[tuple[str, str]], body: bytes, prefixed: bool
) -> None:
    target = (PREFIX if prefixed else "") + path + ("?" + query if query else "")
    invocation = Invocation(method, target, sent, body, "203.0.113.7")
    response = call_wsgi(HANDLER, wsgi_environ(invocation, FCContext()))
    assert 100 <= response.status <= 599
    for name in response.headers:
        assert TOKEN.match(name.encode())
    if response.status != 200:
        assert response.status == 400  # FC's answer to a request over a limit
        return
    if method == "HEAD":
        assert response.body == b""
        return
    reply = reply_of(response.body)
    assert reply["method"] == method
    assert (
        reply["raw_path"] == (PREFIX if prefixed else "") + path
        if path != "/" or prefixed
        else True
    )
    assert reply["query"] == query
    assert base64.b64decode(reply["body"]) == body
    echoed = dict(reply["headers"])
    for name, value in sent:
        assert echoed[name] == value


@SETTINGS
@given(method=methods, path=paths, sent=headers, body=bodies)
def test_fc3_events_are_answered_and_echoed_faithfully(
    method: str, path: str, sent: list[tuple[str, str]], body: bytes
) -> None:
    invocation = Invocation(method, path, sent, body, "203.0.113.7")
    event = http_event(invocation, request_id="r", account_id="1")
    response = call_event(HANDLER, event, FCContext())
    assert 100 <= response.status <= 599
    if response.status != 200 or method == "HEAD":
        assert response.status in (200, 400)
        return
    reply = reply_of(response.body)
    assert reply["method"] == method
    assert base64.b64decode(reply["body"]) == body
    echoed = dict(reply["headers"])
    for name, value in sent:
        assert echoed[name] == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@SETTINGS
@given(
    field=st.sampled_from(["headers", "queryParameters", "body", "isBase64Encoded", "rawPath"]),
    value=json_values,
)
def test_malformed_event_fields_are_a_400_never_a_500(field: str, value: Any) -> None:
    event = {
        "rawPath": "/",
        "headers": {"host": "x"},
        "body": "",
        "isBase64Encoded": False,
        "requestContext": {"requestId": "r", "http": {"method": "POST", "path": "/"}},
        field: value,
    }
    result = HANDLER(json.dumps(event).encode(), {"request_id": "r"})
    assert result["statusCode"] in (200, 400), result
    if field == "isBase64Encoded" and value is not True and result["statusCode"] == 200:
        assert base64.b64decode(json.loads(result["body"])["body"]) == b""


@SETTINGS
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_events_that_are_not_json_objects_are_a_400_or_unsupported(raw: bytes) -> None:
    from fc_bridge import UnsupportedEventError

    try:
        result = HANDLER(raw, {"request_id": "r"})
    except UnsupportedEventError:
        return  # the documented answer for JSON that is no HTTP event
    assert result["statusCode"] == 400


@SETTINGS
@given(
    declared=st.integers(min_value=0, max_value=5000),
    actual=st.binary(max_size=3000),
    limit=st.integers(min_value=0, max_value=4000),
)
def test_content_lengths_and_body_limits_always_get_an_answer(
    declared: int, actual: bytes, limit: int
) -> None:
    handler = Bridge(echo, lifespan="off", limits=Limits(request_body=limit), loop=LOOP)
    environ = wsgi_environ(Invocation("POST", "/", [], actual, "1.2.3.4"), FCContext())
    environ["CONTENT_LENGTH"] = str(declared)
    response = call_wsgi(handler, environ)
    if declared > limit:
        assert response.status == 400 and b"over FC's limit" in response.body
    elif declared > len(actual):
        assert response.status == 400 and b"shorter than its Content-Length" in response.body
    else:
        assert response.status == 200
        assert base64.b64decode(reply_of(response.body)["body"]) == actual[:declared]


# A web function's request headers: FC's own (credentials among them), the client's, some
# names more than once, in any order.
web_names = st.sampled_from(
    [
        b"host",
        b"accept",
        b"x-custom",
        b"x-fc-request-id",
        b"x-fc-function-name",
        b"x-fc-access-key-id",
        b"x-fc-access-key-secret",
        b"x-fc-security-token",
    ]
)
web_headers = st.lists(st.tuples(web_names, st.binary(max_size=12)), max_size=10)
CREDENTIALS = {b"x-fc-access-key-id", b"x-fc-access-key-secret", b"x-fc-security-token"}
WEB_LIMIT = 40


async def headers_app(scope: Scope, receive: Receive, send: Send) -> None:
    body = json.dumps([[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body.encode()})


WEB = WebFunction(Bridge(headers_app, lifespan="off", limits=Limits(request_headers=WEB_LIMIT)))


@SETTINGS
@given(sent=web_headers)
def test_web_functions_show_the_app_every_header_but_the_credentials_and_count_fcs_limit(
    sent: list[tuple[bytes, bytes]],
) -> None:
    # What the app sees and FC's 400 as a plain reading of the rules gives them, whatever
    # the names, their order and repeats (app_headers plans by the names it has seen).
    scope = {**http_scope("/"), "headers": sent}
    reply = talk(WEB, scope, [{"type": "http.request", "body": b"", "more_body": False}])
    size = sum(len(n) + len(v) for n, v in sent if not n.startswith(b"x-fc-"))
    if size > WEB_LIMIT:
        assert reply[0]["status"] == 400
        message = json.loads(reply[1]["body"])["ErrorMessage"]
        assert message.startswith(f"The size of the request headers is {size} bytes")
        return
    assert reply[0]["status"] == 200
    shown = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in json.loads(reply[1]["body"])]
    assert shown == [(n, v) for n, v in sent if n not in CREDENTIALS]
