"""The HTTP scope the app sees through FC 2.0's WSGI handler."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import pytest

from fc_bridge import Bridge, ConfigError
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Message, Receive, Scope, Send

from .conftest import PREFIX, FCContext, fc_call, fc_environ

seen: list[dict[str, Any]] = []


async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 200 and records the scope and the body it received."""
    if scope["type"] == "lifespan":
        await receive()
        scope["state"]["opened"] = "db"
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    message: Message = await receive()
    seen.append({"scope": dict(scope), "body": message["body"]})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    seen.clear()
    yield
    seen.clear()


@pytest.fixture
def handler(loop: SharedLoop) -> Bridge:
    return Bridge(recorder, loop=loop)


def test_whole_scope_on_fcs_default_address(handler: Bridge) -> None:
    context = FCContext()
    response = fc_call(
        handler,
        "POST",
        f"{PREFIX}/items/caf%C3%A9?q=a%20b&q=2",
        [
            ("Host", "123.cn-hangzhou.fc.aliyuncs.com"),
            ("Content-Type", "application/json"),
            ("Content-Length", "7"),
            ("X-Many", "v1"),
            ("X-Many", "v2"),
        ],
        b'{"a":1}',
        context=context,
    )
    assert response.status == 200
    # The context's own repr shows its credentials: the app gets it behind a redacting proxy.
    shown = seen[0]["scope"]["fc.context"]
    assert shown._target is context and "S3cr3t" not in repr(shown)
    assert seen[0] == {
        "scope": {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": f"{PREFIX}/items/café",
            "raw_path": f"{PREFIX}/items/caf%C3%A9".encode(),
            "query_string": b"q=a%20b&q=2",
            "root_path": PREFIX,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"7"),
                (b"host", b"123.cn-hangzhou.fc.aliyuncs.com"),
                (b"x-many", b"v1,v2"),
                (b"x-fc-function-handler", b"main.handler"),
            ],
            "client": ("203.0.113.7", 0),
            "server": ("123.cn-hangzhou.fc.aliyuncs.com", 80),  # not FC's "FCRUNTIME", 9000
            "state": {"opened": "db"},
            "extensions": {"http.response.pathsend": {}},
            "fc.context": shown,
            "fc.request_uri": f"{PREFIX}/items/caf%C3%A9?q=a%20b&q=2",
        },
        "body": b'{"a":1}',
    }


def test_custom_domain_has_no_root_path(handler: Bridge) -> None:
    fc_call(handler, "GET", "/items/1", [("Host", "api.example.com")])
    scope = seen[0]["scope"]
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == ("", "/items/1", b"/items/1")


def test_bare_prefix_is_the_apps_root(handler: Bridge) -> None:
    fc_call(handler, "GET", PREFIX)
    scope = seen[0]["scope"]
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        PREFIX,
        PREFIX + "/",
        (PREFIX + "/").encode(),
    )


def test_qualified_service_prefix(handler: Bridge) -> None:
    fc_call(handler, "GET", "/2016-08-15/proxy/svc.LATEST/fn/a")
    assert seen[0]["scope"]["root_path"] == "/2016-08-15/proxy/svc.LATEST/fn"


@pytest.mark.parametrize(
    "target",
    [
        "/2016-08-15/proxy/svc",  # no function
        "/2016-08-15/proxy/svc/",  # an empty function name
        "/2016-08-15/proxy//fn/a",  # an empty service name
        "/2016-08-15/proxy/",
    ],
)
def test_an_incomplete_prefix_is_an_ordinary_path(handler: Bridge, target: str) -> None:
    fc_call(handler, "GET", target)
    scope = seen[0]["scope"]
    assert (scope["root_path"], scope["path"]) == ("", target)


@pytest.mark.parametrize(
    ("root_path", "target", "expected_root", "expected_path"),
    [
        ("/api", f"{PREFIX}/items", "/api", "/api/items"),
        ("/api", "/api/items", "/api", "/api/items"),
        ("/api", "/items", "/api", "/api/items"),
        ("/api/", "/apiary", "/api", "/api/apiary"),
        ("/", f"{PREFIX}/items", "", "/items"),
    ],
)
def test_explicit_root_path_overrides_the_prefix(
    loop: SharedLoop, root_path: str, target: str, expected_root: str, expected_path: str
) -> None:
    fc_call(Bridge(recorder, root_path=root_path, loop=loop), "GET", target)
    scope = seen[0]["scope"]
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        expected_root,
        expected_path,
        expected_path.encode(),
    )


