"""The emulation of FC's runtime that local runs and these tests rely on (FC_FACTS section 1)."""

from __future__ import annotations

import json
from typing import Any

from fc_bridge.local.emulator import call_wsgi

from .conftest import PREFIX, FCContext, fc_environ


class Boom(Exception):
    pass


def test_environ_is_built_like_fcs_runtime() -> None:
    context = FCContext()
    environ = fc_environ(
        "POST",
        f"{PREFIX}/a%20b?x=1&y=2",
        [("content-type", "text/plain"), ("x-many", "1"), ("X-Many", "2"), ("Content-Length", "3")],
        b"abc",
        context=context,
    )
    picked = {k: v for k, v in environ.items() if k.isupper() and k not in __import__("os").environ}
    assert picked == {
        "CONTENT_LENGTH": "3",
        "CONTENT_TYPE": "text/plain",
        "HTTP": "on",
        "HTTP_CONTENT_LENGTH": "3",
        "HTTP_X_FC_FUNCTION_HANDLER": "main.handler",
        "HTTP_X_MANY": "1,2",
        "PATH_INFO": "/a b",
        "QUERY_STRING": "x=1&y=2",
        "REMOTE_ADDR": "203.0.113.7",
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "FCRUNTIME",
        "SERVER_PORT": "9000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "FCRUNTIME/1.0",
    }
    assert environ["fc.request_uri"] == f"{PREFIX}/a%20b?x=1&y=2"
    assert environ["fc.context"] is context
    assert environ["wsgi.input"].read() == b"abc"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is False


def test_escaping_exception_becomes_502_unhandled_invocation_error() -> None:
    def broken(environ: Any, start_response: Any) -> Any:
        raise Boom("escaped")

    response = call_wsgi(broken, fc_environ())
    assert response.status == 502
    assert response.headers["X-Fc-Error-Type"] == ["UnhandledInvocationError"]
    payload = json.loads(response.body)
    assert (payload["errorType"], payload["errorMessage"]) == ("Boom", "escaped")
    # FC's runtime: frames as [file, line, function, code], JSON indented by 4, keys sorted.
    assert payload["stackTrace"][-1] == [
        __file__,
        broken.__code__.co_firstlineno + 1,
        "broken",
        'raise Boom("escaped")',
    ]
    assert response.body.decode() == json.dumps(payload, indent=4, sort_keys=True)


def test_str_chunks_and_write_calls_are_joined_and_exc_info_ignored() -> None:
    def legacy(environ: Any, start_response: Any) -> Any:
        start_response("500 Oops", [("A", "0")])
        write = start_response("200 OK", [("A", "1"), ("a", "2")], (Boom, Boom(), None))
        write(b"w;")
        return ["ß", b"b"]

    response = call_wsgi(legacy, fc_environ())
    assert (response.status, response.headers, response.body) == (
        200,
        {"A": ["1"], "a": ["2"]},
        "w;ßb".encode(),
    )
    assert response.header("A") == "1"
    assert response.header("missing") is None


def test_iterable_close_is_never_called() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Any:
            return iter([b"x"])

        def close(self) -> None:
            closed.append(True)

    def app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [])
        return Body()

    assert call_wsgi(app, fc_environ()).body == b"x"
    assert closed == []


def test_bytes_result_is_taken_whole() -> None:
    def app(environ: Any, start_response: Any) -> Any:
        start_response("204 No Content", [])
        return b"raw"

    assert call_wsgi(app, fc_environ()).body == b"raw"