@pytest.mark.parametrize("bad", ["api", 3])
def test_root_path_must_be_a_path(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"root_path .* must be None or a path starting with"):
        Bridge(recorder, root_path=bad)


def test_non_ascii_query_and_header_values_are_utf8(handler: Bridge) -> None:
    # FC's runtime hands over real Unicode strings (decoded from JSON), not Latin-1 stand-ins.
    fc_call(handler, "GET", "/s?q=ß東京", [("X-Name", "Zoë 東京")])
    scope = seen[0]["scope"]
    assert scope["query_string"] == "q=ß東京".encode()
    assert (b"x-name", "Zoë 東京".encode()) in scope["headers"]


def test_bodiless_request_gets_no_invented_content_headers(handler: Bridge) -> None:
    # FC's runtime sets CONTENT_LENGTH "0" and CONTENT_TYPE "application/octet-stream" on
    # every request; a GET that sent neither shows neither, as under uvicorn.
    fc_call(handler, "GET", "/", [("Accept", "*/*")])
    names = [name for name, _ in seen[0]["scope"]["headers"]]
    assert b"content-length" not in names
    assert b"content-type" not in names


def test_a_body_keeps_fcs_default_content_type(handler: Bridge) -> None:
    # With a body, FC's default cannot be told apart from a client's own octet-stream.
    fc_call(handler, "POST", "/", [], b"data")
    assert (b"content-type", b"application/octet-stream") in seen[0]["scope"]["headers"]


def test_process_environment_does_not_leak_into_headers(
    loop: SharedLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fc_bridge._wsgi

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setattr(fc_bridge._wsgi, "_os_http_variables", None)
    fc_call(Bridge(recorder, loop=loop), "GET", "/", [("X-Real", "1")])
    headers = dict(seen[0]["scope"]["headers"])
    assert b"proxy" not in headers
    assert headers[b"x-real"] == b"1"
    assert os.environ["HTTP_PROXY"] == "http://proxy.internal:3128"


def test_a_client_header_equal_to_nothing_in_the_environment_is_kept(
    loop: SharedLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fc_bridge._wsgi

    monkeypatch.setenv("HTTP_PROXY", "from-env")
    monkeypatch.setattr(fc_bridge._wsgi, "_os_http_variables", None)
    fc_call(Bridge(recorder, loop=loop), "GET", "/", [("Proxy", "from-client")])
    assert (b"proxy", b"from-client") in seen[0]["scope"]["headers"]


@pytest.mark.parametrize(
    ("option", "hops", "forwarded", "expected"),
    [
        ("auto", 0, None, "http"),
        # A client's X-Forwarded-Proto is not trusted unless proxies are declared.
        ("auto", 0, "https", "http"),
        ("auto", 1, "https", "https"),
        # The right-most value is the trusted proxy's; what is left of it, the client's.
        ("auto", 1, "https, http", "http"),
        ("auto", 2, "https, http", "https"),
        ("auto", 3, "https, http", "http"),  # fewer values than proxies: FC's report
        ("auto", 1, "gopher", "http"),
        ("https", 0, None, "https"),
        ("http", 1, "https", "http"),
    ],
)
def test_scheme(
    loop: SharedLoop, option: str, hops: int, forwarded: str | None, expected: str
) -> None:
    headers = [("X-Forwarded-Proto", forwarded)] if forwarded else []
    fc_call(Bridge(recorder, scheme=option, forwarded=hops, loop=loop), "GET", "/", headers)
    assert seen[0]["scope"]["scheme"] == expected


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (0, "203.0.113.7", "198.51.100.1"),
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),
        (2, "6.6.6.6, 203.0.113.7", "6.6.6.6"),
    ],
)
def test_client_comes_from_fc_unless_proxies_are_trusted(
    loop: SharedLoop, hops: int, forwarded: str, expected: str
) -> None:
    handler = Bridge(recorder, forwarded=hops, loop=loop)
    fc_call(handler, "GET", "/", [("X-Forwarded-For", forwarded)], client_ip="198.51.100.1")
    assert seen[0]["scope"]["client"][0] == expected


def test_forwarded_option_is_validated() -> None:
    with pytest.raises(ConfigError, match="forwarded must be the number of proxies to trust"):
        Bridge(recorder, forwarded=-1)


def test_scheme_option_is_validated() -> None:
    with pytest.raises(ConfigError, match='scheme must be "auto", "http" or "https", got \'ftp\''):
        Bridge(recorder, scheme="ftp")


def test_state_is_a_shallow_copy_per_request(loop: SharedLoop) -> None:
    shared: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"].update(counter=0, log=shared)
            await send({"type": "lifespan.startup.complete"})
            await receive()
            return
        scope["state"]["counter"] += 1  # rebinding a key stays in this request
        scope["state"]["log"].append("x")  # mutating a shared object is visible to all
        body = str(scope["state"]["counter"]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    handler = Bridge(app, loop=loop)
    assert [fc_call(handler).body for _ in range(3)] == [b"1", b"1", b"1"]
    assert shared == ["x", "x", "x"]


def test_pep3333_environ_from_another_wsgi_server(handler: Bridge) -> None:
    # No fc.request_uri: strings are PEP 3333 Latin-1 stand-ins for bytes.
    environ = {
        "REQUEST_METHOD": "get",
        "SCRIPT_NAME": "/mnt",
        "PATH_INFO": "/caf\xc3\xa9",
        "QUERY_STRING": "x=\xc3\xa9",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.0",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50123",
        "HTTP_X_NAME": "Zo\xc3\xab",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "https",
    }
    statuses: list[str] = []
    body = handler(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert (statuses, list(body)) == (["200 OK"], [b"ok"])
    scope = seen[0]["scope"]
    assert scope["method"] == "GET"
    assert scope["http_version"] == "1.0"
    assert scope["scheme"] == "https"
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/mnt",
        "/mnt/café",
        b"/mnt/caf%C3%A9",
    )
    assert scope["query_string"] == "x=é".encode()
    assert scope["headers"] == [(b"x-name", "Zoë".encode())]
    assert scope["client"] == ("127.0.0.1", 50123)
    assert scope["server"] == ("localhost", 8000)
    assert scope["fc.context"] is None


def test_raw_uri_from_gunicorn_is_used(handler: Bridge) -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/a%2Fb?x=1",
        "PATH_INFO": "/a/b",
        "QUERY_STRING": "x=1",
        "wsgi.input": io.BytesIO(),
    }
    list(handler(environ, lambda *args: None))
    scope = seen[0]["scope"]
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/a/b", b"/a%2Fb", b"x=1")
    assert scope["client"] is None
    assert scope["server"] is None


def test_chunked_upload_from_another_server_is_read_to_its_end(handler: Bridge) -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/up",
        "wsgi.input": io.BytesIO(b"chunked body"),
        "wsgi.input_terminated": True,
    }
    list(handler(environ, lambda *args: None))
    assert seen[0]["body"] == b"chunked body"


def test_unterminated_input_without_length_is_empty(handler: Bridge) -> None:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "wsgi.input": io.BytesIO(b"junk")}
    list(handler(environ, lambda *args: None))
    assert seen[0]["body"] == b""


def test_environ_without_input_has_an_empty_body(handler: Bridge) -> None:
    list(handler({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, lambda *args: None))
    assert seen[0]["body"] == b""
    assert seen[0]["scope"]["path"] == "/x"


def test_body_is_handed_over_without_a_copy(handler: Bridge) -> None:
    body = bytes(range(256)) * 4096
    environ = fc_environ("PUT", "/blob", [("Content-Type", "application/octet-stream")], body)
    list(handler(environ, lambda *args: None))
    assert seen[0]["body"] is body


def test_short_reads_from_a_socket_are_completed(handler: Bridge) -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self, size: int = -1) -> bytes:
            chunk, self.data = self.data[:3], self.data[3:]
            return chunk

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "CONTENT_LENGTH": "10",
        "wsgi.input": Trickle(b"0123456789"),
    }
    list(handler(environ, lambda *args: None))
    assert seen[0]["body"] == b"0123456789"


def test_absolute_form_request_uri(handler: Bridge) -> None:
    environ = fc_environ("GET", f"{PREFIX}/x")
    environ["fc.request_uri"] = f"https://123.cn-hangzhou.fc.aliyuncs.com{PREFIX}/x?y=1#frag"
    list(handler(environ, lambda *args: None))
    scope = seen[0]["scope"]
    assert (scope["root_path"], scope["path"], scope["query_string"]) == (
        PREFIX,
        f"{PREFIX}/x",
        b"y=1",
    )


@pytest.mark.parametrize("uri", ["https://example.com", "*"])
def test_request_uri_without_a_path_is_the_root(handler: Bridge, uri: str) -> None:
    environ = fc_environ("OPTIONS", "/")
    environ["fc.request_uri"] = uri
    list(handler(environ, lambda *args: None))
    assert (seen[0]["scope"]["path"], seen[0]["scope"]["raw_path"]) == ("/", b"/")


def test_explicit_root_path_wins_over_script_name(loop: SharedLoop) -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/mnt",
        "PATH_INFO": "/a",
        "wsgi.input": io.BytesIO(),
    }
    list(Bridge(recorder, root_path="/api", loop=loop)(environ, lambda *args: None))
    scope = seen[0]["scope"]
    assert (scope["root_path"], scope["path"]) == ("/api", "/api/mnt/a")


def test_non_ascii_header_names_are_encoded_each_time(handler: Bridge) -> None:
    fc_call(handler, "GET", "/", [("X-Zoë", "1"), ("X-Zoë", "2")])
    assert ("x-zoë".encode(), b"1,2") in seen[0]["scope"]["headers"]


@pytest.mark.parametrize(
    ("host", "scheme", "server"),
    [
        ("api.example.com", "http", ("api.example.com", 80)),
        ("api.example.com", "https", ("api.example.com", 443)),
        ("api.example.com:8080", "http", ("api.example.com", 8080)),
        ("[2001:db8::1]:9000", "https", ("[2001:db8::1]", 9000)),
        ("[2001:db8::1]", "https", ("[2001:db8::1]", 443)),
        ("api.example.com:x", "http", ("api.example.com:x", 80)),
    ],
)
def test_the_scopes_server_is_the_host_the_client_asked_for(
    host: str, scheme: str, server: tuple[str, int], loop: SharedLoop
) -> None:
    seen.clear()
    handler = Bridge(recorder, lifespan="off", scheme=scheme, loop=loop)
    fc_call(handler, "GET", "/", [("Host", host)])
    assert seen[0]["scope"]["server"] == server


def test_each_environ_shape_is_read_by_its_own_remembered_plan(
    loop: SharedLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fc_bridge._wsgi

    monkeypatch.setattr(fc_bridge._wsgi, "_plans", {})
    handler = Bridge(recorder, lifespan="off", loop=loop)
    for agent in ("one", "two"):  # the same shape twice: the second read by the plan
        fc_call(handler, "GET", "/", [("User-Agent", agent), ("X-Fc-Request-Id", "r")])
    fc_call(handler, "GET", "/", [("Accept", "*/*"), ("User-Agent", "three")])  # another shape
    agents = [dict(record["scope"]["headers"]).get(b"user-agent") for record in seen]
    assert agents == [b"one", b"two", b"three"]
    assert (b"accept", b"*/*") in seen[2]["scope"]["headers"]
    assert all(b"accept" not in dict(record["scope"]["headers"]) for record in seen[:2])
    assert len(fc_bridge._wsgi._plans) == 2
    # A header that names itself in another order is another shape, with its own order.
    fc_call(handler, "GET", "/", [("User-Agent", "four"), ("Accept", "*/*")])
    names = [name for name, _ in seen[3]["scope"]["headers"]]
    assert names.index(b"user-agent") < names.index(b"accept")
    assert len(fc_bridge._wsgi._plans) == 3


def test_plans_start_over_when_new_shapes_keep_coming(
    loop: SharedLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fc_bridge._wsgi

    monkeypatch.setattr(fc_bridge._wsgi, "_plans", {})
    monkeypatch.setattr(fc_bridge._wsgi, "MAX_PLANS", 2)
    handler = Bridge(recorder, lifespan="off", loop=loop)
    for n in range(3):
        fc_call(handler, "GET", "/", [(f"X-Header-{n}", str(n))])
    for n in range(3):
        headers = dict(seen[n]["scope"]["headers"])
        assert [name for name in headers if name.startswith(b"x-header-")] == [b"x-header-%d" % n]
        assert headers[b"x-header-%d" % n] == b"%d" % n
    assert len(fc_bridge._wsgi._plans) == 1  # the third shape, after starting over


def test_a_shape_with_a_non_ascii_key_is_not_remembered(
    loop: SharedLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fc_bridge._wsgi

    monkeypatch.setattr(fc_bridge._wsgi, "_plans", {})
    fc_call(Bridge(recorder, lifespan="off", loop=loop), "GET", "/", [("X-Zoë", "1")])
    assert ("x-zoë".encode(), b"1") in seen[0]["scope"]["headers"]
    assert fc_bridge._wsgi._plans == {}


def test_a_header_value_with_a_lone_surrogate_reaches_the_app_as_fc_encodes_it(
    handler: Bridge,
) -> None:
    environ = fc_environ("GET", "/")
    environ["HTTP_X_ODD"] = "a\udcffb"
    list(handler(environ, lambda *args: None))
    assert (b"x-odd", "a\udcffb".encode("utf-8", "surrogatepass")) in seen[0]["scope"]["headers"]
